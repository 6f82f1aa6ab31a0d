//! The error every response of the terminal API carries: `{"error": {...}}`
//! ([`crate::protocol::ErrorBody`]), an HTTP status and an optional Retry-After.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::protocol::{self, ErrorBody, FieldError, codes};

/// An error response.
///
/// ```
/// use lotsync::serve::ApiError;
/// let err = ApiError::unavailable("upstream_unavailable", "the master cannot be reached", 2);
/// assert_eq!(err.status.as_u16(), 503);
/// assert_eq!(err.retry_after, Some(2));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {}", .error.message)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body's `error` object.
    pub error: protocol::ApiError,
    /// Seconds for the Retry-After header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: protocol::ApiError {
                code: code.to_owned(),
                message: message.into(),
                field: None,
                min_next_bid: None,
                status: None,
            },
            retry_after: None,
        }
    }

    /// Name the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.error.field = Some(field.into());
        self
    }

    /// 401 unauthorized.
    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, message)
    }

    /// 403 forbidden.
    pub fn forbidden(message: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    /// 404 not found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    /// 400 naming a field with a bad value.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, codes::INVALID_FIELD, message).with_field(field)
    }

    /// 500 internal.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }

    /// 503 with a code and `Retry-After: retry_after` seconds.
    pub fn unavailable(code: &str, message: impl Into<String>, retry_after: u64) -> ApiError {
        let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        err.retry_after = Some(retry_after);
        err
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::invalid_field(&e.field, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(ErrorBody { error: self.error })).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
