//! Terminal endpoints: fetch lots from the replica, catch up on changes, replication
//! status. Admin tokens may use them too.
//!
//! Fetches honour `min_seq`: if the replica has not applied that far, the request waits
//! (bounded by the configured fetch wait) for the `applied` watch, then answers 503
//! `replica_behind` with `Retry-After: 1` — never an older version.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lotsync::protocol::{
    ChangesResponse, LotsResponse, ReplicationStatus, Seq, codes, validate_lot_id,
};

use super::LotId;
use super::errors::ApiError;
use crate::auth::TerminalAuth;
use crate::server::AppState;

/// Most ids in one batch fetch.
pub const MAX_BATCH_IDS: usize = 500;
/// Default and largest `limit` of `/v1/changes`.
const CHANGES_LIMIT: (usize, usize) = (1000, 10_000);

/// Add the terminal routes (the notice stream included).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/lots/{id}", get(get_lot))
        .route("/v1/lots", get(get_lots))
        .route("/v1/changes", get(changes))
        .route("/v1/notices", get(crate::notices::stream))
        .route("/v1/replication", get(replication))
}

type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn params(query: Params) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::invalid_field("query", e.body_text()))
}

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::invalid_field(name, "a non-negative integer"))
        })
        .transpose()
}

/// Apply injected faults, then wait for the replica to reach `min_seq`. Returns how
/// long it waited.
async fn before_fetch(state: &AppState, min_seq: Option<Seq>) -> Result<u64, ApiError> {
    let (delay, fail) = state.chaos.fetch_fault();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if fail {
        return Err(ApiError::internal("injected fetch failure"));
    }
    let started = Instant::now();
    if let Some(min_seq) = min_seq {
        // A sequence this master has not committed cannot be waited for: it belongs to
        // another history (epoch) or was never sent. Waiting would only end in 503.
        let head = state.store.notices().head();
        if min_seq > head {
            return Err(ApiError::invalid_field(
                "min_seq",
                format!(
                    "beyond the head {head} of epoch {}: resynchronise from a snapshot",
                    state.store.epoch()
                ),
            ));
        }
        let mut applied = state.store.notices().watch_applied();
        let reached =
            tokio::time::timeout(state.config.fetch_wait, applied.wait_for(|a| *a >= min_seq))
                .await;
        if !matches!(reached, Ok(Ok(_))) {
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::REPLICA_BEHIND,
                format!(
                    "the replica has applied {} of {min_seq}; retry shortly",
                    state.store.notices().applied()
                ),
            )
            .with_field("min_seq");
            err.retry_after = Some(1);
            return Err(err);
        }
    }
    Ok(started.elapsed().as_millis() as u64)
}

/// Count the fetch under its status.
fn served(state: &AppState, result: Result<Response, ApiError>, waited: u64) -> Response {
    let response = result.into_response();
    state
        .metrics
        .fetch_served(response.status().as_u16(), waited);
    response
}

/// `GET /v1/lots/{id}?min_seq=N`: one lot from the replica, with ETag.
async fn get_lot(
    _auth: TerminalAuth,
    State(state): State<AppState>,
    LotId(id): LotId,
    headers: HeaderMap,
    query: Params,
) -> Response {
    let mut waited = 0;
    let result = async {
        let params = params(query)?;
        let min_seq = number(&params, "min_seq")?;
        waited = before_fetch(&state, min_seq).await?;
        let (_, lot) = state.store.replica_lot(&id).await?;
        let lot = lot.ok_or_else(|| ApiError::not_found(format!("no lot {id:?}")))?;
        let etag = format!("\"{}\"", lot.seq);
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let etag = HeaderValue::from_str(&etag).expect("digits and quotes are a valid header");
        if matches {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
        }
        Ok(([(header::ETAG, etag)], Json(lot)).into_response())
    }
    .await;
    served(&state, result, waited)
}

/// `GET /v1/lots?ids=a,b&min_seq=N` (batch) or `GET /v1/lots` (snapshot of every lot).
async fn get_lots(_auth: TerminalAuth, State(state): State<AppState>, query: Params) -> Response {
    let mut waited = 0;
    let result = async {
        let params = params(query)?;
        let min_seq = number(&params, "min_seq")?;
        let ids = match params.get("ids") {
            None => None,
            Some(list) => {
                let ids: Vec<String> = list.split(',').map(str::to_owned).collect();
                if ids.len() > MAX_BATCH_IDS {
                    return Err(ApiError::invalid_field(
                        "ids",
                        format!("at most {MAX_BATCH_IDS} ids"),
                    ));
                }
                for id in &ids {
                    validate_lot_id(id).map_err(|e| ApiError::invalid_field("ids", e.message))?;
                }
                Some(ids)
            }
        };
        waited = before_fetch(&state, min_seq).await?;
        let (seq, lots, missing) = state.store.replica_lots(ids).await?;
        let body = LotsResponse {
            epoch: state.store.epoch().to_owned(),
            seq,
            lots,
            missing,
        };
        Ok(Json(body).into_response())
    }
    .await;
    served(&state, result, waited)
}

/// `GET /v1/changes?after=N&limit=M`: retained log entries after N.
async fn changes(
    _auth: TerminalAuth,
    State(state): State<AppState>,
    query: Params,
) -> Result<Json<ChangesResponse>, ApiError> {
    let params = params(query)?;
    let after = number(&params, "after")?.unwrap_or(0);
    let limit = number(&params, "limit")?.map_or(CHANGES_LIMIT.0, |l| l as usize);
    if limit == 0 || limit > CHANGES_LIMIT.1 {
        return Err(ApiError::invalid_field(
            "limit",
            format!("between 1 and {}", CHANGES_LIMIT.1),
        ));
    }
    let notices = state.store.notices();
    let changes = notices.after(after, limit).map_err(|t| {
        ApiError::new(
            StatusCode::GONE,
            codes::HISTORY_TRUNCATED,
            format!(
                "history after {after} is not available (retained {}..={}); resynchronise from a snapshot",
                t.oldest, t.head
            ),
        )
        .with_field("after")
    })?;
    let head = changes
        .last()
        .map_or_else(|| notices.head(), |n| n.seq.max(notices.head()));
    Ok(Json(ChangesResponse {
        epoch: notices.epoch().to_owned(),
        head,
        changes,
    }))
}

/// `GET /v1/replication`: primary head, replica applied, lag.
async fn replication(
    _auth: TerminalAuth,
    State(state): State<AppState>,
) -> Json<ReplicationStatus> {
    Json(state.replication())
}
