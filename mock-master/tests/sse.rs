//! The notice stream over a real socket: hello, resume, reset, heartbeats, cuts.

mod common;

use std::time::Duration;

use common::open_lot;
use lotsync::protocol::{ChaosPatch, Heartbeat, Hello, Notice, Reset};
use mock_master::{Master, MasterBuilder};
use serde_json::Value;

struct Event {
    name: String,
    id: Option<String>,
    data: Value,
}

struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(master: &Master, query: &str, last_event_id: Option<&str>) -> Stream {
        let mut request = reqwest::Client::new()
            .get(format!("{}/v1/notices{query}", master.url()))
            .bearer_auth(master.terminal_token());
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, skipping comments; `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(Event {
                    name,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            // Heartbeats come every 200 ms: a stream silent this long has hung.
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    async fn expect(&mut self, name: &str) -> Event {
        let event = self.next().await.expect("stream still open");
        assert_eq!(event.name, name, "got {} {}", event.name, event.data);
        event
    }

    async fn notice(&mut self) -> Notice {
        let event = self.expect("notice").await;
        let notice: Notice = serde_json::from_value(event.data).unwrap();
        assert_eq!(event.id, Some(notice.seq.to_string()));
        notice
    }
}

fn builder() -> MasterBuilder {
    Master::builder()
        .heartbeat(Duration::from_millis(150))
        .chaos(true)
        .seed(3)
}

async fn with_lots(builder: MasterBuilder, n: usize) -> Master {
    let master = builder.start().await.unwrap();
    for i in 0..n {
        master
            .handle()
            .put_lot(&format!("lot-{i}"), open_lot("car"))
            .await
            .unwrap();
    }
    master
}

#[tokio::test]
async fn resume_sends_exactly_the_notices_after_the_last_event_id() {
    let master = with_lots(builder(), 5).await;
    let mut stream = Stream::open(&master, "", Some("2")).await;
    let hello: Hello = serde_json::from_value(stream.expect("hello").await.data).unwrap();
    assert_eq!(
        (hello.head, hello.heartbeat_ms, hello.epoch.clone()),
        (5, 150, master.handle().epoch())
    );
    for seq in 3..=5 {
        assert_eq!(stream.notice().await.seq, seq);
    }
    master
        .handle()
        .put_lot("lot-new", open_lot("new"))
        .await
        .unwrap();
    let live = stream.notice().await;
    assert_eq!((live.seq, live.lot_id.as_str()), (6, "lot-new"));
    let beat: Heartbeat = serde_json::from_value(stream.expect("heartbeat").await.data).unwrap();
    assert_eq!(beat.head, 6);

    // ?after works like the header, and the header wins over it.
    let mut by_query = Stream::open(&master, "?after=4", None).await;
    by_query.expect("hello").await;
    assert_eq!(by_query.notice().await.seq, 5);
    let mut both = Stream::open(&master, "?after=1", Some("5")).await;
    both.expect("hello").await;
    assert_eq!(both.notice().await.seq, 6);
    master.shutdown().await;
}

#[tokio::test]
async fn a_new_subscriber_starts_live_from_head() {
    let master = with_lots(builder(), 3).await;
    let mut stream = Stream::open(&master, "", None).await;
    stream.expect("hello").await;
    master
        .handle()
        .put_lot("lot-9", open_lot("car"))
        .await
        .unwrap();
    assert_eq!(stream.notice().await.seq, 4);
    master.shutdown().await;
}

#[tokio::test]
async fn unservable_resume_points_get_a_reset_then_live_notices() {
    let master = with_lots(builder().log_retention(3), 5).await;
    let epoch = master.handle().epoch();
    for (query, last) in [
        ("", Some("1")),
        ("", Some("99")),
        ("?after=3&epoch=another", None),
    ] {
        let mut stream = Stream::open(&master, query, last).await;
        stream.expect("hello").await;
        let reset: Reset = serde_json::from_value(stream.expect("reset").await.data).unwrap();
        assert_eq!(
            (reset.head, reset.oldest_retained, reset.epoch.as_str()),
            (5, 3, epoch.as_str())
        );
        let beat: Heartbeat =
            serde_json::from_value(stream.expect("heartbeat").await.data).unwrap();
        assert_eq!(beat.head, 5, "{query} {last:?}");
    }
    // The right epoch resumes normally.
    let mut stream = Stream::open(&master, &format!("?after=3&epoch={epoch}"), None).await;
    stream.expect("hello").await;
    assert_eq!(stream.notice().await.seq, 4);
    master.shutdown().await;
}

#[tokio::test]
async fn dropped_notices_show_up_as_a_heartbeat_beyond_the_last_notice() {
    let master = with_lots(builder(), 1).await;
    let mut stream = Stream::open(&master, "", None).await;
    stream.expect("hello").await;
    let handle = master.handle();
    handle
        .set_chaos(ChaosPatch {
            notice_drop_rate: Some(1.0),
            ..Default::default()
        })
        .unwrap();
    handle.put_lot("lot-x", open_lot("car")).await.unwrap();
    let beat: Heartbeat = serde_json::from_value(stream.expect("heartbeat").await.data).unwrap();
    assert_eq!(beat.head, 2, "the heartbeat tells the truth");
    master.shutdown().await;
}

#[tokio::test]
async fn cutting_streams_and_shutdown_end_open_streams() {
    let master = with_lots(builder(), 1).await;
    let mut stream = Stream::open(&master, "", None).await;
    stream.expect("hello").await;
    master
        .handle()
        .set_chaos(ChaosPatch {
            cut_streams: Some(true),
            ..Default::default()
        })
        .unwrap();
    while let Some(event) = stream.next().await {
        assert_eq!(event.name, "heartbeat");
    }
    let mut stream = Stream::open(&master, "", None).await;
    stream.expect("hello").await;
    tokio::time::timeout(Duration::from_secs(5), master.shutdown())
        .await
        .expect("shutdown does not wait for open streams");
    while stream.next().await.is_some() {}
}

#[tokio::test]
async fn the_builder_gives_url_tokens_and_a_working_handle() {
    let master = Master::builder()
        .bidder("alice", "alice-token")
        .fetch_wait(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    assert!(master.url().starts_with("http://127.0.0.1:"));
    assert_eq!(master.bidder_token("alice"), Some("alice-token"));
    assert_eq!(master.bidder_token("bob"), None);
    assert_ne!(master.admin_token(), master.terminal_token());
    let handle = master.handle();
    handle.put_lot("a", open_lot("A")).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/lots/a/bids", master.url()))
        .bearer_auth("alice-token")
        .json(&serde_json::json!({"amount": 100_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let bid = handle.place_bid("bob", "a", 105_000).await.unwrap();
    assert_eq!(bid.seq, 3);
    assert!(handle.wait_replicated(3, Duration::from_secs(30)).await);
    assert_eq!(
        handle.replica_lots().await.unwrap(),
        handle.primary_lots().await.unwrap()
    );
    let status = handle.replication();
    assert_eq!(
        (status.primary_head, status.replica_applied, handle.head()),
        (3, 3, 3)
    );
    assert!(
        handle.set_chaos(ChaosPatch::default()).is_err(),
        "chaos is off"
    );
    master.shutdown().await;
}
