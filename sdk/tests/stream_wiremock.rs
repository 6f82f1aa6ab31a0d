//! The SDK against scripted masters (wiremock): stream, fetch, retry and bad input.

mod support;

use std::time::Duration;

use lotsync::{BidError, ConnectionState, Update};
use support::*;
use wiremock::matchers::{
    header, header_exists, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn mount_snapshot(server: &MockServer, seq: u64, lots: Vec<lotsync::protocol::Lot>) {
    Mock::given(method("GET"))
        .and(path("/v1/lots"))
        .and(query_param_is_missing("ids"))
        .respond_with(lots_response(seq, lots))
        .mount(server)
        .await;
}

async fn mount_stream(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/v1/notices"))
        .respond_with(response)
        .mount(server)
        .await;
}

/// A batch fetch of exactly these ids (comma-separated, as the SDK sends them).
fn fetch_of(ids: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path("/v1/lots"))
        .and(query_param("ids", ids))
}

async fn requests_to(server: &MockServer, route: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == route)
        .collect()
}

#[tokio::test]
async fn snapshot_then_notice_then_fetch_fills_the_mirror() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100)]).await;
    Mock::given(method("GET"))
        .and(path("/v1/notices"))
        .and(header("authorization", "Bearer term-token"))
        .respond_with(sse(&[hello(2), notice(2, "a")]))
        .mount(&server)
        .await;
    fetch_of("a")
        .and(query_param("min_seq", "2"))
        .and(header("authorization", "Bearer term-token"))
        .respond_with(lots_response(2, vec![lot("a", 2, 150)]))
        .mount(&server)
        .await;

    let client = client(&server.uri());
    let mut display = client.subscribe();
    client.synced().await;
    assert!(
        eventually(&client, WAIT, || client
            .mirror()
            .get("a")
            .is_some_and(|l| l.seq == 2))
        .await
    );
    assert_eq!(client.mirror().get("a").unwrap().current_price, 150);

    // The display saw the snapshot, then the change from version 1 to 2.
    let mut saw_change = false;
    while let Some(update) = display.try_recv() {
        if let Update::LotChanged {
            lot,
            previous_version,
            ..
        } = update
        {
            assert_eq!((lot.seq, previous_version), (2, Some(1)));
            saw_change = true;
        }
    }
    assert!(saw_change);
    // The stream resumes from the snapshot's sequence, so nothing between the two is missed.
    let first_stream = &requests_to(&server, "/v1/notices").await[0];
    assert_eq!(first_stream.headers.get("last-event-id").unwrap(), "1");
    let metrics = client.metrics();
    assert!(metrics.notices >= 1 && metrics.applied >= 1, "{metrics:?}");
    assert!(metrics.notice_to_mirror.count >= 1);
    client.shutdown().await;
}

#[tokio::test]
async fn an_ended_stream_is_resumed_with_last_event_id() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100)]).await;
    mount_stream(&server, sse(&[hello(2), notice(2, "a")])).await;
    fetch_of("a")
        .respond_with(lots_response(2, vec![lot("a", 2, 150)]))
        .mount(&server)
        .await;

    let client = client(&server.uri());
    // Each reconnect is a connection-state change: look at the requests after each.
    let mut display = client.subscribe();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut resumed = false;
    while !resumed {
        let streams = requests_to(&server, "/v1/notices").await;
        resumed = streams
            .iter()
            .skip(1)
            .any(|r| r.headers.get("last-event-id").and_then(|v| v.to_str().ok()) == Some("2"));
        if resumed {
            assert!(
                streams[0].url.query().unwrap_or("").contains("epoch=e1"),
                "{}",
                streams[0].url
            );
        } else if !matches!(
            tokio::time::timeout_at(deadline, display.recv()).await,
            Ok(Some(_))
        ) {
            break;
        }
    }
    assert!(resumed, "no reconnect resumed after sequence 2");
    assert!(client.metrics().reconnects >= 1);
    client.shutdown().await;
}

#[tokio::test]
async fn replica_behind_and_stale_answers_are_retried_never_shown() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100)]).await;
    mount_stream(&server, sse(&[hello(3), notice(2, "a"), notice(3, "a")])).await;
    // First a 503, then an answer older than the notice, then the real thing.
    fetch_of("a")
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    fetch_of("a")
        .respond_with(lots_response(2, vec![lot("a", 2, 120)]))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    fetch_of("a")
        .respond_with(lots_response(3, vec![lot("a", 3, 130)]))
        .with_priority(3)
        .mount(&server)
        .await;

    let client = client(&server.uri());
    let mut display = client.subscribe();
    assert!(
        eventually(&client, WAIT, || client
            .mirror()
            .get("a")
            .is_some_and(|l| l.seq == 3))
        .await
    );
    let metrics = client.metrics();
    assert!(metrics.retries >= 2, "{metrics:?}");
    assert!(metrics.stale_responses >= 1, "{metrics:?}");
    while let Some(update) = display.try_recv() {
        if let Update::LotChanged { lot, .. } = update {
            assert_eq!(
                lot.seq, 3,
                "version 2 answered notice 3 and must not be shown"
            );
        }
    }
    client.shutdown().await;
}

