//! Helpers shared by the SDK's wiremock tests.
#![allow(dead_code)]

use std::time::Duration;

use lotsync::protocol::{Lot, LotsResponse, Seq};
use wiremock::ResponseTemplate;

pub const EPOCH: &str = "e1";

pub fn lot(id: &str, seq: Seq, price: i64) -> Lot {
    let mut lot = Lot::example(id);
    lot.seq = seq;
    lot.current_price = price;
    lot
}

pub fn lots_response(seq: Seq, lots: Vec<Lot>) -> ResponseTemplate {
    let body = LotsResponse {
        epoch: EPOCH.into(),
        seq,
        lots,
        missing: vec![],
    };
    ResponseTemplate::new(200).set_body_json(body)
}

/// One SSE event as text.
pub fn event(name: &str, id: Option<Seq>, data: &str) -> String {
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    format!("{id}event: {name}\ndata: {data}\n\n")
}

pub fn hello(head: Seq) -> String {
    event(
        "hello",
        None,
        &format!(r#"{{"epoch":"{EPOCH}","head":{head},"heartbeat_ms":1000}}"#),
    )
}

pub fn notice(seq: Seq, lot: &str) -> String {
    event(
        "notice",
        Some(seq),
        &format!(r#"{{"seq":{seq},"lot_id":"{lot}","kind":"bid","at":"2026-01-01T10:00:00Z"}}"#),
    )
}

pub fn heartbeat(head: Seq) -> String {
    event(
        "heartbeat",
        None,
        &format!(r#"{{"epoch":"{EPOCH}","head":{head},"at":"2026-01-01T10:00:00Z"}}"#),
    )
}

pub fn sse(events: &[String]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(events.concat(), "text/event-stream")
}

/// A client with short delays so tests run fast.
pub fn client(url: &str) -> lotsync::Client {
    lotsync::Client::builder(url)
        .token("term-token")
        .bidder_token("bid-token")
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(50))
        .retry_delay(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .expect("valid options")
}

/// Wait until `condition` holds or `timeout` passes; returns whether it held. The
/// condition is checked again whenever the client reports something: a mirror change
/// or a connection-state change (every reconnect is one), so nothing polls.
pub async fn eventually(
    client: &lotsync::Client,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
) -> bool {
    let mut display = client.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        match tokio::time::timeout_at(deadline, display.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return condition(),
        }
    }
}

pub const WAIT: Duration = Duration::from_secs(10);
