//! The terminal API's conformance suite, run against two targets: the master itself,
//! and a terminal server following it. Both serve the same protocol (PROTOCOL.md), so
//! every check must pass on both: status codes, auth, snapshots, fetches with
//! `min_seq` and ETags, the change log, and the notice stream (hello, resume, reset,
//! heartbeats, epochs, inline lots).

use std::time::Duration;

use lotsync::protocol::{
    BidRequest, ChangesResponse, Heartbeat, Hello, IncrementBand, Ladder, Lot, LotsResponse,
    Notice, Reset, Seq,
};
use lotsync_tests::sse::SseStream;
use lotsync_tests::{RunningTerminalServer, lot_input, start_terminal_server};
use mock_master::Master;
use serde_json::Value;

/// Retained history on both targets: small, so "too old" is easy to reach.
const RETAINED: usize = 40;
const WAIT: Duration = Duration::from_secs(20);

/// One target of the suite, with the master behind it.
struct Target {
    master: Master,
    relay: Option<RunningTerminalServer>,
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Target {
    async fn master() -> Target {
        let target = Target::start().await;
        target.change(3).await;
        target
    }

    /// A terminal server started before any change, so its history reaches back as
    /// far as the master's.
    async fn terminal_server() -> Target {
        let mut target = Target::start().await;
        let relay =
            start_terminal_server(&target.url, &target.token, |b| b.ring_capacity(RETAINED))
                .await
                .unwrap();
        assert!(
            relay.server.client().wait_live(WAIT).await,
            "the terminal server never went live"
        );
        target.url = relay.url.clone();
        target.token = relay.token.clone();
        target.relay = Some(relay);
        target.change(3).await;
        target
    }

    async fn start() -> Target {
        let master = Master::builder()
            .in_memory()
            .heartbeat(Duration::from_millis(200))
            .log_retention(RETAINED)
            .bidder("alice", "alice-token")
            .bidder("bob", "bob-token")
            .start()
            .await
            .unwrap();
        let (url, token) = (master.url().to_owned(), master.terminal_token().to_owned());
        Target {
            master,
            relay: None,
            url,
            token,
            http: reqwest::Client::new(),
        }
    }

    /// Create or bid on lots so that `n` more operations are committed.
    async fn change(&self, n: usize) {
        let handle = self.master.handle();
        for i in 0..n {
            let id = format!("lot-{}", i % 3);
            let held = handle
                .primary_lots()
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.id == id);
            match held {
                Some(lot) => {
                    handle
                        .place_bid("alice", &id, lot.min_next_bid())
                        .await
                        .unwrap();
                }
                None => {
                    handle
                        .put_lot(&id, lot_input(&format!("Car {i}"), 10_000))
                        .await
                        .unwrap();
                }
            }
        }
        self.settle().await;
    }

    /// Wait until the target serves everything the master committed.
    async fn settle(&self) {
        let head = self.master.handle().head();
        assert!(
            self.master.handle().wait_replicated(head, WAIT).await,
            "replica stuck"
        );
        if let Some(relay) = &self.relay {
            assert!(
                relay.server.wait_served(head, WAIT).await,
                "terminal server stuck below {head}"
            );
        }
    }

    fn head(&self) -> Seq {
        self.master.handle().head()
    }

    fn epoch(&self) -> String {
        self.master.handle().epoch()
    }

    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn read(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = self.get(path, Some(&self.token), &[]).await;
        (status, body)
    }

    async fn stream(&self, query: &str, resume: Option<&str>) -> SseStream {
        SseStream::open(
            &format!("{}/v1/notices{query}", self.url),
            &self.token,
            resume,
        )
        .await
        .unwrap()
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

async fn refuses_readers_without_a_valid_token(t: &Target) {
    for path in [
        "/v1/lots",
        "/v1/lots/lot-0",
        "/v1/changes?after=0",
        "/v1/notices",
    ] {
        let (status, _, body) = t.get(path, None, &[]).await;
        assert_eq!(
            (status, code(&body)),
            (401, "unauthorized"),
            "{path} without a token"
        );
        let (status, _, body) = t.get(path, Some("not-a-token"), &[]).await;
        assert_eq!(
            (status, code(&body)),
            (401, "unauthorized"),
            "{path} with a wrong token"
        );
    }
    let (status, body) = t.read("/v1/nothing-here").await;
    assert_eq!((status, code(&body)), (404, "not_found"));
}

async fn snapshot_is_consistent_with_the_head(t: &Target) {
    let (status, body) = t.read("/v1/lots").await;
    assert_eq!(status, 200);
    let snapshot: LotsResponse = serde_json::from_value(body).unwrap();
    assert_eq!(snapshot.epoch, t.epoch());
    assert_eq!(snapshot.seq, t.head());
    let replica = t.master.handle().replica_lots().await.unwrap();
    assert_eq!(
        snapshot.lots, replica,
        "the same lots, versions and contents as the replica"
    );
    assert!(snapshot.missing.is_empty());
}

async fn single_fetches_honour_min_seq_and_etags(t: &Target) {
    let head = t.head();
    let (status, headers, body) = t
        .get(
            &format!("/v1/lots/lot-0?min_seq={head}"),
            Some(&t.token),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let lot: Lot = serde_json::from_value(body).unwrap();
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, lotsync::serve::etag(&t.epoch(), lot.seq));
    let (status, _, _) = t
        .get(
            "/v1/lots/lot-0",
            Some(&t.token),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(status, 304);
    let other_history = lotsync::serve::etag("another-epoch", lot.seq);
    let (status, _, _) = t
        .get(
            "/v1/lots/lot-0",
            Some(&t.token),
            &[("if-none-match", &other_history)],
        )
        .await;
    assert_eq!(status, 200, "a validator of another history never matches");
    let (status, body) = t.read("/v1/lots/no-such-lot").await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = t.read("/v1/lots/bad%20id").await;
    assert_eq!(
        (status, code(&body), body["error"]["field"].as_str()),
        (400, "invalid_field", Some("id"))
    );
    let (status, body) = t
        .read(&format!("/v1/lots/lot-0?min_seq={}", head + 1_000_000))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("min_seq")),
        "beyond the history"
    );
    let (status, body) = t.read("/v1/lots/lot-0?min_seq=x").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("min_seq"))
    );
}

