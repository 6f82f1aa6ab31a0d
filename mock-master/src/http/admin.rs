//! Admin endpoints: create or replace a lot, change its status, fault injection.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use lotsync::protocol::{ChaosPatch, ChaosSettings, Lot, LotInput, StatusChange, codes};

use super::LotId;
use super::errors::{ApiError, JsonBody};
use crate::auth::AdminAuth;
use crate::server::AppState;

/// Add the admin routes.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/lots/{id}", put(put_lot))
        .route("/v1/lots/{id}/status", post(set_status))
        .route("/v1/chaos", get(get_chaos).post(patch_chaos))
}

/// `PUT /v1/lots/{id}`: 201 when created, 200 when replaced; the lot as stored.
async fn put_lot(
    _auth: AdminAuth,
    State(state): State<AppState>,
    LotId(id): LotId,
    JsonBody(input): JsonBody<LotInput>,
) -> Result<(StatusCode, Json<Lot>), ApiError> {
    input.validate()?;
    let (lot, created) = state.store.put_lot(&id, input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(lot)))
}

/// `POST /v1/lots/{id}/status`: change the status only.
async fn set_status(
    _auth: AdminAuth,
    State(state): State<AppState>,
    LotId(id): LotId,
    JsonBody(change): JsonBody<StatusChange>,
) -> Result<Json<Lot>, ApiError> {
    Ok(Json(state.store.set_status(&id, change.status).await?))
}

fn chaos_disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::CHAOS_DISABLED,
        "fault injection is off; start the master with --chaos",
    )
}

/// `GET /v1/chaos`: the active faults.
async fn get_chaos(
    _auth: AdminAuth,
    State(state): State<AppState>,
) -> Result<Json<ChaosSettings>, ApiError> {
    if !state.chaos.enabled() {
        return Err(chaos_disabled());
    }
    Ok(Json(state.chaos.settings()))
}

/// `POST /v1/chaos`: change faults; fields left out keep their values.
async fn patch_chaos(
    _auth: AdminAuth,
    State(state): State<AppState>,
    JsonBody(patch): JsonBody<ChaosPatch>,
) -> Result<Json<ChaosSettings>, ApiError> {
    if !state.chaos.enabled() {
        return Err(chaos_disabled());
    }
    let settings = state.chaos.apply(&patch)?;
    state.store.log_tail().wake();
    Ok(Json(settings))
}
