//! The SDK against scripted masters whose history changes under it: a new epoch while
//! a fetch (from the master, or from memcached) is in flight, a history rewound under
//! the same epoch. (Fetches that keep
//! failing are in `hostile_master.rs`, whose fake holds a stream open.)

mod support;

use std::time::Duration;

use lotsync::Update;
use lotsync::protocol::{Lot, LotsResponse, Seq};
use support::*;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn lots_in(epoch: &str, seq: Seq, lots: Vec<Lot>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(LotsResponse {
        epoch: epoch.into(),
        seq,
        lots,
        missing: vec![],
    })
}

fn hello_in(epoch: &str, head: Seq) -> String {
    event(
        "hello",
        None,
        &format!(r#"{{"epoch":"{epoch}","head":{head},"heartbeat_ms":1000}}"#),
    )
}

fn snapshot() -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path("/v1/lots"))
        .and(query_param_is_missing("ids"))
}

fn stream() -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path("/v1/notices"))
}

/// History e1 (lot `a` at version 1, then a notice of version 2 on the one e1 stream),
/// and the snapshot of e2 (lot `a` at version 1 again) for every later snapshot.
async fn e1_then_e2_snapshots_and_e1_stream(server: &MockServer) {
    snapshot()
        .respond_with(lots_in("e1", 1, vec![lot("a", 1, 100)]))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    snapshot()
        .respond_with(lots_in("e2", 1, vec![lot("a", 1, 5)]))
        .mount(server)
        .await;
    stream()
        .respond_with(sse(&[hello_in("e1", 2), notice(2, "a")]))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_fetch_in_flight_across_an_epoch_change_never_shows_the_old_lot() {
    let server = MockServer::start().await;
    // History e1 first, then the master comes back as e2 (an in-memory restart).
    e1_then_e2_snapshots_and_e1_stream(&server).await;
    stream()
        .respond_with(sse(&[hello_in("e2", 1)]))
        .mount(&server)
        .await;
    // The fetch of notice 2 is answered from e1, long after the client moved to e2.
    Mock::given(method("GET"))
        .and(path("/v1/lots"))
        .and(query_param("ids", "a"))
        .respond_with(
            lots_in("e1", 2, vec![lot("a", 2, 999)]).set_delay(Duration::from_millis(800)),
        )
        .mount(&server)
        .await;

    let client = client(&server.uri());
    let mut display = client.subscribe();
    assert!(
        eventually(&client, WAIT, || client.metrics().other_epoch_answers >= 1).await,
        "the answer of the old epoch arrived and was dropped: {:?}",
        client.metrics()
    );
    assert_eq!(client.mirror().epoch().as_deref(), Some("e2"));
    let held = client.mirror().get("a").expect("lot a");
    assert_eq!((held.seq, held.current_price), (1, 5), "e2's lot, not e1's");
    while let Some(update) = display.try_recv() {
        if let Update::LotChanged { lot, epoch, .. } = &update {
            assert_ne!(lot.current_price, 999, "the old epoch's lot was shown");
            assert_eq!(&**epoch, "e2", "{update:?}");
        }
    }
    client.shutdown().await;
}

/// A fake memcached whose every `gets` is reported to the test and answered, with
/// `value` under the asked key, only when the test releases it.
async fn held_memcached(
    value: Vec<u8>,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::sync::mpsc::UnboundedSender<()>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (asked_tx, asked_rx) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(release_rx));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (asked_tx, release_rx, value) =
                (asked_tx.clone(), release_rx.clone(), value.clone());
            tokio::spawn(async move {
                let mut conn = BufReader::new(stream);
                let mut line = String::new();
                while conn.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    let Some(key) = line.trim_end().strip_prefix("gets ").map(str::to_owned) else {
                        return;
                    };
                    line.clear();
                    let _ = asked_tx.send(key.clone());
                    release_rx.lock().await.recv().await;
                    let mut reply = format!("VALUE {key} 0 {} 1\r\n", value.len()).into_bytes();
                    reply.extend_from_slice(&value);
                    reply.extend_from_slice(b"\r\nEND\r\n");
                    if conn.get_mut().write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, asked_rx, release_tx)
}

#[tokio::test]
async fn a_memcached_read_in_flight_across_an_epoch_change_never_shows_the_old_lot() {
    let server = MockServer::start().await;
    e1_then_e2_snapshots_and_e1_stream(&server).await;
    // Until the test lets the master come back as e2, reconnects are turned away.
    stream()
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
        .with_priority(10)
        .mount(&server)
        .await;
    // memcached holds e1's version 2 of the lot, and answers only when released.
    let (memcached, mut asked, release) =
        held_memcached(serde_json::to_vec(&lot("a", 2, 999)).unwrap()).await;
    let client = lotsync::Client::builder(server.uri())
        .token("term-token")
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(50))
        .retry_delay(Duration::from_millis(10), Duration::from_millis(50))
        .memcached([memcached])
        .cache_grace(Duration::ZERO)
        .cache_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut display = client.subscribe();
    let key = tokio::time::timeout(WAIT, asked.recv())
        .await
        .expect("the notice of e1 was looked up in memcached")
        .unwrap();
    assert_eq!(key, "lotsync:v2:e1:lot:a");
    // While the read is in flight, the master comes back as e2.
    stream()
        .respond_with(sse(&[hello_in("e2", 1)]))
        .with_priority(2)
        .mount(&server)
        .await;
    assert!(
        eventually(&client, WAIT, || client.mirror().epoch().as_deref()
            == Some("e2"))
        .await,
        "the client resynchronised to e2"
    );
    release.send(()).unwrap();
    assert!(
        eventually(&client, WAIT, || client.metrics().other_epoch_answers >= 1).await,
        "the cached lot of the old epoch arrived and was dropped: {:?}",
        client.metrics()
    );
    let held = client.mirror().get("a").expect("lot a");
    assert_eq!((held.seq, held.current_price), (1, 5), "e2's lot, not e1's");
    while let Some(update) = display.try_recv() {
        if let Update::LotChanged { lot, epoch, .. } = &update {
            assert_ne!(lot.current_price, 999, "the old epoch's lot was shown");
            assert_eq!(&**epoch, "e2", "{update:?}");
        }
    }
    client.shutdown().await;
}

