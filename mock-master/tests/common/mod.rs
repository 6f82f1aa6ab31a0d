//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod engines;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chrono::Utc;
use lotsync::protocol::{LotInput, LotStatus};
use mock_master::{AppState, MasterConfig, Storage};
use serde_json::Value;
use tower::ServiceExt;

pub const ADMIN: &str = "admin-token";
pub const TERMINAL: &str = "terminal-token";
pub const ALICE: &str = "alice-token";
pub const BOB: &str = "bob-token";

/// A configuration with fixed tokens, in memory, chaos on, short waits.
pub fn config() -> MasterConfig {
    MasterConfig {
        storage: Storage::InMemory,
        admin_token: ADMIN.into(),
        terminal_token: TERMINAL.into(),
        bidders: vec![("alice".into(), ALICE.into()), ("bob".into(), BOB.into())],
        heartbeat: Duration::from_millis(200),
        fetch_wait: Duration::from_millis(200),
        chaos: Some(Default::default()),
        seed: Some(7),
        ..MasterConfig::default()
    }
}

/// An open lot ending in an hour.
pub fn open_lot(title: &str) -> LotInput {
    let now = Utc::now();
    LotInput {
        title: title.into(),
        attributes: [("make".to_string(), Value::from("Volvo"))]
            .into_iter()
            .collect(),
        currency: "EUR".into(),
        starting_price: 100_000,
        increment: 5_000.into(),
        reserve_price: None,
        status: Some(LotStatus::Open),
        starts_at: now - chrono::Duration::minutes(1),
        ends_at: now + chrono::Duration::hours(1),
        lane: None,
        run_order: None,
    }
}

/// `GET uri` with an optional bearer token and no body.
pub async fn get(
    state: &AppState,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    call(state, Method::GET, uri, token, None, &[]).await
}

/// Send one request to the router; returns status, headers and the JSON body (or Null).
pub async fn call(
    state: &AppState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = mock_master::app(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

/// Wait until the replica has applied `seq`.
pub async fn replicated(state: &AppState, seq: u64) {
    let mut applied = state.store.log_tail().watch_applied();
    // Only a hang takes this long: a busy machine may be slow, never wrong.
    tokio::time::timeout(Duration::from_secs(30), applied.wait_for(|a| *a >= seq))
        .await
        .expect("replica caught up in time")
        .unwrap();
}