async fn batch_fetches_name_the_missing(t: &Target) {
    let (status, body) = t
        .read(&format!(
            "/v1/lots?ids=lot-1,lot-0,ghost&min_seq={}",
            t.head()
        ))
        .await;
    assert_eq!(status, 200);
    let batch: LotsResponse = serde_json::from_value(body).unwrap();
    let ids: Vec<&str> = batch.lots.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(
        (ids, batch.missing),
        (vec!["lot-0", "lot-1"], vec!["ghost".to_owned()])
    );
    assert_eq!(batch.epoch, t.epoch());
    let many = vec!["x"; lotsync::serve::MAX_BATCH_IDS + 1].join(",");
    let (status, body) = t.read(&format!("/v1/lots?ids={many}")).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("ids"))
    );
}

async fn change_log_is_contiguous_and_bounded(t: &Target) {
    let head = t.head();
    let (status, body) = t.read("/v1/changes?after=1").await;
    assert_eq!(status, 200);
    let page: ChangesResponse = serde_json::from_value(body).unwrap();
    let seqs: Vec<Seq> = page.changes.iter().map(|n| n.seq).collect();
    assert_eq!(seqs, (2..=head).collect::<Vec<_>>());
    assert_eq!((page.head, page.epoch.as_str()), (head, t.epoch().as_str()));
    let (status, body) = t.read("/v1/changes?after=1&limit=1").await;
    assert_eq!(
        (status, body["changes"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (status, body) = t.read(&format!("/v1/changes?after={}", head + 10)).await;
    assert_eq!((status, code(&body)), (410, "history_truncated"));
    let (status, body) = t.read("/v1/changes?after=0&limit=0").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("limit"))
    );
    // Push the start of the history past 1.
    t.change(RETAINED + 5).await;
    let (status, body) = t.read("/v1/changes?after=1").await;
    assert_eq!((status, code(&body)), (410, "history_truncated"));
}

async fn stream_resumes_after_the_last_event_id(t: &Target) {
    let head = t.head();
    let mut stream = t.stream("", Some("1")).await;
    let hello: Hello = serde_json::from_value(stream.expect("hello").await.data).unwrap();
    assert_eq!((hello.epoch, hello.head), (t.epoch(), head));
    for expected in 2..=head {
        let event = stream.expect("notice").await;
        let notice: Notice = serde_json::from_value(event.data).unwrap();
        assert_eq!(
            (notice.seq, event.id),
            (expected, Some(expected.to_string()))
        );
        assert!(notice.lot.is_none(), "no lot unless asked for");
    }
    t.change(2).await;
    for expected in head + 1..=head + 2 {
        let notice: Notice = serde_json::from_value(stream.expect("notice").await.data).unwrap();
        assert_eq!(
            notice.seq, expected,
            "live notices follow the replay in order"
        );
    }
    let beat: Heartbeat = serde_json::from_value(stream.expect("heartbeat").await.data).unwrap();
    assert_eq!(
        (beat.head, beat.epoch, beat.stale),
        (head + 2, t.epoch(), false)
    );
    // ?after works when there is no header; a bad resume point is refused.
    let mut stream = t.stream(&format!("?after={}", head + 1), None).await;
    stream.expect("hello").await;
    let notice: Notice = serde_json::from_value(stream.expect("notice").await.data).unwrap();
    assert_eq!(notice.seq, head + 2);
    let (status, _, body) = t.get("/v1/notices?after=zz", Some(&t.token), &[]).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("after"))
    );
}

