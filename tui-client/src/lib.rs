//! tui-client: a live auction dashboard for bidders and floor displays, built on the
//! lotsync SDK.
//!
//! # Layout
//!
//! - [`cli`]: command-line flags and their validation.
//! - [`app`]: the application state, the [`app::Action`]s that change it and the
//!   [`app::Effect`]s it asks for; pure, with time passed in.
//! - [`action`]: the [`action::Action`] and [`action::Effect`] vocabulary.
//! - [`link`]: the connection state as the screen shows it.
//! - [`order`]: sort modes and the filter match.
//! - [`bid`]: the bid box (stepping, typed amounts, outcomes).
//! - [`stats`]: header numbers (notices per second, commit-to-screen latency).
//! - [`keys`]: key events to actions, per mode.
//! - [`format`](mod@format): money, countdowns and truncation.
//! - [`ui`]: rendering, one module per screen region; only reads the app.
//! - [`runtime`]: the terminal loop: keys, SDK updates, ticks, bids; terminal restore.
//! - [`headless`]: every update as one JSON line on stdout.
//! - `demo` (feature `demo`, on by default): an in-process master with the demo
//!   catalogue and bidding bots.
//! - [`launch`]: from checked flags to a connected client; shutdown on Ctrl-C/SIGTERM.
//! - [`logging`]: logs to a file or stderr, never onto the screen.

pub mod action;
pub mod app;
pub mod bid;
pub mod cli;
#[cfg(feature = "demo")]
pub mod demo;
pub mod format;
pub mod headless;
pub mod keys;
pub mod launch;
pub mod link;
pub mod logging;
pub mod order;
pub mod runtime;
pub mod stats;
pub mod ui;
