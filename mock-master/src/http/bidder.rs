//! Bidder endpoints: place a bid or a maximum as the authenticated bidder; read one's
//! own maximum.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lotsync::protocol::{BidRequest, IDEMPOTENCY_KEY_HEADER, MaxStatus};

use super::LotId;
use super::errors::{ApiError, JsonBody};
use crate::auth::BidderAuth;
use crate::server::AppState;

/// Add the bidder routes.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/lots/{id}/bids", post(place_bid))
        .route("/v1/lots/{id}/max", get(my_max))
}

/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 128;

/// The `Idempotency-Key` header: 1–128 printable ASCII characters, if present.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid_field(
            IDEMPOTENCY_KEY_HEADER,
            format!("1-{MAX_KEY_LEN} printable ASCII characters"),
        )
    };
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_KEY_LEN
        || !bytes.iter().all(|b| (0x20..0x7f).contains(b))
    {
        return Err(bad());
    }
    Ok(Some(String::from_utf8(bytes.to_vec()).map_err(|_| bad())?))
}

/// `POST /v1/lots/{id}/bids`: 201 with the bid (also for a replayed idempotent request,
/// marked with `Idempotent-Replayed: true`).
async fn place_bid(
    BidderAuth(bidder): BidderAuth,
    State(state): State<AppState>,
    LotId(id): LotId,
    headers: HeaderMap,
    JsonBody(request): JsonBody<BidRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    request.validate()?;
    let outcome = state.store.bid(&bidder, &id, request, key).await?;
    let mut response = (StatusCode::CREATED, Json(outcome.receipt)).into_response();
    if outcome.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /v1/lots/{id}/max`: the caller's own maximum and where they stand. Nobody can
/// read another bidder's maximum.
async fn my_max(
    BidderAuth(bidder): BidderAuth,
    State(state): State<AppState>,
    LotId(id): LotId,
) -> Result<Json<MaxStatus>, ApiError> {
    state
        .store
        .max_status(&id, &bidder)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no lot {id:?}")))
}
