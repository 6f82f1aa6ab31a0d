//! The HTTP API in-process: every status code, auth, bad bodies, idempotency, min_seq.

mod common;

use axum::http::{Method, StatusCode};
use common::{ADMIN, ALICE, BOB, TERMINAL, call, config, get, open_lot};
use lotsync::protocol::Lot;
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
    // Reads without min_seq come from the replica as it is: let it catch up first.
    common::replicated(&state, 1).await;
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
    assert_eq!(state.store.log_tail().head(), 1, "nothing changed");
    // Admin may read like a terminal.
    let (status, _, _) = get(&state, "/v1/lots/car-1", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = get(&state, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&body["status"], &body["down"]), (&json!("ok"), &json!([])));
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
    let (status, _, json) = get(&state, &long_id, Some(TERMINAL)).await;
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
    assert_eq!(state.store.log_tail().head(), 1, "nothing changed");
    let (status, _, json) = get(&state, "/v1/nope", Some(ADMIN)).await;
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
    assert_eq!(state.store.log_tail().head(), 3);
    state.store.shutdown().await;
}
