//! How store failures become HTTP errors ([`ApiError`], shared with the terminal
//! routes in [`lotsync::serve`]), and the JSON body extractor whose errors name the
//! field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use lotsync::protocol::codes;
pub use lotsync::serve::ApiError;
use serde::de::DeserializeOwned;

use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let conflict = |message: String| ApiError::new(StatusCode::CONFLICT, e.code(), message);
        match &e {
            StoreError::NotFound(id) => ApiError::not_found(format!("no lot {id:?}")),
            StoreError::LotNotOpen { status } => {
                let mut err = conflict(format!("the lot is not open for bids (it is {status})"));
                err.error.status = Some(*status);
                err
            }
            StoreError::BidTooLow {
                min_next_bid,
                field,
            } => {
                let mut err =
                    conflict(format!("{field} must be at least {min_next_bid}")).with_field(*field);
                err.error.min_next_bid = Some(*min_next_bid);
                err
            }
            StoreError::InvalidTransition { from, .. } => {
                let mut err = conflict(e.to_string()).with_field("status");
                err.error.status = Some(*from);
                err
            }
            StoreError::IdempotencyConflict => {
                conflict("this idempotency key was used for a different bid".into())
                    .with_field("Idempotency-Key")
            }
            StoreError::Invalid(field) => field.clone().into(),
            StoreError::Unavailable(_) | StoreError::Busy(_) => {
                // A database outage or a full queue: nothing was written, and asking
                // again shortly is safe (a retried bid with its idempotency key is
                // placed at most once).
                tracing::debug!(error = %e, "store unavailable");
                let mut err =
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string());
                err.retry_after = Some(crate::store::error::RETRY_AFTER_SECS);
                err
            }
            StoreError::Closed
            | StoreError::Corrupt(_)
            | StoreError::Database(_)
            | StoreError::BadUrl(_)
            | StoreError::Io(_) => {
                tracing::error!(error = %e, "store failure");
                ApiError::internal("internal error")
            }
        }
    }
}

/// A JSON body whose errors name the field: syntax errors are `invalid_body`, a wrong
/// type, missing or unknown field is `invalid_field` with `field` set, and a body over
/// the limit is 413 `payload_too_large`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    codes::PAYLOAD_TOO_LARGE,
                    "the body is too large",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::INVALID_BODY,
                    rejection.body_text(),
                )
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parse a JSON body, naming the field of a data error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de);
    if value.is_ok()
        && let Err(e) = de.end()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_BODY,
            format!("invalid JSON: {e}"),
        ));
    }
    value.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path != "." {
                    Some(path)
                } else {
                    quoted_field(&message)
                };
                let err = ApiError::new(StatusCode::BAD_REQUEST, codes::INVALID_FIELD, message);
                match field {
                    Some(field) => err.with_field(field),
                    None => err.with_field("body"),
                }
            }
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_BODY,
                format!("invalid JSON: {message}"),
            ),
        }
    })
}

/// The field named in "missing field `x`" / "unknown field `x`" messages.
fn quoted_field(message: &str) -> Option<String> {
    if !(message.starts_with("missing field") || message.starts_with("unknown field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lotsync::protocol::{BidRequest, LotInput};

    #[test]
    fn json_errors_name_the_field() {
        let field = |body: &str| {
            parse_json::<BidRequest>(body.as_bytes())
                .unwrap_err()
                .error
                .field
        };
        assert_eq!(field(r#"{"amount":"x"}"#).as_deref(), Some("amount"));
        // Both amounts are optional in the body; asking for neither is refused by
        // validation, naming `amount`.
        let empty = parse_json::<BidRequest>(b"{}").unwrap();
        assert_eq!(empty.validate().unwrap_err().field, "amount");
        assert_eq!(
            field(r#"{"max_amount":"x"}"#).as_deref(),
            Some("max_amount")
        );
        assert_eq!(field(r#"{"amount":1,"extra":2}"#).as_deref(), Some("extra"));
        assert_eq!(
            field(r#"{"amount":99999999999999999999}"#).as_deref(),
            Some("amount")
        );
        let syntax = parse_json::<BidRequest>(b"{\"amount\":").unwrap_err();
        assert_eq!(syntax.error.code, codes::INVALID_BODY);
        let trailing = parse_json::<BidRequest>(b"{\"amount\":1} x").unwrap_err();
        assert_eq!(trailing.status, StatusCode::BAD_REQUEST);
        let nested = parse_json::<LotInput>(
            br#"{"title":"t","currency":"EUR","starting_price":1,"increment":1,
                "starts_at":"nope","ends_at":"2026-01-01T11:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(nested.error.field.as_deref(), Some("starts_at"));
    }

    #[test]
    fn store_errors_map_to_statuses() {
        let err: ApiError = StoreError::BidTooLow {
            min_next_bid: 7,
            field: "amount",
        }
        .into();
        assert_eq!(
            (err.status, err.error.min_next_bid),
            (StatusCode::CONFLICT, Some(7))
        );
        let err: ApiError = StoreError::NotFound("x".into()).into();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        for unavailable in [
            StoreError::Unavailable(crate::store::Part::Writer),
            StoreError::Busy("writer queue"),
        ] {
            let err: ApiError = unavailable.into();
            assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(err.retry_after.is_some_and(|s| s > 0));
        }
    }
}
