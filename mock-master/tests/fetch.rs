//! Fetches in-process: replica reads, ETags, min_seq under a paused or lagging replica,
//! catch-up with /v1/changes, and injected faults.

mod common;

use axum::http::{Method, StatusCode};
use common::{ADMIN, TERMINAL, call, config, get, open_lot, replicated};
use lotsync::protocol::{ChaosPatch, LotsResponse};
use mock_master::AppState;
use serde_json::Value;

fn lot_body() -> String {
    serde_json::to_string(&open_lot("2017 Volvo V90")).unwrap()
}

async fn with_lot() -> AppState {
    let state = AppState::open(config()).unwrap();
    let (status, _, _) = call(
        &state,
        Method::PUT,
        "/v1/lots/car-1",
        Some(ADMIN),
        Some(&lot_body()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    state
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn fetches_come_from_the_replica_with_etags() {
    let state = with_lot().await;
    replicated(&state, 1).await;
    let (status, headers, body) = get(&state, "/v1/lots/car-1?min_seq=1", Some(TERMINAL)).await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(1)));
    let etag = format!("\"{}.1\"", state.store.epoch());
    assert_eq!(headers["etag"], etag.as_str());
    let (status, _, _) = call(
        &state,
        Method::GET,
        "/v1/lots/car-1",
        Some(TERMINAL),
        None,
        &[("if-none-match", etag.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let (status, _, _) = get(&state, "/v1/lots/car-2", Some(TERMINAL)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/v1/lots?ids=car-1,car-2",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let batch: LotsResponse = serde_json::from_value(body).unwrap();
    assert_eq!(
        (batch.lots.len(), batch.missing.clone(), batch.seq),
        (1, vec!["car-2".to_string()], 1)
    );
    assert_eq!(batch.epoch, state.store.epoch());
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/v1/lots?ids=ok,bad/id",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ids"))
    );
    let (status, _, body) = get(&state, "/v1/lots?min_seq=x", Some(TERMINAL)).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("min_seq"))
    );
    let (status, _, body) = get(&state, "/v1/replication", Some(TERMINAL)).await;
    assert_eq!(
        (
            status,
            body["primary_head"].as_u64(),
            body["lag_ops"].as_u64()
        ),
        (StatusCode::OK, Some(1), Some(0))
    );
    state.store.shutdown().await;
}

#[tokio::test]
async fn min_seq_waits_for_a_paused_replica_then_503() {
    let state = with_lot().await;
    replicated(&state, 1).await;
    state
        .chaos
        .apply(&ChaosPatch {
            pause_replicator: Some(true),
            ..Default::default()
        })
        .unwrap();
    state
        .store
        .place_bid("alice", "car-1", 100_000, None)
        .await
        .unwrap();
    let (status, headers, body) = get(&state, "/v1/lots/car-1?min_seq=2", Some(TERMINAL)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "replica_behind")
    );
    assert_eq!(headers["retry-after"], "1");
    let (status, _, _) = get(&state, "/v1/lots?ids=car-1&min_seq=2", Some(TERMINAL)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Without min_seq the older version is served; with it, once resumed, the new one.
    let (status, _, body) = get(&state, "/v1/lots/car-1", Some(TERMINAL)).await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(1)));
    let fetch = get(&state, "/v1/lots/car-1?min_seq=2", Some(TERMINAL));
    tokio::pin!(fetch);
    // Drive the fetch until it parks on the replica's applied watch (nothing before
    // that awaits), then resume the replicator: the fetch is already waiting.
    assert!(
        futures::poll!(&mut fetch).is_pending(),
        "answered while paused"
    );
    state
        .chaos
        .apply(&ChaosPatch {
            pause_replicator: Some(false),
            ..Default::default()
        })
        .unwrap();
    state.store.log_tail().wake();
    let (status, _, body) = fetch.await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(2)));
    state.store.shutdown().await;
}

#[tokio::test]
async fn lagging_replica_never_serves_an_older_version_than_asked() {
    let state = with_lot().await;
    state
        .chaos
        .apply(&ChaosPatch {
            replica_lag_ms: Some(20),
            ..Default::default()
        })
        .unwrap();
    for i in 0..5 {
        let seq = state
            .store
            .place_bid("bob", "car-1", 100_000 + i * 5_000, None)
            .await
            .unwrap()
            .bid
            .seq;
        let uri = format!("/v1/lots/car-1?min_seq={seq}");
        let (status, _, body) = get(&state, &uri, Some(TERMINAL)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["seq"].as_u64().unwrap() >= seq);
    }
    state.store.shutdown().await;
}

#[tokio::test]
async fn changes_and_history_truncation() {
    let mut cfg = config();
    cfg.log_retention = 3;
    let state = AppState::open(cfg).unwrap();
    for i in 0..5 {
        state
            .store
            .put_lot(&format!("l{i}"), open_lot("x"))
            .await
            .unwrap();
    }
    let (status, _, body) = get(&state, "/v1/changes?after=2", Some(TERMINAL)).await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<u64> = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((seqs, body["head"].as_u64()), (vec![3, 4, 5], Some(5)));
    for uri in ["/v1/changes?after=1", "/v1/changes?after=9"] {
        let (status, _, body) = get(&state, uri, Some(TERMINAL)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::GONE, "history_truncated"),
            "{uri}"
        );
    }
    let (status, _, _) = get(&state, "/v1/changes?limit=0", Some(TERMINAL)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    state.store.shutdown().await;
}

#[tokio::test]
async fn chaos_endpoints_and_injected_fetch_failures() {
    let state = with_lot().await;
    let (status, _, body) = call(
        &state,
        Method::POST,
        "/v1/chaos",
        Some(ADMIN),
        Some(r#"{"fetch_error_rate":2}"#),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("fetch_error_rate"))
    );
    let (status, _, body) = call(
        &state,
        Method::POST,
        "/v1/chaos",
        Some(ADMIN),
        Some(r#"{"fetch_error_rate":1}"#),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["fetch_error_rate"].as_f64()),
        (StatusCode::OK, Some(1.0))
    );
    let (status, _, body) = get(&state, "/v1/lots/car-1", Some(TERMINAL)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    let (_, _, body) = get(&state, "/v1/chaos", Some(ADMIN)).await;
    assert_eq!(body["fetch_error_rate"].as_f64(), Some(1.0));
    let metrics = get(&state, "/metrics", None).await;
    assert_eq!(metrics.0, StatusCode::OK);
    state.store.shutdown().await;

    let mut off = config();
    off.chaos = None;
    let state = AppState::open(off).unwrap();
    let (status, _, body) = get(&state, "/v1/chaos", Some(ADMIN)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "chaos_disabled")
    );
    let (status, _, body) = call(
        &state,
        Method::POST,
        "/v1/chaos",
        Some(ADMIN),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "chaos_disabled")
    );
    state.store.shutdown().await;
}
