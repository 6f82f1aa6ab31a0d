//! lotsync: the terminal-server half of notify-then-fetch.
#![deny(missing_docs)]

pub mod protocol;
