//! `POST /v1/lots/{id}/bids` (bids and maximums) and `GET /v1/lots/{id}/max` (a
//! bidder's own maximum) on a terminal server: forwarded upstream as they came, with
//! the caller's own bidder token and idempotency key, and the upstream's answer
//! returned as it came. The terminal server holds no bidder secret (and no maximum),
//! and a bid retried through it with the same key is placed once, by the master.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::source::RelaySource;
use crate::protocol::{IDEMPOTENCY_KEY_HEADER, codes};
use crate::serve::{ApiError, BODY_LIMIT, LotId};

/// Request headers passed upstream; nothing else (no cookies, no hop-by-hop headers).
const FORWARDED: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    HeaderName::from_static("idempotency-key"),
];

/// Response headers passed back.
const RETURNED: [HeaderName; 2] = [header::CONTENT_TYPE, header::RETRY_AFTER];

pub(crate) async fn forward_bid(
    State(source): State<RelaySource>,
    LotId(id): LotId,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    debug_assert_eq!(
        FORWARDED[2].as_str(),
        IDEMPOTENCY_KEY_HEADER.to_ascii_lowercase()
    );
    let relay = &source.0;
    let url = format!("{}/v1/lots/{id}/bids", relay.upstream);
    forward(relay.http.post(url).body(body), &headers).await
}

pub(crate) async fn forward_max(
    State(source): State<RelaySource>,
    LotId(id): LotId,
    headers: HeaderMap,
) -> Response {
    let relay = &source.0;
    let url = format!("{}/v1/lots/{id}/max", relay.upstream);
    forward(relay.http.get(url), &headers).await
}

/// Send `request` upstream with the caller's forwarded headers; the answer as it came.
async fn forward(mut request: reqwest::RequestBuilder, headers: &HeaderMap) -> Response {
    for name in &FORWARDED {
        for value in headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    let unavailable = |error: &dyn std::fmt::Display| {
        tracing::warn!(%error, "cannot forward a bidder's request upstream");
        let mut err = ApiError::new(
            StatusCode::BAD_GATEWAY,
            codes::UPSTREAM_UNAVAILABLE,
            "the master could not be reached; retry with the same idempotency key",
        );
        err.retry_after = Some(1);
        err.into_response()
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return unavailable(&error),
    };
    let status = response.status();
    let mut returned = HeaderMap::new();
    for name in &RETURNED {
        if let Some(value) = response.headers().get(name) {
            returned.insert(name, value.clone());
        }
    }
    // A bid answer is a few hundred bytes; anything far larger is not one.
    let mut body = Vec::new();
    let mut response = response;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= BODY_LIMIT => {
                body.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => return unavailable(&"the upstream answer is too large"),
            Ok(None) => break,
            Err(error) => return unavailable(&error),
        }
    }
    (status, returned, body).into_response()
}
