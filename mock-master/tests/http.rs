//! The HTTP API in-process: every status code, auth, bad bodies, idempotency, min_seq.

mod common;

use axum::http::{Method, StatusCode};
use common::{ADMIN, ALICE, BOB, TERMINAL, call, config, open_lot, replicated};
use lotsync::protocol::{ChaosPatch, Lot, LotsResponse};
use mock_master::AppState;
use serde_json::{Value, json};

/// (method, uri, token, body, expected status)
type AuthCase = (
    Method,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    StatusCode,
);
/// (method, uri, body, expected status, expected code, expected field)
type BadInput = (
    Method,
    &'static str,
    &'static str,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

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
async fn put_creates_then_replaces() {
    let state = AppState::open(config()).unwrap();
    let (status, _, body) = call(
        &state,
        Method::PUT,
        "/v1/lots/car-1",
        Some(ADMIN),
        Some(&lot_body()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let lot: Lot = serde_json::from_value(body).unwrap();
    assert_eq!((lot.id.as_str(), lot.seq), ("car-1", 1));
    let (status, _, body) = call(
        &state,
        Method::PUT,
        "/v1/lots/car-1",
        Some(ADMIN),
        Some(&lot_body()),
        &[],
    )
    .await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(2)));
    let (status, _, body) = call(
        &state,
        Method::POST,
        "/v1/lots/car-1/status",
        Some(ADMIN),
        Some(r#"{"status":"closed"}"#),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("closed"))
    );
    let (status, _, body) = call(
        &state,
        Method::POST,
        "/v1/lots/car-1/status",
        Some(ADMIN),
        Some(r#"{"status":"open"}"#),
        &[],
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "invalid_transition")
    );
    assert_eq!(body["error"]["status"], "closed");
    state.store.shutdown().await;
}

#[tokio::test]
async fn tokens_are_required_and_roles_enforced() {
    let state = with_lot().await;
    let bid = r#"{"amount":100000}"#;
    let cases: Vec<AuthCase> = vec![
        (
            Method::PUT,
            "/v1/lots/car-2",
            None,
            Some("{}"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::PUT,
            "/v1/lots/car-2",
            Some("wrong"),
            Some("{}"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::PUT,
            "/v1/lots/car-2",
            Some(TERMINAL),
            Some("{}"),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::PUT,
            "/v1/lots/car-2",
            Some(ALICE),
            Some("{}"),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/lots/car-1/bids",
            None,
            Some(bid),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::POST,
            "/v1/lots/car-1/bids",
            Some(ADMIN),
            Some(bid),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/lots/car-1/bids",
            Some(TERMINAL),
            Some(bid),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/v1/lots/car-1",
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/v1/lots/car-1",
            Some(ALICE),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/v1/notices",
            Some(BOB),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/v1/chaos",
            Some(TERMINAL),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/v1/chaos",
            None,
            Some("{}"),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (method, uri, token, body, want) in cases {
        let (status, _, json) = call(&state, method.clone(), uri, token, body, &[]).await;
        assert_eq!(status, want, "{method} {uri} with {token:?}");
        assert!(!code(&json).is_empty(), "error body for {method} {uri}");
    }
    assert_eq!(state.store.notices().head(), 1, "nothing changed");
    // Admin may read like a terminal.
    let (status, _, _) = call(
        &state,
        Method::GET,
        "/v1/lots/car-1",
        Some(ADMIN),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(&state, Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    state.store.shutdown().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let state = with_lot().await;
    let bids = "/v1/lots/car-1/bids";
    let cases: Vec<BadInput> = vec![
        (
            Method::POST,
            bids,
            r#"{"amount":"lots"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("amount"),
        ),
        (
            Method::POST,
            bids,
            r#"{"amount":-5}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("amount"),
        ),
        (
            Method::POST,
            bids,
            r#"{"amount":0}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("amount"),
        ),
        (
            Method::POST,
            bids,
            r#"{"amount":1e400}"#,
            StatusCode::BAD_REQUEST,
            "invalid_body",
            None,
        ),
        (
            Method::POST,
            bids,
            r#"{}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("amount"),
        ),
        (
            Method::POST,
            bids,
            r#"{"amount":1,"x":2}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("x"),
        ),
        (
            Method::POST,
            bids,
            r#"{"amount":"#,
            StatusCode::BAD_REQUEST,
            "invalid_body",
            None,
        ),
        (
            Method::POST,
            "/v1/lots/a%2Fb/bids",
            r#"{"amount":1}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("id"),
        ),
        (
            Method::PUT,
            "/v1/lots/car-1",
            r#"{"title":"t","currency":"eur","starting_price":1,"increment":1,"starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("currency"),
        ),
        (
            Method::POST,
            "/v1/lots/car-1/status",
            r#"{"status":"gone"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("status"),
        ),
    ];
    for (method, uri, body, want, want_code, field) in cases {
        let token = if uri.ends_with("/bids") { ALICE } else { ADMIN };
        let (status, _, json) = call(&state, method, uri, Some(token), Some(body), &[]).await;
        assert_eq!(
            (status, code(&json)),
            (want, want_code),
            "{uri} {body}: {json}"
        );
        assert_eq!(
            json["error"]["field"].as_str(),
            field,
            "{uri} {body}: {json}"
        );
    }
    let long_id = format!("/v1/lots/{}", "x".repeat(65));
    let (status, _, json) = call(&state, Method::GET, &long_id, Some(TERMINAL), None, &[]).await;
    assert_eq!(
        (status, json["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id"))
    );
    let huge = format!(r#"{{"amount":1,"pad":"{}"}}"#, "x".repeat(70_000));
    let (status, _, json) = call(&state, Method::POST, bids, Some(ALICE), Some(&huge), &[]).await;
    assert_eq!(
        (status, code(&json)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let (status, _, json) = call(
        &state,
        Method::POST,
        bids,
        Some(ALICE),
        Some(r#"{"amount":100000}"#),
        &[("idempotency-key", "")],
    )
    .await;
    assert_eq!(
        (status, json["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Idempotency-Key"))
    );
    assert_eq!(state.store.notices().head(), 1, "nothing changed");
    let (status, _, json) = call(&state, Method::GET, "/v1/nope", Some(ADMIN), None, &[]).await;
    assert_eq!((status, code(&json)), (StatusCode::NOT_FOUND, "not_found"));
    state.store.shutdown().await;
}

#[tokio::test]
async fn bids_conflicts_and_idempotent_replays() {
    let state = with_lot().await;
    let bid = |amount: i64| format!(r#"{{"amount":{amount}}}"#);
    let key = [("Idempotency-Key", "retry-1")];
    let uri = "/v1/lots/car-1/bids";
    let (status, headers, first) = call(
        &state,
        Method::POST,
        uri,
        Some(ALICE),
        Some(&bid(100_000)),
        &key,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        (first["bidder"].as_str(), first["seq"].as_u64()),
        (Some("alice"), Some(2))
    );
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = call(
        &state,
        Method::POST,
        uri,
        Some(ALICE),
        Some(&bid(100_000)),
        &key,
    )
    .await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, _, body) = call(
        &state,
        Method::POST,
        uri,
        Some(ALICE),
        Some(&bid(200_000)),
        &key,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "idempotency_conflict")
    );
    let (status, _, body) = call(
        &state,
        Method::POST,
        uri,
        Some(BOB),
        Some(&bid(104_000)),
        &[],
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "bid_too_low"));
    assert_eq!(
        (
            body["error"]["min_next_bid"].as_i64(),
            body["error"]["field"].as_str()
        ),
        (Some(105_000), Some("amount"))
    );
    let (status, _, _) = call(
        &state,
        Method::POST,
        "/v1/lots/car-9/bids",
        Some(BOB),
        Some(&bid(1)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    state
        .store
        .set_status("car-1", lotsync::protocol::LotStatus::Closed)
        .await
        .unwrap();
    let (status, _, body) = call(
        &state,
        Method::POST,
        uri,
        Some(BOB),
        Some(&bid(500_000)),
        &[],
    )
    .await;
    assert_eq!(
        (status, code(&body), body["error"]["status"].as_str()),
        (StatusCode::CONFLICT, "lot_not_open", Some("closed"))
    );
    assert_eq!(state.store.notices().head(), 3);
    state.store.shutdown().await;
}

#[tokio::test]
async fn fetches_come_from_the_replica_with_etags() {
    let state = with_lot().await;
    replicated(&state, 1).await;
    let (status, headers, body) = call(
        &state,
        Method::GET,
        "/v1/lots/car-1?min_seq=1",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(headers["etag"], "\"1\"");
    let (status, _, _) = call(
        &state,
        Method::GET,
        "/v1/lots/car-1",
        Some(TERMINAL),
        None,
        &[("if-none-match", "\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let (status, _, _) = call(
        &state,
        Method::GET,
        "/v1/lots/car-2",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
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
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/v1/lots?min_seq=x",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("min_seq"))
    );
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/v1/replication",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
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
    let (status, headers, body) = call(
        &state,
        Method::GET,
        "/v1/lots/car-1?min_seq=2",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "replica_behind")
    );
    assert_eq!(headers["retry-after"], "1");
    let (status, _, _) = call(
        &state,
        Method::GET,
        "/v1/lots?ids=car-1&min_seq=2",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Without min_seq the older version is served; with it, once resumed, the new one.
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/v1/lots/car-1",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(1)));
    let resume = {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            state
                .chaos
                .apply(&ChaosPatch {
                    pause_replicator: Some(false),
                    ..Default::default()
                })
                .unwrap();
            state.store.notices().wake();
        })
    };
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/v1/lots/car-1?min_seq=2",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(2)));
    resume.await.unwrap();
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
        let (status, _, body) = call(&state, Method::GET, &uri, Some(TERMINAL), None, &[]).await;
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
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/v1/changes?after=2",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<u64> = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((seqs, body["head"].as_u64()), (vec![3, 4, 5], Some(5)));
    for uri in ["/v1/changes?after=1", "/v1/changes?after=9"] {
        let (status, _, body) = call(&state, Method::GET, uri, Some(TERMINAL), None, &[]).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::GONE, "history_truncated"),
            "{uri}"
        );
    }
    let (status, _, _) = call(
        &state,
        Method::GET,
        "/v1/changes?limit=0",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
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
    let (status, _, body) = call(
        &state,
        Method::GET,
        "/v1/lots/car-1",
        Some(TERMINAL),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    let (_, _, body) = call(&state, Method::GET, "/v1/chaos", Some(ADMIN), None, &[]).await;
    assert_eq!(body["fetch_error_rate"].as_f64(), Some(1.0));
    let metrics = call(&state, Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(metrics.0, StatusCode::OK);
    state.store.shutdown().await;

    let mut off = config();
    off.chaos = None;
    let state = AppState::open(off).unwrap();
    let (status, _, body) = call(&state, Method::GET, "/v1/chaos", Some(ADMIN), None, &[]).await;
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
