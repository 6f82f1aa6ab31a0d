//! The HTTP API, one module per role, plus the error type every handler returns.
//!
//! - [`admin`]: create and replace lots, change status, fault injection.
//! - [`bidder`]: place bids.
//! - [`terminal`]: the master as a [`lotsync::serve::Source`] (fetches from the
//!   replica, notices from the log's tail) and the replication status.
//! - [`errors`]: [`errors::ApiError`] and the JSON body extractor.
//!
//! Roles are enforced by extractors ([`crate::auth`]) that run before the body is read.

pub mod admin;
pub mod bidder;
pub mod errors;
pub mod terminal;

pub use lotsync::serve::LotId;
