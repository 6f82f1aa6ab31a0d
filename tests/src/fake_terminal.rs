//! A fake terminal server for the wall display's browser tests: it serves the
//! display's real files, a snapshot the test sets, and a notice stream that sends
//! exactly the frames the test writes, so a test can play a misbehaving server
//! (older versions, malformed lots, a lost upstream, a clock far from the screen's).
//! It checks no credentials.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

/// The display's files, as the terminal server embeds them.
const FILES: &[(&str, &str, &str)] = &[
    (
        "display.css",
        "text/css",
        include_str!("../../sdk/src/serve/display/display.css"),
    ),
    (
        "display.js",
        "text/javascript",
        include_str!("../../sdk/src/serve/display/display.js"),
    ),
    (
        "view.js",
        "text/javascript",
        include_str!("../../sdk/src/serve/display/view.js"),
    ),
    (
        "format.js",
        "text/javascript",
        include_str!("../../sdk/src/serve/display/format.js"),
    ),
];
const PAGE: &str = include_str!("../../sdk/src/serve/display/index.html");

/// Heartbeat interval announced in `hello`: long, so the page's silence watchdog
/// never fires while a test holds the stream quiet on purpose.
pub const HELLO_HEARTBEAT_MS: u64 = 60_000;

struct Shared {
    snapshot: Mutex<Value>,
    frames: broadcast::Sender<Bytes>,
    streams: watch::Sender<usize>,
    snapshot_reads: AtomicUsize,
}

/// A running fake terminal server; stops when dropped.
pub struct FakeTerminal {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeTerminal {
    /// Serve on a free port with `snapshot` (a `/v1/lots` body) as the snapshot.
    pub async fn start(snapshot: Value) -> anyhow::Result<FakeTerminal> {
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(snapshot),
            frames: broadcast::channel(1024).0,
            streams: watch::channel(0).0,
            snapshot_reads: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/display", get(|| async { page(PAGE, "text/html") }))
            .route("/display/{file}", get(file))
            .route("/v1/lots", get(lots))
            .route("/v1/notices", get(notices))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeTerminal { url, shared, task })
    }

    /// Base URL, such as `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replace the snapshot served from now on.
    pub fn set_snapshot(&self, snapshot: Value) {
        *self.shared.snapshot.lock().expect("snapshot lock") = snapshot;
    }

    /// How many times the snapshot was read.
    pub fn snapshot_reads(&self) -> usize {
        self.shared.snapshot_reads.load(Ordering::SeqCst)
    }

    /// Send one SSE event to every open stream.
    pub fn send(&self, event: &str, id: Option<u64>, data: &Value) {
        let mut frame = format!("event: {event}\n");
        if let Some(id) = id {
            frame.push_str(&format!("id: {id}\n"));
        }
        frame.push_str(&format!("data: {data}\n\n"));
        let _ = self.shared.frames.send(Bytes::from(frame));
    }

    /// Wait until `n` notice streams have been opened since the start; frames sent
    /// after this reach the latest stream too, after its `hello`.
    pub async fn wait_streams(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.shared.streams.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|opened| *opened >= n))
            .await
            .map_err(|_| anyhow::anyhow!("the page did not open notice stream {n}"))??;
        Ok(())
    }
}

impl Drop for FakeTerminal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => page(body, content_type),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn lots(State(shared): State<Arc<Shared>>) -> Response {
    shared.snapshot_reads.fetch_add(1, Ordering::SeqCst);
    let body = shared.snapshot.lock().expect("snapshot lock").clone();
    axum::Json(body).into_response()
}

async fn notices(State(shared): State<Arc<Shared>>) -> Response {
    let rx = shared.frames.subscribe();
    let (epoch, head) = {
        let snapshot = shared.snapshot.lock().expect("snapshot lock");
        (snapshot["epoch"].clone(), snapshot["seq"].clone())
    };
    let hello = json!({"epoch": epoch, "head": head, "heartbeat_ms": HELLO_HEARTBEAT_MS});
    let first = Bytes::from(format!("event: hello\ndata: {hello}\n\n"));
    let stream = futures::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, Infallible>(first), (None, rx)));
        }
        loop {
            match rx.recv().await {
                Ok(frame) => return Some((Ok(frame), (None, rx))),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // Counted once subscribed, so a frame sent after wait_streams reaches this stream.
    shared.streams.send_modify(|n| *n += 1);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A lot as the terminal server sends it, open for `ends_in` from now (screen clock).
pub fn lot(id: &str, title: &str, seq: u64, price: i64, ends_in: chrono::Duration) -> Value {
    let now = chrono::Utc::now();
    json!({
        "id": id, "title": title,
        "attributes": {"make": "Volvo", "model": "V70", "year": 2019, "mileage_km": 123000,
                       "fuel": "diesel", "gearbox": "automatic", "colour": "dark blue"},
        "currency": "EUR", "starting_price": 1_000_000, "increment": 25_000,
        "reserve_price": null, "current_price": price,
        "bid_count": if price > 1_000_000 { 3 } else { 0 },
        "leading_bidder": if price > 1_000_000 { json!("alice") } else { Value::Null },
        "status": "open",
        "starts_at": (now - chrono::Duration::minutes(5)).to_rfc3339(),
        "ends_at": (now + ends_in).to_rfc3339(),
        "seq": seq, "updated_at": now.to_rfc3339(), "recent_bids": [],
    })
}
