//! The HTTP API, one module per role, plus the error type every handler returns.
//!
//! - [`admin`]: create and replace lots, change status, fault injection.
//! - [`bidder`]: place bids.
//! - [`terminal`]: fetch lots from the replica, catch up on changes, replication status
//!   (the notice stream itself lives in [`crate::notices`]).
//! - [`errors`]: [`errors::ApiError`] and the JSON body extractor.
//!
//! Roles are enforced by extractors ([`crate::auth`]) that run before the body is read.

pub mod admin;
pub mod bidder;
pub mod errors;
pub mod terminal;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use errors::ApiError;

/// A lot id from the path, validated with [`lotsync::protocol::validate_lot_id`].
#[derive(Debug)]
pub struct LotId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for LotId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_field("id", e.body_text()))?;
        lotsync::protocol::validate_lot_id(&id)?;
        Ok(LotId(id))
    }
}
