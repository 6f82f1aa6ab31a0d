//! lotsync-tests