#[tokio::test]
async fn garbage_on_the_stream_is_counted_and_never_corrupts_the_mirror() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100)]).await;
    let garbage = [
        hello(2),
        event("notice", Some(5), "{not json"),
        event(
            "notice",
            Some(5),
            r#"{"seq":"five","lot_id":"a","kind":"bid","at":"x"}"#,
        ),
        event(
            "notice",
            Some(7),
            r#"{"seq":2,"lot_id":"a","kind":"bid","at":"2026-01-01T10:00:00Z"}"#,
        ),
        event(
            "notice",
            Some(2),
            r#"{"seq":2,"lot_id":"../etc","kind":"bid","at":"2026-01-01T10:00:00Z"}"#,
        ),
        event("surprise", None, "{}"),
        event("heartbeat", None, "[]"),
        notice(2, "a"),
    ];
    mount_stream(&server, sse(&garbage)).await;
    fetch_of("a")
        .respond_with(lots_response(2, vec![lot("a", 2, 150)]))
        .mount(&server)
        .await;

    let client = client(&server.uri());
    assert!(
        eventually(&client, WAIT, || client
            .mirror()
            .get("a")
            .is_some_and(|l| l.seq == 2))
        .await
    );
    let metrics = client.metrics();
    assert!(metrics.malformed_events >= 6, "{metrics:?}");
    assert_eq!(client.mirror().len(), 1, "only the real lot");
    client.shutdown().await;
}

#[tokio::test]
async fn an_html_page_with_status_200_is_not_data() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100)]).await;
    mount_stream(&server, sse(&[hello(2), notice(2, "a")])).await;
    fetch_of("a")
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>Bad gateway</html>", "text/html"),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    fetch_of("a")
        .respond_with(lots_response(2, vec![lot("a", 2, 150)]))
        .with_priority(2)
        .mount(&server)
        .await;

    let client = client(&server.uri());
    assert!(
        eventually(&client, WAIT, || client
            .mirror()
            .get("a")
            .is_some_and(|l| l.seq == 2))
        .await
    );
    assert!(client.metrics().malformed_events >= 2);
    client.shutdown().await;
}

#[tokio::test]
async fn an_oversized_event_cuts_the_stream_and_the_client_reconnects() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100)]).await;
    let huge = event("notice", Some(2), &"x".repeat(200_000));
    mount_stream(&server, sse(&[hello(1), huge])).await;
    let client = lotsync::Client::builder(server.uri())
        .token("t")
        .max_event_bytes(4096)
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    assert!(
        eventually(&client, WAIT, || client.metrics().malformed_events >= 1
            && client.metrics().reconnects >= 1)
        .await
    );
    assert_eq!(client.mirror().get("a").unwrap().seq, 1);
    client.shutdown().await;
}

#[tokio::test]
async fn a_heartbeat_ahead_of_the_notices_is_caught_up_from_the_change_log() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100), lot("b", 1, 100)]).await;
    mount_stream(&server, sse(&[hello(3), heartbeat(3)])).await;
    Mock::given(method("GET"))
        .and(path("/v1/changes"))
        .and(query_param("after", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"epoch":"e1","head":3,"changes":[
                {"seq":2,"lot_id":"a","kind":"bid","at":"2026-01-01T10:00:00Z"},
                {"seq":3,"lot_id":"b","kind":"bid","at":"2026-01-01T10:00:00Z"}]}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    fetch_of("a,b")
        .and(query_param("min_seq", "3"))
        .respond_with(lots_response(3, vec![lot("a", 2, 110), lot("b", 3, 120)]))
        .mount(&server)
        .await;

    let client = client(&server.uri());
    assert!(
        eventually(&client, WAIT, || {
            let m = client.mirror();
            m.get("a").is_some_and(|l| l.seq == 2) && m.get("b").is_some_and(|l| l.seq == 3)
        })
        .await
    );
    let metrics = client.metrics();
    assert!(metrics.gaps >= 1 && metrics.catchups >= 1, "{metrics:?}");
    client.shutdown().await;
}