async fn stream_resets_what_it_cannot_resume(t: &Target) {
    t.change(RETAINED + 5).await;
    let head = t.head();
    // Older than the retained history.
    let mut stream = t.stream("", Some("1")).await;
    stream.expect("hello").await;
    let reset: Reset = serde_json::from_value(stream.expect("reset").await.data).unwrap();
    assert_eq!(
        (reset.head, reset.epoch.as_str()),
        (head, t.epoch().as_str())
    );
    assert!(reset.oldest_retained > 1);
    // Beyond the head.
    let mut stream = t.stream("", Some(&(head + 100).to_string())).await;
    stream.expect("hello").await;
    assert_eq!(stream.expect("reset").await.data["head"], head);
    // Of another epoch.
    let mut stream = t.stream("?epoch=another", Some("2")).await;
    stream.expect("hello").await;
    stream.expect("reset").await;
    // After a reset the stream goes on live.
    t.change(1).await;
    let notice: Notice = serde_json::from_value(stream.expect("notice").await.data).unwrap();
    assert_eq!(notice.seq, head + 1);
}

async fn inline_notices_carry_their_lot(t: &Target) {
    let head = t.head();
    let mut stream = t
        .stream("?lots=inline", Some(&(head - 1).to_string()))
        .await;
    stream.expect("hello").await;
    let notice: Notice = serde_json::from_value(stream.expect("notice").await.data).unwrap();
    let lot = notice.lot.expect("the notice carries its lot");
    assert_eq!(lot.id, notice.lot_id);
    assert!(lot.seq >= notice.seq, "never older than the notice");
    let (status, _, body) = t.get("/v1/notices?lots=all", Some(&t.token), &[]).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("lots"))
    );
}

/// A reserve and a leading maximum with digits no other field has: neither may reach a
/// terminal on any read path (fetch, batch, snapshot, change log, inline notices).
async fn reserve_and_maximums_never_reach_terminals(t: &Target) {
    const RESERVE: i64 = 777_777;
    const MAX: i64 = 123_457;
    let handle = t.master.handle();
    let mut input = lot_input("Confidential", 10_000);
    input.reserve_price = Some(RESERVE);
    input.increment = Ladder::new(vec![
        IncrementBand { from: 0, step: 100 },
        IncrementBand {
            from: 50_000,
            step: 1_000,
        },
    ]);
    let from = t.head();
    handle.put_lot("secret", input).await.unwrap();
    let receipt = handle
        .bid("alice", "secret", BidRequest::max(MAX))
        .await
        .unwrap();
    assert!(receipt.leading && receipt.max_amount == Some(MAX));
    // bob's direct bids are answered by alice's maximum, one step above each.
    for amount in [20_000, 55_000] {
        handle.place_bid("bob", "secret", amount).await.unwrap();
    }
    t.settle().await;
    let clean = |what: &str, text: &str| {
        for secret in ["reserve_price", &RESERVE.to_string(), &MAX.to_string()] {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    };
    // Her own maximum to alice (through a terminal server too), nobody's to bob.
    let (status, _, mine) = t.get("/v1/lots/secret/max", Some("alice-token"), &[]).await;
    assert_eq!((status, &mine["max_amount"]), (200, &Value::from(MAX)));
    let (status, _, his) = t.get("/v1/lots/secret/max", Some("bob-token"), &[]).await;
    assert_eq!((status, &his["max_amount"]), (200, &Value::Null));
    let (status, lot) = t.read("/v1/lots/secret").await;
    assert_eq!(status, 200);
    clean("a fetch", &lot.to_string());
    assert_eq!(lot["reserve_met"], Value::Bool(false));
    assert_eq!(
        lot["current_price"], 56_000,
        "alice leads one step above bob"
    );
    assert_eq!(lot["leading_bidder"], "alice");
    assert_eq!(lot["increment"], 1_000, "the step of the price's band");
    assert_eq!(lot["recent_bids"][0]["proxy"], true);
    for path in [
        "/v1/lots?ids=secret".to_owned(),
        "/v1/lots".to_owned(),
        format!("/v1/changes?after={from}"),
    ] {
        let (status, body) = t.read(&path).await;
        assert_eq!(status, 200, "{path}");
        clean(&path, &body.to_string());
    }
    let head = t.head();
    let mut stream = t.stream("?lots=inline", Some(&from.to_string())).await;
    stream.expect("hello").await;
    loop {
        let event = stream.expect("notice").await;
        clean("an inline notice", &event.data.to_string());
        let notice: Notice = serde_json::from_value(event.data).unwrap();
        if notice.seq >= head {
            break;
        }
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod master {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                super::$check(&super::Target::master().await).await;
            })*
        }
        mod terminal_server {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                super::$check(&super::Target::terminal_server().await).await;
            })*
        }
    };
}

conformance!(
    refuses_readers_without_a_valid_token,
    snapshot_is_consistent_with_the_head,
    single_fetches_honour_min_seq_and_etags,
    batch_fetches_name_the_missing,
    change_log_is_contiguous_and_bounded,
    stream_resumes_after_the_last_event_id,
    stream_resets_what_it_cannot_resume,
    inline_notices_carry_their_lot,
    reserve_and_maximums_never_reach_terminals,
);
