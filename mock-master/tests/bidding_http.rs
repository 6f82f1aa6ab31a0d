//! The bidding rules over HTTP: ladders refused naming the field, the reserve only in
//! admin reads, maximums only to their owner, the audit trail's roles and formats.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{ADMIN, ALICE, BOB, TERMINAL, call, config, get, open_lot};
use mock_master::AppState;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn raw(state: &AppState, uri: &str, token: &str) -> (StatusCode, String, String) {
    let request = Request::builder()
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = mock_master::app(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn put(state: &AppState, id: &str, body: &Value) -> (StatusCode, Value) {
    let (status, _, json) = call(
        state,
        Method::PUT,
        &format!("/v1/lots/{id}"),
        Some(ADMIN),
        Some(&body.to_string()),
        &[],
    )
    .await;
    (status, json)
}

async fn bid(state: &AppState, token: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, json) = call(
        state,
        Method::POST,
        "/v1/lots/car/bids",
        Some(token),
        Some(&body.to_string()),
        &[],
    )
    .await;
    (status, json)
}

#[tokio::test]
async fn bad_ladders_are_refused_naming_the_field() {
    let state = AppState::open(config()).unwrap();
    let lot = serde_json::to_value(open_lot("Audi A4")).unwrap();
    for (ladder, field) in [
        (json!([]), "increment"),
        (json!([{"from": 100, "step": 10}]), "increment[0].from"),
        (
            json!([{"from": 0, "step": 10}, {"from": 0, "step": 20}]),
            "increment[1].from",
        ),
        (
            json!([{"from": 0, "step": 10}, {"from": 500, "step": 0}]),
            "increment[1].step",
        ),
        (json!([{"from": 0, "step": 10, "extra": 1}]), "increment[0]"),
        (json!("ten"), "increment"),
    ] {
        let mut body = lot.clone();
        body["increment"] = ladder.clone();
        let (status, json) = put(&state, "car", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{ladder}: {json}");
        assert!(
            json["error"]["field"]
                .as_str()
                .is_some_and(|f| f.starts_with(field)),
            "{ladder}: {json}"
        );
    }
    let (status, _, _) = get(&state, "/v1/lots/car", Some(TERMINAL)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    state.store.shutdown().await;
}

#[tokio::test]
async fn the_reserve_and_maximums_are_shown_only_to_whom_they_belong() {
    let state = AppState::open(config()).unwrap();
    let mut lot = serde_json::to_value(open_lot("Audi A4")).unwrap();
    lot["reserve_price"] = json!(777_777);
    lot["increment"] = json!([{"from": 0, "step": 5000}, {"from": 200000, "step": 10000}]);
    let (status, created) = put(&state, "car", &lot).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        created["reserve_price"], 777_777,
        "the admin sees the reserve"
    );
    let (status, receipt) = bid(&state, ALICE, json!({"max_amount": 123_457})).await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    assert_eq!(
        (
            &receipt["leading"],
            &receipt["max_amount"],
            &receipt["proxy"]
        ),
        (&json!(true), &json!(123_457), &json!(true))
    );
    let (status, receipt) = bid(&state, BOB, json!({"amount": 105_000})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(receipt["leading"], false, "alice's maximum answered");
    assert!(receipt.get("max_amount").is_none(), "{receipt}");
    // A maximum below the next bid, and one above the bid it comes with.
    let (status, err) = bid(&state, BOB, json!({"max_amount": 110_000})).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::CONFLICT, Some("max_amount"))
    );
    assert_eq!(err["error"]["min_next_bid"], 115_000);
    let (status, err) = bid(
        &state,
        BOB,
        json!({"amount": 120_000, "max_amount": 119_000}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("max_amount"))
    );

    let (_, _, mine) = get(&state, "/v1/lots/car/max", Some(ALICE)).await;
    assert_eq!(
        (&mine["max_amount"], &mine["leading"]),
        (&json!(123_457), &json!(true))
    );
    let (_, _, his) = get(&state, "/v1/lots/car/max", Some(BOB)).await;
    assert_eq!(
        his["max_amount"],
        Value::Null,
        "bob never sees alice's maximum"
    );
    let (status, _, _) = get(&state, "/v1/lots/car/max", Some(TERMINAL)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, _, admin) = get(&state, "/v1/admin/lots/car", Some(ADMIN)).await;
    assert_eq!(admin["reserve_price"], 777_777);
    assert_eq!(admin["reserve_met"], false);
    for token in [TERMINAL, ALICE] {
        let (status, _, _) = get(&state, "/v1/admin/lots/car", Some(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let head = state.store.log_tail().head();
    common::replicated(&state, head).await;
    let (_, _, lot) = get(&state, "/v1/lots/car", Some(TERMINAL)).await;
    let text = lot.to_string();
    for secret in ["reserve_price", "777777", "123457"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(lot["reserve_met"], false);
    assert_eq!(lot["current_price"], 110_000);
    state.store.shutdown().await;
}

#[tokio::test]
async fn the_audit_trail_is_the_admins_in_json_lines_and_csv() {
    let state = AppState::open(config()).unwrap();
    let lot = serde_json::to_value(open_lot("Audi A4")).unwrap();
    put(&state, "car", &lot).await;
    bid(&state, ALICE, json!({"amount": 100_000})).await;
    let (status, _) = bid(&state, BOB, json!({"amount": 100_000})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "too low: refused, and audited"
    );
    bid(&state, BOB, json!({"max_amount": 150_000})).await;

    for token in [TERMINAL, ALICE] {
        let (status, _, _) = get(&state, "/v1/lots/car/bids", Some(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _, json) = get(&state, "/v1/lots/car/bids", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    let entries = json["entries"].as_array().unwrap();
    let summary: Vec<(String, String, bool)> = entries
        .iter()
        .map(|e| {
            (
                e["bidder"].as_str().unwrap().to_owned(),
                e["origin"].as_str().unwrap().to_owned(),
                e["accepted"].as_bool().unwrap(),
            )
        })
        .collect();
    let s = |b: &str, o: &str, a| (b.to_owned(), o.to_owned(), a);
    assert_eq!(
        summary,
        [
            s("alice", "direct", true),
            s("bob", "direct", false),
            s("bob", "direct", true),
            s("bob", "proxy", true),
        ]
    );
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("bid_too_low")
    );
    assert!(
        entries
            .iter()
            .all(|e| e["at_us"].as_i64().unwrap() > 1_700_000_000_000_000)
    );

    let (status, kind, lines) = raw(&state, "/v1/lots/car/bids?format=jsonl", ADMIN).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/x-ndjson")
    );
    let parsed: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&parsed, entries);

    let (status, kind, csv) = raw(&state, "/v1/lots/car/bids?format=csv", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], lotsync::protocol::AuditEntry::CSV_HEADER);
    assert_eq!(rows.len(), entries.len() + 1);
    assert!(
        rows[2].contains(",bob,bid,direct,false,100000,"),
        "{}",
        rows[2]
    );

    let (_, _, after) = get(&state, "/v1/lots/car/bids?after=2", Some(ADMIN)).await;
    assert_eq!(
        after["entries"].as_array().unwrap().len(),
        entries.len() - 2
    );
    for bad in ["format=xml", "after=-1"] {
        let (status, _, _) = get(&state, &format!("/v1/lots/car/bids?{bad}"), Some(ADMIN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _, _) = get(&state, "/v1/lots/nope/bids", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    state.store.shutdown().await;
}
