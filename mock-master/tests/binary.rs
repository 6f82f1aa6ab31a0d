//! The binary: first stdout line, bad flags, graceful SIGTERM, and a kill -9 restart
//! that keeps every acknowledged bid exactly once (on SQLite files, and with a MariaDB
//! primary and a PostgreSQL replica).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::engines::{Databases, Engine};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mock-master");

/// Start the binary; returns the child and its URL read from the first stdout line.
fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            "adm",
            "--terminal-token",
            "term",
        ])
        .args(["--bidder", "alice:alice-tok"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_owned();
    (child, url)
}

/// The master is healthy. `start` has read the first stdout line, which the binary
/// prints once its socket is bound: the request waits in the listen backlog until the
/// master serves it, so one request answers, no polling needed.
async fn healthy(client: &reqwest::Client, url: &str) {
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(format!("{url}/healthz")).send(),
    )
    .await
    .unwrap_or_else(|_| panic!("{url} never became healthy"))
    .unwrap_or_else(|e| panic!("{url} never became healthy: {e}"));
    assert_eq!(response.status(), 200, "{url} never became healthy");
}

#[test]
fn bad_flags_fail_with_a_message() {
    for args in [
        &["--bogus"][..],
        &["--heartbeat-ms", "0"],
        &["--bidder", "no-token"],
        &["--in-memory", "--data-dir", "x"],
        &["--primary", "redis://localhost/0"],
        &["--primary", "postgres://postgres@127.0.0.1"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn kill_9_keeps_acknowledged_bids_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_round(&["--data-dir", dir.path().to_str().unwrap()]).await;
}

#[tokio::test]
async fn kill_9_with_a_mariadb_primary_keeps_acknowledged_bids_exactly_once() {
    let dbs = Databases::new(Engine::MariaDb, Engine::Postgres);
    let (primary, replica) = (dbs.primary.expose(), dbs.replica.expose());
    let data = dbs.dir.path().to_str().unwrap();
    kill_9_round(&[
        "--data-dir",
        data,
        "--primary",
        &primary,
        "--replica",
        &replica,
    ])
    .await;
    // Nothing was written to SQLite files: both databases are on the servers.
    assert!(std::fs::read_dir(dbs.dir.path()).unwrap().next().is_none());
}

/// Start on `args`, take 20 acknowledged bids, kill -9, restart on the same databases,
/// and check every bid is there once; then stop with SIGTERM.
async fn kill_9_round(args: &[&str]) {
    let client = reqwest::Client::new();
    let (mut child, url) = start(args);
    healthy(&client, &url).await;
    let now = Utc::now();
    let lot = json!({"title": "2015 Saab 9-3", "currency": "EUR", "starting_price": 100000, "increment": 5000,
        "status": "open", "starts_at": now - chrono::Duration::minutes(1), "ends_at": now + chrono::Duration::hours(1)});
    let r = client
        .put(format!("{url}/v1/lots/saab"))
        .bearer_auth("adm")
        .json(&lot)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let r = client
            .post(format!("{url}/v1/lots/saab/bids"))
            .bearer_auth("alice-tok")
            .json(&json!({"amount": 100_000 + i * 5_000}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        acknowledged.push(r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap());
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, url) = start(args);
    healthy(&client, &url).await;
    let r = client
        .get(format!("{url}/v1/lots/saab?min_seq=21"))
        .bearer_auth("term")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let lot: Value = r.json().await.unwrap();
    assert_eq!(
        (lot["bid_count"].as_u64(), lot["current_price"].as_i64()),
        (Some(20), Some(195_000))
    );
    let newest: Vec<u64> = lot["recent_bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        newest,
        acknowledged
            .iter()
            .rev()
            .take(10)
            .copied()
            .collect::<Vec<_>>()
    );
    let status: Value = client
        .get(format!("{url}/v1/replication"))
        .bearer_auth("term")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            status["primary_head"].as_u64(),
            status["replica_applied"].as_u64()
        ),
        (Some(21), Some(21))
    );

    // SIGTERM is a graceful shutdown.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(code.success(), "{code:?}");
}

#[tokio::test]
async fn secrets_never_reach_stdout_or_logs_and_metrics_can_require_a_token() {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--in-memory",
            "--admin-token",
            "adm-s3cret",
        ])
        .args([
            "--terminal-token",
            "term-s3cret",
            "--bidder",
            "alice:alice-s3cret",
        ])
        .args(["--metrics-token", "scrape-s3cret"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..5 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let url = lines[0]
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    healthy(&client, &url).await;
    let scrape = |token: Option<&'static str>| {
        let mut request = client.get(format!("{url}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(scrape(None).await.unwrap().status(), 401);
    assert_eq!(scrape(Some("term-s3cret")).await.unwrap().status(), 401);
    assert_eq!(scrape(Some("scrape-s3cret")).await.unwrap().status(), 200);
    assert_eq!(scrape(Some("adm-s3cret")).await.unwrap().status(), 200);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    assert!(child.wait().unwrap().success());
    let printed = lines.concat() + &rest;
    assert!(printed.contains("bidders: alice"), "{printed}");
    for secret in ["adm-s3cret", "term-s3cret", "alice-s3cret", "scrape-s3cret"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        assert!(!logs.contains(secret), "{secret} logged:\n{logs}");
    }
}
