//! The bidding rules as pure functions: no database, no clock, no I/O, so they can be
//! property-tested against a reference model.
//!
//! - [`proxy`]: resolving bids and maximum (proxy) bids into the bids the master places,
//!   the resulting leader and price.
//!
//! Increment ladders are [`lotsync::protocol::Ladder`], shared with the SDK so both
//! compute the same next bid.

pub mod proxy;

#[cfg(test)]
mod model_tests;