#[tokio::test]
async fn a_reset_resyncs_and_keeps_the_display_populated() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/lots"))
        .and(query_param_is_missing("ids"))
        .respond_with(lots_response(1, vec![lot("a", 1, 100)]))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_snapshot(&server, 9, vec![lot("a", 9, 900), lot("b", 8, 800)]).await;
    let reset = event(
        "reset",
        None,
        r#"{"epoch":"e1","head":9,"oldest_retained":5,"reason":"resume point too old"}"#,
    );
    mount_stream(&server, sse(&[hello(9), reset])).await;

    let client = client(&server.uri());
    let mut display = client.subscribe();
    assert!(eventually(&client, WAIT, || client.mirror().get("b").is_some()).await);
    assert_eq!(client.mirror().get("a").unwrap().seq, 9);
    assert!(client.metrics().resyncs >= 2);
    while let Some(update) = display.try_recv() {
        if let Update::Resynced { lots, .. } = update {
            assert!(!lots.is_empty(), "a resync never blanks the display");
        }
    }
    client.shutdown().await;
}

#[tokio::test]
async fn bids_are_typed_and_retried_with_one_idempotency_key() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100)]).await;
    Mock::given(method("POST"))
        .and(path("/v1/lots/a/bids"))
        .and(header("authorization", "Bearer bid-token"))
        .and(header_exists("idempotency-key"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/lots/a/bids"))
        .respond_with(ResponseTemplate::new(201).set_body_raw(
            r#"{"lot_id":"a","bidder":"alice","amount":150,"seq":4,"at":"2026-01-01T10:00:00Z"}"#,
            "application/json",
        ))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/lots/b/bids"))
        .respond_with(ResponseTemplate::new(409).set_body_raw(
            r#"{"error":{"code":"bid_too_low","message":"too low","field":"amount","min_next_bid":175}}"#,
            "application/json",
        ))
        .mount(&server)
        .await;

    let client = client(&server.uri());
    let bid = client
        .place_bid("a", 150)
        .await
        .expect("placed on the retry");
    assert_eq!((bid.amount, bid.seq), (150, 4));
    let attempts = requests_to(&server, "/v1/lots/a/bids").await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[0].headers.get("idempotency-key"),
        attempts[1].headers.get("idempotency-key")
    );

    assert!(matches!(
        client.place_bid("b", 150).await,
        Err(BidError::TooLow { min_next_bid: 175 })
    ));
    assert!(matches!(
        client.place_bid("../x", 150).await,
        Err(BidError::Invalid { .. })
    ));
    client.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_every_display_and_the_state() {
    let server = MockServer::start().await;
    mount_snapshot(&server, 1, vec![lot("a", 1, 100)]).await;
    mount_stream(&server, sse(&[hello(1)])).await;
    let client = client(&server.uri());
    let mut display = client.subscribe();
    client.synced().await;
    client.shutdown().await;
    let ended = tokio::time::timeout(WAIT, async { while display.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the display stream ends after shutdown");
    assert_eq!(*client.state().borrow(), ConnectionState::Closed);
}

#[tokio::test]
async fn a_resync_during_catch_up_still_bridges_the_whole_gap() {
    // The client is at 1 and then sees notice 5: the log no longer reaches back to 1
    // (410), the new snapshot is at 3, and the change log from 3 holds 4 (lot b). The
    // client must fetch b at 4, not jump its cursor from 3 to 5 and lose it.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/lots"))
        .and(query_param_is_missing("ids"))
        .respond_with(lots_response(1, vec![lot("a", 1, 100), lot("b", 1, 100)]))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_snapshot(&server, 3, vec![lot("a", 1, 100), lot("b", 3, 300)]).await;
    mount_stream(&server, sse(&[hello(5), notice(5, "a")])).await;
    Mock::given(method("GET"))
        .and(path("/v1/changes"))
        .and(query_param("after", "1"))
        .respond_with(ResponseTemplate::new(410).set_body_raw(
            r#"{"error":{"code":"history_truncated","message":"gone"}}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/changes"))
        .and(query_param("after", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"epoch":"e1","head":5,"changes":[
                {"seq":4,"lot_id":"b","kind":"bid","at":"2026-01-01T10:00:00Z"}]}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    for (ids, lots) in [
        ("a", vec![lot("a", 5, 500)]),
        ("b", vec![lot("b", 4, 400)]),
        ("b,a", vec![lot("a", 5, 500), lot("b", 4, 400)]),
        ("a,b", vec![lot("a", 5, 500), lot("b", 4, 400)]),
    ] {
        fetch_of(ids)
            .respond_with(lots_response(5, lots))
            .mount(&server)
            .await;
    }

    let client = client(&server.uri());
    assert!(
        eventually(&client, WAIT, || {
            let m = client.mirror();
            m.get("a").is_some_and(|l| l.seq == 5) && m.get("b").is_some_and(|l| l.seq == 4)
        })
        .await,
        "a: {:?}, b: {:?}",
        client.mirror().get("a").map(|l| l.seq),
        client.mirror().get("b").map(|l| l.seq)
    );
    assert!(client.metrics().resyncs >= 2);
    client.shutdown().await;
}
