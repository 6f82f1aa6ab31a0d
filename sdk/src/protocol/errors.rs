//! The error body every non-2xx response carries, its codes, and field validation.

use serde::{Deserialize, Serialize};

use super::{LotStatus, MAX_LOT_ID_LEN, MAX_MONEY, Money};

/// Error body of every non-2xx response: `{"error": {...}}`.
///
/// ```
/// let body: lotsync::protocol::ErrorBody = serde_json::from_str(
///     r#"{"error":{"code":"bid_too_low","message":"at least 1050","field":"amount","min_next_bid":1050}}"#).unwrap();
/// assert_eq!(body.error.min_next_bid, Some(1050));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// Details of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Machine-readable code, one of [`codes`].
    pub code: String,
    /// Human explanation.
    pub message: String,
    /// The input field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `bid_too_low`: the smallest acceptable amount now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_next_bid: Option<Money>,
    /// For `lot_not_open` and `invalid_transition`: the lot's current status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LotStatus>,
}

/// Values of [`ApiError::code`].
pub mod codes {
    /// 401: no or unknown bearer token.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: the token's role may not do this.
    pub const FORBIDDEN: &str = "forbidden";
    /// 404: no such lot or route.
    pub const NOT_FOUND: &str = "not_found";
    /// 400: the body is not valid JSON or has the wrong shape.
    pub const INVALID_BODY: &str = "invalid_body";
    /// 400/422: a field has a bad value (see `field`).
    pub const INVALID_FIELD: &str = "invalid_field";
    /// 413: the body is too large.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 409: the bid is below the minimum next bid (see `min_next_bid`).
    pub const BID_TOO_LOW: &str = "bid_too_low";
    /// 409: the lot is not open for bids (see `status`).
    pub const LOT_NOT_OPEN: &str = "lot_not_open";
    /// 409: the status change is not allowed from the current status.
    pub const INVALID_TRANSITION: &str = "invalid_transition";
    /// 409: an idempotency key was reused with a different request.
    pub const IDEMPOTENCY_CONFLICT: &str = "idempotency_conflict";
    /// 503: the replica has not reached `min_seq` in time (see Retry-After).
    pub const REPLICA_BEHIND: &str = "replica_behind";
    /// 410: `after` is older than the retained history; resynchronise.
    pub const HISTORY_TRUNCATED: &str = "history_truncated";
    /// 404: fault injection is not enabled on this master.
    pub const CHAOS_DISABLED: &str = "chaos_disabled";
    /// 500: injected or internal failure.
    pub const INTERNAL: &str = "internal";
    /// 503: the server is at its limit of connections, streams or requests (see
    /// Retry-After).
    pub const OVERLOADED: &str = "overloaded";
    /// 503: a database of the master cannot be reached; nothing was written (see
    /// Retry-After; a bid may be retried with the same idempotency key).
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
    /// 503: a terminal server has no synchronised mirror yet (see Retry-After).
    pub const NOT_SYNCED: &str = "not_synced";
    /// 502: a terminal server could not reach its upstream to forward a request.
    pub const UPSTREAM_UNAVAILABLE: &str = "upstream_unavailable";
}

/// A validation failure naming the field at fault.
///
/// ```
/// let err = lotsync::protocol::validate_lot_id("a/b").unwrap_err();
/// assert_eq!(err.field, "id");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Build one.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Check a lot id: 1–[`MAX_LOT_ID_LEN`](super::MAX_LOT_ID_LEN) characters of `A-Z a-z 0-9 - _`.
///
/// ```
/// assert!(lotsync::protocol::validate_lot_id("lot-17_b").is_ok());
/// assert!(lotsync::protocol::validate_lot_id("").is_err());
/// ```
pub fn validate_lot_id(id: &str) -> Result<(), FieldError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_LOT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "id",
            format!("lot ids are 1-{MAX_LOT_ID_LEN} characters of A-Z, a-z, 0-9, - and _"),
        ))
    }
}

/// Check an amount of money: 1..=[`MAX_MONEY`](super::MAX_MONEY).
///
/// ```
/// assert!(lotsync::protocol::validate_money("amount", -5).is_err());
/// ```
pub fn validate_money(field: &str, amount: Money) -> Result<(), FieldError> {
    if (1..=MAX_MONEY).contains(&amount) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be between 1 and {MAX_MONEY} minor units"),
        ))
    }
}

pub(super) fn validate_text(field: &str, value: &str, max_chars: usize) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A short, printable rendering of untrusted text for error messages.
pub(super) fn printable(text: &str) -> String {
    text.chars()
        .take(40)
        .flat_map(char::escape_default)
        .collect()
}
