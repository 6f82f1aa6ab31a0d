//! Admin endpoints: create or replace a lot, change its status, read a lot with its
//! confidential reserve, a lot's audit trail, lane settings, fault injection.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use lotsync::protocol::{
    AdminLot, AuditEntry, ChaosPatch, ChaosSettings, Lane, LaneSettings, LotInput, StatusChange,
    codes,
};

use super::LotId;
use super::errors::{ApiError, JsonBody};
use crate::auth::AdminAuth;
use crate::server::AppState;

/// Add the admin routes.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/lots/{id}", put(put_lot))
        .route("/v1/lots/{id}/status", post(set_status))
        .route("/v1/admin/lots", get(admin_lots))
        .route("/v1/admin/lots/{id}", get(admin_lot))
        .route("/v1/lots/{id}/bids", get(audit_trail))
        .route("/v1/lanes", get(lanes))
        .route("/v1/lanes/{lane}", put(set_lane))
        .route("/v1/chaos", get(get_chaos).post(patch_chaos))
}

/// `PUT /v1/lots/{id}`: 201 when created, 200 when replaced; the lot as stored.
async fn put_lot(
    _auth: AdminAuth,
    State(state): State<AppState>,
    LotId(id): LotId,
    JsonBody(input): JsonBody<LotInput>,
) -> Result<(StatusCode, Json<AdminLot>), ApiError> {
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
) -> Result<Json<AdminLot>, ApiError> {
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

/// `GET /v1/admin/lots`: every lot with its reserve, from the primary.
async fn admin_lots(
    _auth: AdminAuth,
    State(state): State<AppState>,
) -> Result<Json<Vec<AdminLot>>, ApiError> {
    Ok(Json(state.store.admin_lots().await?))
}

/// `GET /v1/admin/lots/{id}`: one lot with its reserve, from the primary.
async fn admin_lot(
    _auth: AdminAuth,
    State(state): State<AppState>,
    LotId(id): LotId,
) -> Result<Json<AdminLot>, ApiError> {
    state
        .store
        .admin_lot(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no lot {id:?}")))
}

/// How the audit trail is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    JsonLines,
    Csv,
}

/// `GET /v1/lots/{id}/bids?format=json|jsonl|csv&after=ID`: every bid and maximum on
/// the lot, accepted or refused, in order.
async fn audit_trail(
    _auth: AdminAuth,
    State(state): State<AppState>,
    LotId(id): LotId,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let format = match params.get("format").map(String::as_str) {
        None | Some("json") => Format::Json,
        Some("jsonl") | Some("ndjson") => Format::JsonLines,
        Some("csv") => Format::Csv,
        Some(_) => return Err(ApiError::invalid_field("format", "json, jsonl or csv")),
    };
    let after = match params.get("after") {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| ApiError::invalid_field("after", "a non-negative integer"))?,
    };
    let entries = state
        .store
        .audit(&id, after)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no lot {id:?}")))?;
    Ok(render_audit(&id, &entries, format))
}

fn render_audit(lot_id: &str, entries: &[AuditEntry], format: Format) -> Response {
    match format {
        Format::Json => {
            Json(serde_json::json!({ "lot_id": lot_id, "entries": entries })).into_response()
        }
        Format::JsonLines => {
            let mut body = String::new();
            for entry in entries {
                body.push_str(&serde_json::to_string(entry).expect("an entry serialises"));
                body.push('\n');
            }
            ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
        }
        Format::Csv => {
            let mut body = String::from(AuditEntry::CSV_HEADER);
            body.push_str("\r\n");
            for entry in entries {
                body.push_str(&entry.to_csv());
                body.push_str("\r\n");
            }
            let disposition = format!("attachment; filename=\"{lot_id}-bids.csv\"");
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
    }
}

/// `GET /v1/lanes`: every lane with settings.
async fn lanes(
    _auth: AdminAuth,
    State(state): State<AppState>,
) -> Result<Json<Vec<Lane>>, ApiError> {
    Ok(Json(state.store.lanes().await?))
}

/// `PUT /v1/lanes/{lane}`: create or change a lane's settings.
async fn set_lane(
    _auth: AdminAuth,
    State(state): State<AppState>,
    Path(lane): Path<String>,
    JsonBody(settings): JsonBody<LaneSettings>,
) -> Result<Json<Lane>, ApiError> {
    lotsync::protocol::validate_lane(&lane)?;
    settings.validate()?;
    Ok(Json(state.store.set_lane(&lane, settings).await?))
}
