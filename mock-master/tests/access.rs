//! The access matrix: every write and read endpoint × {no token, a malformed header, an
//! unknown token, each role's token}. A request without a known token gets 401, a known
//! token of a role that may not do this gets 403, and either way nothing changes (head,
//! every replica lot, fault settings). Fault injection is admin-only when `--chaos` is
//! on, and 404 `chaos_disabled` for the admin when it is off.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use mock_master::{AppState, MasterConfig};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Terminal,
    Bidder,
}

/// (method, uri, body, roles allowed)
type Endpoint = (Method, &'static str, Option<&'static str>, &'static [Role]);

const ENDPOINTS: &[Endpoint] = &[
    (
        Method::PUT,
        "/v1/lots/car-9",
        Some(
            r#"{"title":"t","currency":"EUR","starting_price":1,"increment":1,"starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z"}"#,
        ),
        &[Role::Admin],
    ),
    (
        Method::PUT,
        "/v1/lots/car-1",
        Some(
            r#"{"title":"t","currency":"EUR","starting_price":1,"increment":1,"starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z"}"#,
        ),
        &[Role::Admin],
    ),
    (
        Method::POST,
        "/v1/lots/car-1/status",
        Some(r#"{"status":"closed"}"#),
        &[Role::Admin],
    ),
    (
        Method::POST,
        "/v1/lots/car-1/bids",
        Some(r#"{"amount":200000}"#),
        &[Role::Bidder],
    ),
    (
        Method::POST,
        "/v1/chaos",
        Some(r#"{"pause_replicator":true,"notice_drop_rate":1}"#),
        &[Role::Admin],
    ),
    (Method::GET, "/v1/chaos", None, &[Role::Admin]),
    (
        Method::GET,
        "/v1/lots/car-1",
        None,
        &[Role::Admin, Role::Terminal],
    ),
    (
        Method::GET,
        "/v1/lots?ids=car-1",
        None,
        &[Role::Admin, Role::Terminal],
    ),
    (
        Method::GET,
        "/v1/lots",
        None,
        &[Role::Admin, Role::Terminal],
    ),
    (
        Method::GET,
        "/v1/changes?after=0",
        None,
        &[Role::Admin, Role::Terminal],
    ),
    (
        Method::GET,
        "/v1/notices",
        None,
        &[Role::Admin, Role::Terminal],
    ),
    (
        Method::GET,
        "/v1/replication",
        None,
        &[Role::Admin, Role::Terminal],
    ),
];

/// The Authorization header to send, and what it is.
const CALLERS: &[(Option<&str>, Option<Role>)] = &[
    (None, None),
    (Some("Bearer"), None),
    (Some("Bearer "), None),
    (Some("Basic YWRtaW46YWRtaW4="), None),
    (Some("Bearer wrong-token"), None),
    (Some("Bearer admin-token-but-longer"), None),
    (Some("Bearer ADMIN-TOKEN"), None),
    (Some("Bearer admin-token"), Some(Role::Admin)),
    (Some("Bearer terminal-token"), Some(Role::Terminal)),
    (Some("Bearer alice-token"), Some(Role::Bidder)),
    (Some("Bearer bob-token"), Some(Role::Bidder)),
];

async fn with_lot(config: MasterConfig) -> AppState {
    let state = AppState::open(config).unwrap();
    state
        .store
        .put_lot("car-1", open_lot("2016 Volvo V70"))
        .await
        .unwrap();
    replicated(&state, 1).await;
    state
}

/// What must not change: head, every replica lot, the fault settings.
async fn snapshot(state: &AppState) -> (u64, Value, String) {
    let (_, lots, _) = state.store.replica_lots(None).await.unwrap();
    (
        state.store.log_tail().head(),
        serde_json::to_value(lots).unwrap(),
        format!("{:?}", state.chaos.settings()),
    )
}

/// Send with a raw Authorization header (or none).
async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let (status, _, json) = call(state, method, uri, None, body, &headers).await;
    (status, json)
}

#[tokio::test]
async fn every_endpoint_refuses_every_caller_without_the_right_role() {
    let state = with_lot(config()).await;
    let before = snapshot(&state).await;
    let mut checked = 0;
    for (method, uri, body, allowed) in ENDPOINTS {
        for (authorization, role) in CALLERS {
            if role.is_some_and(|r| allowed.contains(&r)) {
                continue;
            }
            let want = if role.is_some() {
                (StatusCode::FORBIDDEN, "forbidden")
            } else {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            };
            let (status, json) = send(&state, method.clone(), uri, *authorization, *body).await;
            let code = json["error"]["code"].as_str().unwrap_or_default();
            assert_eq!(
                (status, code),
                want,
                "{method} {uri} with {authorization:?}: {json}"
            );
            assert!(
                json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            assert_eq!(
                snapshot(&state).await,
                before,
                "{method} {uri} with {authorization:?} changed something"
            );
            checked += 1;
        }
    }
    eprintln!("access: {checked} refused requests, nothing changed");
    assert!(checked >= 80);

    // Auth is checked before the body: a refused caller learns nothing from a bad body.
    let (status, _) = send(
        &state,
        Method::PUT,
        "/v1/lots/a%2Fb",
        Some("Bearer terminal-token"),
        Some("{"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The roles that may, can (the stream is left out: it never ends).
    for (method, uri, body, allowed) in ENDPOINTS {
        if *uri == "/v1/notices" || method != Method::GET {
            continue;
        }
        for (authorization, role) in CALLERS {
            if role.is_some_and(|r| allowed.contains(&r)) {
                let (status, json) = send(&state, method.clone(), uri, *authorization, *body).await;
                assert_eq!(status, StatusCode::OK, "{method} {uri}: {json}");
            }
        }
    }
    state.store.shutdown().await;
}

#[tokio::test]
async fn chaos_endpoints_are_404_when_fault_injection_is_off() {
    let state = with_lot(MasterConfig {
        chaos: None,
        ..config()
    })
    .await;
    let before = snapshot(&state).await;
    let patch = r#"{"pause_replicator":true,"fetch_error_rate":1,"cut_streams":true}"#;
    for (method, body) in [(Method::GET, None), (Method::POST, Some(patch))] {
        let (status, json) = send(
            &state,
            method.clone(),
            "/v1/chaos",
            Some("Bearer admin-token"),
            body,
        )
        .await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("chaos_disabled")),
            "{method}: {json}"
        );
        for (authorization, role) in CALLERS {
            if *role == Some(Role::Admin) {
                continue;
            }
            let (status, _) = send(&state, method.clone(), "/v1/chaos", *authorization, body).await;
            let want = if role.is_some() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(status, want, "{method} /v1/chaos with {authorization:?}");
        }
    }
    assert_eq!(snapshot(&state).await, before);
    assert!(!state.chaos.replicator_paused());
    // Reads still come from a replica that keeps up.
    let (status, _) = send(
        &state,
        Method::GET,
        "/v1/lots/car-1?min_seq=1",
        Some("Bearer terminal-token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    state.store.shutdown().await;
}
