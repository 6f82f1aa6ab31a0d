//! Fetches and the change log: `GET /v1/lots/{id}`, `GET /v1/lots` (batch and snapshot),
//! `GET /v1/changes`.
//!
//! Fetches honour `min_seq`: a sequence the history does not have (yet) is refused at
//! once (400, it belongs to another epoch); one it has but cannot answer at yet waits,
//! bounded by the source's fetch wait, then gets 503 with Retry-After. Never an older
//! version.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{LotId, Reader, Source};
use crate::protocol::{ChangesResponse, LotsResponse, Seq, codes, validate_lot_id};

/// Most ids in one batch fetch.
pub const MAX_BATCH_IDS: usize = 500;
/// Default and largest `limit` of `/v1/changes`.
const CHANGES_LIMIT: (usize, usize) = (1000, 10_000);

pub(crate) type Params =
    Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

pub(crate) fn params(query: Params) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::invalid_field("query", e.body_text()))
}

pub(crate) fn number(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::invalid_field(name, "a non-negative integer"))
        })
        .transpose()
}

/// Run the source's pre-fetch hook, then wait for `ready` to reach `min_seq`. Returns
/// how long it waited, in milliseconds.
async fn before_fetch<S: Source>(source: &S, min_seq: Option<Seq>) -> Result<u64, ApiError> {
    source.before_fetch().await?;
    let started = Instant::now();
    let Some(min_seq) = min_seq else {
        return Ok(0);
    };
    let log = source.log();
    let known = source.known_head();
    if min_seq > known {
        // Waiting would only end in 503: the sequence belongs to another history.
        return Err(ApiError::invalid_field(
            "min_seq",
            format!(
                "beyond the head {known} of epoch {}: resynchronise from a snapshot",
                log.epoch()
            ),
        ));
    }
    let mut ready = log.watch_ready();
    let reached =
        tokio::time::timeout(source.fetch_wait(), ready.wait_for(|r| *r >= min_seq)).await;
    if !matches!(reached, Ok(Ok(_))) {
        return Err(ApiError::unavailable(
            codes::REPLICA_BEHIND,
            format!(
                "the data has reached {} of {min_seq}; retry shortly",
                log.ready()
            ),
            1,
        )
        .with_field("min_seq"));
    }
    Ok(started.elapsed().as_millis() as u64)
}

/// Count the fetch under its status.
fn served<S: Source>(source: &S, result: Result<Response, ApiError>, waited: u64) -> Response {
    let response = result.into_response();
    source
        .metrics()
        .fetch_served(response.status().as_u16(), waited);
    response
}

/// The ETag of a lot version. It names the epoch too, so a validator from another
/// history never matches.
pub fn etag(epoch: &str, seq: Seq) -> String {
    format!("\"{epoch}.{seq}\"")
}

/// `GET /v1/lots/{id}?min_seq=N`: one lot, with ETag.
pub(crate) async fn get_lot<S: Source>(
    _reader: Reader,
    State(source): State<S>,
    LotId(id): LotId,
    headers: HeaderMap,
    query: Params,
) -> Response {
    let mut waited = 0;
    let result = async {
        let params = params(query)?;
        let min_seq = number(&params, "min_seq")?;
        waited = before_fetch(&source, min_seq).await?;
        let read = source.lots(Some(vec![id.clone()])).await?;
        let lot = read
            .lots
            .into_iter()
            .find(|lot| lot.id == id)
            .ok_or_else(|| ApiError::not_found(format!("no lot {id:?}")))?;
        let etag = etag(&read.epoch, lot.seq);
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let etag = HeaderValue::from_str(&etag)
            .map_err(|_| ApiError::internal("the epoch does not fit in a header"))?;
        if matches {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
        }
        Ok(([(header::ETAG, etag)], Json(lot)).into_response())
    }
    .await;
    served(&source, result, waited)
}

/// Parse the `ids` list of a batch fetch, refusing an oversized one before splitting it.
fn batch_ids(list: &str) -> Result<Vec<String>, ApiError> {
    let too_many = || ApiError::invalid_field("ids", format!("at most {MAX_BATCH_IDS} ids"));
    if list.len() > MAX_BATCH_IDS * (crate::protocol::MAX_LOT_ID_LEN + 1) {
        return Err(too_many());
    }
    if list.bytes().filter(|b| *b == b',').count() >= MAX_BATCH_IDS {
        return Err(too_many());
    }
    let ids: Vec<String> = list.split(',').map(str::to_owned).collect();
    for id in &ids {
        validate_lot_id(id).map_err(|e| ApiError::invalid_field("ids", e.message))?;
    }
    Ok(ids)
}

/// `GET /v1/lots?ids=a,b&min_seq=N` (batch) or `GET /v1/lots` (snapshot of every lot).
pub(crate) async fn get_lots<S: Source>(
    _reader: Reader,
    State(source): State<S>,
    query: Params,
) -> Response {
    let mut waited = 0;
    let result = async {
        let params = params(query)?;
        let min_seq = number(&params, "min_seq")?;
        let ids = params.get("ids").map(|list| batch_ids(list)).transpose()?;
        waited = before_fetch(&source, min_seq).await?;
        let read = source.lots(ids).await?;
        let body = LotsResponse {
            epoch: read.epoch,
            seq: read.seq,
            lots: read.lots,
            missing: read.missing,
        };
        Ok(Json(body).into_response())
    }
    .await;
    served(&source, result, waited)
}

/// `GET /v1/changes?after=N&limit=M`: retained notices after N.
pub(crate) async fn changes<S: Source>(
    _reader: Reader,
    State(source): State<S>,
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
    let log = source.log();
    let (epoch, changes) = log.after(after, limit).map_err(|t| {
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
        .map_or_else(|| log.head(), |n| n.seq.max(log.head()));
    Ok(Json(ChangesResponse {
        epoch,
        head,
        changes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_are_bounded_before_they_are_split() {
        assert_eq!(batch_ids("a,b").unwrap(), vec!["a", "b"]);
        let many = vec!["x"; MAX_BATCH_IDS + 1].join(",");
        assert_eq!(
            batch_ids(&many).unwrap_err().error.field.as_deref(),
            Some("ids")
        );
        let huge = "y".repeat(10 * 1024 * 1024);
        assert!(batch_ids(&huge).is_err());
        assert!(batch_ids("ok,no/slash").is_err());
        assert_eq!(
            batch_ids(&vec!["x"; MAX_BATCH_IDS].join(","))
                .unwrap()
                .len(),
            MAX_BATCH_IDS
        );
    }

    #[test]
    fn etags_name_the_epoch() {
        assert_ne!(etag("e1", 5), etag("e2", 5));
        assert_eq!(etag("e1", 5), "\"e1.5\"");
    }
}
