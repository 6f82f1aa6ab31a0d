//! The SDK against a hostile master: a raw TCP fake (in the style of `stream_raw.rs`)
//! that sends what wiremock cannot: event ids going backwards, a 10 MB event, streams
//! and fetch answers cut half-way by a half-closed connection, a stall in the middle of
//! an event, invalid UTF-8 and NUL bytes, wrong content types on the snapshot and the
//! fetches, a 10 MB fetch answer. In every case the SDK counts the fault, never panics,
//! never shows an older version, and recovers to the right mirror.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake does with one request.
enum Reply {
    /// Write these bytes, then half-close (FIN) and wait for the client to hang up.
    Close(Vec<u8>),
    /// Write these bytes and keep the connection open, silent.
    Hold(Vec<u8>),
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    last_event_id: Option<String>,
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A fake master; `script(request, n)` answers the `n`-th request to the same route.
struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, script.clone(), log.clone()));
            }
        });
        Fake { url, seen }
    }

    fn requests(&self, route: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.path.starts_with(route))
            .cloned()
            .collect()
    }
}

/// Requests are numbered per route; a batch fetch is its own route, apart from the
/// snapshot (`GET /v1/lots`).
fn route(path: &str) -> &str {
    if path.starts_with("/v1/lots?") {
        "fetch"
    } else {
        path.split('?').next().unwrap_or(path)
    }
}