#[tokio::test]
async fn a_history_rewound_under_the_same_epoch_replaces_the_mirror() {
    let server = MockServer::start().await;
    // First the history reaches 10 (lot a at 10, lot gone at 8)...
    snapshot()
        .respond_with(lots_in(
            EPOCH,
            10,
            vec![lot("a", 10, 100), lot("b", 3, 30), lot("gone", 8, 80)],
        ))
        .with_priority(5)
        .mount(&server)
        .await;
    stream()
        .respond_with(sse(&[hello(10), heartbeat(10)]))
        .with_priority(5)
        .mount(&server)
        .await;
    let client = client(&server.uri());
    let mut display = client.subscribe();
    assert!(eventually(&client, WAIT, || client.mirror().seq() == 10).await);
    while display.try_recv().is_some() {}

    // ...then the master's database is restored to a backup taken at 6.
    snapshot()
        .respond_with(lots_in(EPOCH, 6, vec![lot("a", 5, 50), lot("b", 3, 30)]))
        .with_priority(1)
        .mount(&server)
        .await;
    stream()
        .respond_with(sse(&[hello(6), heartbeat(6)]))
        .with_priority(1)
        .mount(&server)
        .await;
    assert!(
        eventually(&client, WAIT, || client
            .mirror()
            .get("a")
            .is_some_and(|a| a.seq == 5))
        .await,
        "the rewound history's version of a: {:?}",
        client.mirror().get("a")
    );
    assert_eq!(client.mirror().get("a").unwrap().current_price, 50);
    assert!(
        client.mirror().get("gone").is_none(),
        "kept a lot the history lost"
    );
    assert_eq!(client.mirror().seq(), 6);
    let mut replaced = false;
    while let Some(update) = display.try_recv() {
        if let Update::Resynced {
            epoch_changed: true,
            lots,
            ..
        } = update
        {
            replaced = true;
            assert!(lots.iter().all(|l| l.id != "gone"));
        }
    }
    assert!(replaced, "displays were told the history changed");
    client.shutdown().await;
}