async fn serve(mut socket: TcpStream, script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>) {
    // Keep-alive: answer requests on this connection until it closes or is held.
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => head.push(byte[0]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let last_event_id = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("last-event-id:")
                .map(|v| v.trim().to_owned())
        });
        let request = Seen {
            path,
            last_event_id,
        };
        let n = {
            let mut log = seen.lock().unwrap();
            let n = log
                .iter()
                .filter(|s| route(&s.path) == route(&request.path))
                .count();
            log.push(request.clone());
            n
        };
        let mut rest = [0u8; 1024];
        match script(&request, n) {
            Reply::Close(bytes) => {
                let _ = socket.write_all(&bytes).await;
                let _ = socket.shutdown().await;
                while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
                return;
            }
            Reply::Hold(bytes) => {
                if socket.write_all(&bytes).await.is_err() {
                    return;
                }
                if bytes.starts_with(b"HTTP/1.1 200 OK\r\ncontent-type: application/json") {
                    continue; // a complete JSON answer: the connection may be reused
                }
                while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";

fn stream(body: impl AsRef<[u8]>) -> Reply {
    let mut bytes = SSE_HEAD.as_bytes().to_vec();
    bytes.extend_from_slice(body.as_ref());
    Reply::Hold(bytes)
}

fn json(body: &str) -> Reply {
    Reply::Hold(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn lots(seq: u64, lots: Vec<lotsync::protocol::Lot>) -> String {
    serde_json::to_string(&lotsync::protocol::LotsResponse {
        epoch: EPOCH.into(),
        seq,
        lots,
        missing: vec![],
    })
    .unwrap()
}

/// The `min_seq` a fetch asks for (1 when none).
fn min_seq(path: &str) -> u64 {
    path.split(['?', '&'])
        .find_map(|p| p.strip_prefix("min_seq="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Snapshot of lot `a` at version 1; fetches answered with `a` at the version asked.
fn snapshot_and_fetch(request: &Seen) -> Option<Reply> {
    if request.path == "/v1/lots" {
        Some(json(&lots(1, vec![lot("a", 1, 100)])))
    } else if request.path.starts_with("/v1/lots") {
        let seq = min_seq(&request.path);
        Some(json(&lots(seq, vec![lot("a", seq, 100 + seq as i64)])))
    } else {
        None
    }
}

fn fast_client(url: &str) -> lotsync::Client {
    lotsync::Client::builder(url)
        .token("t")
        .idle_timeout(Duration::from_millis(300))
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(50))
        .retry_delay(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap()
}

/// Wait until the mirror holds `a` at `seq`; watch that no display ever goes back.
async fn settles_at(client: &lotsync::Client, seq: u64) {
    let mut display = client.subscribe();
    let regressed = tokio::spawn(async move {
        let mut shown = 0;
        while let Some(update) = display.recv().await {
            if let lotsync::Update::LotChanged { lot, .. } = update {
                assert!(lot.seq > shown, "shown {} after {shown}", lot.seq);
                shown = lot.seq;
            }
        }
    });
    assert!(
        eventually(client, WAIT, || client
            .mirror()
            .get("a")
            .is_some_and(|l| l.seq == seq))
        .await,
        "mirror: {:?}, metrics: {:?}",
        client.mirror().get("a"),
        client.metrics()
    );
    assert!(!client.is_closed(), "the client's tasks are alive");
    client.shutdown().await;
    regressed.await.expect("no display went back in time");
}

#[tokio::test]
async fn event_ids_going_backwards_never_regress_the_mirror() {
    let fake = Fake::start(|request, _| {
        snapshot_and_fetch(request).unwrap_or_else(|| {
            let backwards = [2, 3, 2, 1, 3, 2].map(|seq| notice(seq, "a"));
            stream([hello(3), backwards.concat()].concat())
        })
    })
    .await;
    let client = fast_client(&fake.url);
    // The backward ids are counted as duplicates and the mirror ends at the highest.
    let settled = eventually(&client, WAIT, || {
        client.metrics().duplicate_notices >= 4
            && client.mirror().get("a").is_some_and(|l| l.seq == 3)
    })
    .await;
    assert!(
        settled,
        "{:?} {:?}",
        client.metrics(),
        client.mirror().get("a")
    );
    settles_at(&client, 3).await;
}

#[tokio::test]
async fn a_10_mb_event_cuts_the_stream_and_it_resumes_after_the_last_good_one() {
    let fake = Fake::start(|request, n| {
        snapshot_and_fetch(request).unwrap_or_else(|| match n {
            0 => {
                let huge = event("notice", Some(3), &"x".repeat(10 << 20));
                stream([hello(2), notice(2, "a"), huge].concat())
            }
            _ => stream([hello(3), notice(3, "a")].concat()),
        })
    })
    .await;
    let client = fast_client(&fake.url);
    settles_at(&client, 3).await;
    let metrics = client.metrics();
    assert!(metrics.malformed_events >= 1, "{metrics:?}");
    let streams = fake.requests("/v1/notices");
    assert!(streams.len() >= 2, "{streams:?}");
    assert_eq!(
        streams[1].last_event_id.as_deref(),
        Some("2"),
        "{streams:?}"
    );
}

#[tokio::test]
async fn a_stream_half_closed_mid_event_resumes_from_the_last_complete_event() {
    let fake = Fake::start(|request, n| {
        snapshot_and_fetch(request).unwrap_or_else(|| match n {
            0 => {
                let mut body = SSE_HEAD.to_owned();
                body += &hello(2);
                body += &notice(2, "a");
                body += "id: 3\nevent: notice\ndata: {\"seq\":3,\"lot_";
                Reply::Close(body.into_bytes())
            }
            1 => Reply::Close(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n".to_vec()),
            _ => stream([hello(3), notice(3, "a")].concat()),
        })
    })
    .await;
    let client = fast_client(&fake.url);
    settles_at(&client, 3).await;
    let streams = fake.requests("/v1/notices");
    assert!(streams.len() >= 3, "{streams:?}");
    assert_eq!(streams[1].last_event_id.as_deref(), Some("2"));
    assert_eq!(client.metrics().resyncs, 1, "resumed, not resynced");
}

#[tokio::test]
async fn a_stall_in_the_middle_of_an_event_trips_the_watchdog() {
    let fake = Fake::start(|request, n| {
        snapshot_and_fetch(request).unwrap_or_else(|| match n {
            0 => stream(format!(
                "{}event: notice\nid: 2\ndata: {{\"seq\":2",
                hello(1)
            )),
            _ => stream([hello(2), notice(2, "a")].concat()),
        })
    })
    .await;
    let client = fast_client(&fake.url);
    settles_at(&client, 2).await;
    assert!(client.metrics().reconnects >= 1);
}

#[tokio::test]
async fn invalid_utf8_and_nul_bytes_on_the_stream_are_survived() {
    let fake = Fake::start(|request, n| {
        snapshot_and_fetch(request).unwrap_or_else(|| match n {
            0 => {
                let mut body = hello(1).into_bytes();
                body.extend_from_slice(b"\xff\xfe\x00garbage\n\n");
                body.extend_from_slice(b"event: notice\nid: 2\ndata: \xc3\x28\x00\n\n");
                body.extend_from_slice(b"event: \x00\x01\x02\ndata: {}\n\n");
                stream(body)
            }
            _ => stream([hello(2), notice(2, "a")].concat()),
        })
    })
    .await;
    let client = fast_client(&fake.url);
    settles_at(&client, 2).await;
}

#[tokio::test]
async fn truncated_and_half_closed_fetch_answers_are_retried() {
    let fake = Fake::start(|request, n| {
        if request.path == "/v1/lots" {
            return json(&lots(1, vec![lot("a", 1, 100)]));
        }
        if request.path.starts_with("/v1/notices") {
            return stream([hello(2), notice(2, "a")].concat());
        }
        let good = lots(2, vec![lot("a", 2, 150)]);
        match n {
            0 => Reply::Close(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                    good.len(),
                    &good[..good.len() / 2]
                )
                .into_bytes(),
            ),
            1 => Reply::Close(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n".to_vec()),
            2 => Reply::Close(b"HTTP/1.1 20".to_vec()),
            3 => Reply::Close(Vec::new()),
            _ => json(&good),
        }
    })
    .await;
    let client = fast_client(&fake.url);
    settles_at(&client, 2).await;
    let metrics = client.metrics();
    assert!(metrics.fetch_errors >= 3, "{metrics:?}");
}

#[tokio::test]
async fn wrong_content_types_and_a_10_mb_answer_are_not_data() {
    let fake = Fake::start(|request, n| {
        let typed = |content_type: &str, body: &str| {
            Reply::Close(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            )
        };
        if request.path.starts_with("/v1/notices") {
            return stream([hello(2), notice(2, "a")].concat());
        }
        if request.path == "/v1/lots" {
            // The snapshot: first as a page, then as text, then right.
            let good = lots(1, vec![lot("a", 1, 100)]);
            return match n {
                0 => typed("text/html", "<html>maintenance</html>"),
                1 => typed("text/plain", &good),
                _ => json(&good),
            };
        }
        let good = lots(2, vec![lot("a", 2, 150)]);
        match n {
            0 => typed("application/octet-stream", &good),
            1 => typed("application/json", &format!("[{}]", " ".repeat(10 << 20))),
            _ => json(&good),
        }
    })
    .await;
    let client = fast_client(&fake.url);
    settles_at(&client, 2).await;
    assert!(
        fake.requests("/v1/lots").len() >= 3 + 3,
        "every bad answer retried"
    );
    let metrics = client.metrics();
    assert!(
        metrics.malformed_events + metrics.fetch_errors >= 2,
        "{metrics:?}"
    );
}

#[tokio::test]
async fn fetches_answered_503_for_good_leave_live_and_recover() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let replica_back = Arc::new(AtomicBool::new(false));
    let back = replica_back.clone();
    let fake = Fake::start(move |request, _| {
        if request.path.starts_with("/v1/notices") {
            // One healthy stream, held open: notices keep arriving fine.
            return stream(format!("{}{}", hello(2), notice(2, "a")));
        }
        if request.path.starts_with("/v1/lots?") && !back.load(Ordering::SeqCst) {
            // The replica is stalled: every fetch is a 503.
            return Reply::Close(
                b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"
                    .to_vec(),
            );
        }
        snapshot_and_fetch(request).unwrap_or_else(|| {
            Reply::Close(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec())
        })
    })
    .await;
    let client = lotsync::Client::builder(&fake.url)
        .token("t")
        .idle_timeout(Duration::from_secs(600))
        .retry_delay(Duration::from_millis(10), Duration::from_millis(50))
        .degraded_after(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut state = client.state();
    // Copied out at once: a held `Ref` would block the client's next state change.
    let degraded = tokio::time::timeout(
        WAIT,
        state.wait_for(|s| matches!(s, lotsync::ConnectionState::Degraded { .. })),
    )
    .await
    .map(|found| found.map(|state| *state));
    assert!(
        matches!(degraded, Ok(Ok(_))),
        "still {} while every fetch fails",
        *client.state().borrow()
    );
    assert!(
        client.mirror().is_stale(),
        "a degraded mirror is not current"
    );
    assert_eq!(
        client.mirror().get("a").unwrap().seq,
        1,
        "nothing half-applied"
    );
    assert_eq!(
        fake.requests("/v1/notices").len(),
        1,
        "the stream itself stayed up"
    );

    // The replica catches up: the next retry succeeds and the state is live again.
    replica_back.store(true, Ordering::SeqCst);
    assert!(
        eventually(&client, WAIT, || client
            .mirror()
            .get("a")
            .is_some_and(|a| a.seq == 2))
        .await
    );
    assert!(
        client.wait_live(WAIT).await,
        "still {} after fetches recovered",
        *client.state().borrow()
    );
    client.shutdown().await;
}
