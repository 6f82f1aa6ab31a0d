//! The notice log on NATS JetStream, against real `nats-server` processes the tests
//! start on private ports (one server, or a three-node cluster), with stores in
//! temporary directories.
//!
//! - `kill_9_between_commit_and_publish_...`: the master (a child process on a data
//!   directory) commits bids while its publisher is paused, is killed with SIGKILL, and
//!   restarts: the stream then holds every log entry once, in order, at its own
//!   sequence, and keeps going.
//! - `r3_stream_survives_a_node_killed_under_bidding`: an R3 stream on a three-node
//!   cluster; the stream leader is killed during the bidding and brought back: nothing
//!   lost, nothing applied twice, every client converged.
//! - `terminal_server_resumes_after_10000_notices_without_a_snapshot`: a terminal
//!   server following JetStream is cut off (its NATS server down) while 10,000
//!   notices are committed, more than the master retains; it resumes from its
//!   sequence on the stream, with no second snapshot.
//! - `streams_of_older_epochs_...`: masters of three histories in turn; the stream of
//!   the oldest is deleted once the third publishes, the last two are kept.
//! - `healthz_names_the_publisher_...`: the master's `/healthz` says `jetstream` is
//!   down while its NATS server is, and clears once every entry is published.
//!
//! Each waits on conditions with timeouts that only catch a hang.

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lotsync::protocol::jetstream::DEFAULT_PREFIX;
use lotsync::protocol::{ChangesResponse, ReplicationStatus};
use lotsync_tests::nats::Nats;
use lotsync_tests::{lot_input, spawn_test_child, stream};

const ADMIN: &str = "js-admin";
const TERMINAL: &str = "js-terminal";
const ENV_DIR: &str = "LOTSYNC_JS_CHILD_DIR";
const ENV_LISTEN: &str = "LOTSYNC_JS_CHILD_LISTEN";
const ENV_NATS: &str = "LOTSYNC_JS_CHILD_NATS";
/// Generous bound on anything waited for: only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

/// Not a test of its own: the master process of the kill -9 test. Does nothing unless
/// started by it.
#[test]
fn master_child() {
    let (Ok(dir), Ok(listen), Ok(nats)) = (
        std::env::var(ENV_DIR),
        std::env::var(ENV_LISTEN),
        std::env::var(ENV_NATS),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = lotsync_tests::child_listener(&listen).await;
        let config = mock_master::MasterConfig {
            storage: mock_master::Storage::Dir(dir.into()),
            admin_token: ADMIN.into(),
            terminal_token: TERMINAL.into(),
            bidders: vec![("anna".into(), "anna-token".into())],
            heartbeat: Duration::from_millis(250),
            chaos: Some(Default::default()),
            nats: Some(mock_master::nats::NatsOptions {
                servers: vec![nats],
                ..Default::default()
            }),
            ..mock_master::MasterConfig::default()
        };
        let term = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
        };
        mock_master::run(config, listener, term).await.unwrap();
    });
}

/// Logs of the SDK and the master with `RUST_LOG` (for example `lotsync=debug`).
/// Logs into each test's captured output (shown when it fails): `RUST_LOG`, else info.
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Kills the child master when the test ends, however it ends.
struct Killed(Option<Child>);

impl Killed {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Http {
    http: reqwest::Client,
    url: String,
}

impl Http {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(TERMINAL)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, token: &str, body: serde_json::Value) -> u16 {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn put_lot(&self, id: &str) {
        let status = self
            .http
            .put(format!("{}/v1/lots/{id}", self.url))
            .bearer_auth(ADMIN)
            .json(&lot_input(id, 10_000))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
    }

    /// Place `count` bids, each answered 201.
    async fn bids(&self, lots: usize, count: usize, amount: &mut i64) {
        for i in 0..count {
            *amount += 100;
            let status = self
                .post(
                    &format!("/v1/lots/lot-{}/bids", i % lots),
                    "anna-token",
                    serde_json::json!({ "amount": *amount }),
                )
                .await;
            assert_eq!(status, 201);
        }
    }

    /// Every log entry, from `/v1/changes`.
    async fn log(&self, head: u64) -> Vec<lotsync::protocol::Notice> {
        let mut entries = Vec::new();
        while (entries.len() as u64) < head {
            let page: ChangesResponse = self
                .get(&format!("/v1/changes?after={}&limit=1000", entries.len()))
                .await;
            assert!(!page.changes.is_empty(), "the log ends before {head}");
            entries.extend(page.changes);
        }
        entries
    }
}

fn spawn_master(dir: &std::path::Path, listen: &str, nats: &str) -> (Child, String) {
    let dir = dir.to_str().expect("a UTF-8 temp dir");
    spawn_test_child(
        "master_child",
        &[(ENV_DIR, dir), (ENV_LISTEN, listen), (ENV_NATS, nats)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_commit_and_publish_then_every_entry_is_in_the_stream_once_in_order() {
    let nats = Nats::single().await.expect("nats-server starts");
    let client = nats.client().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let (child, url) = spawn_master(dir.path(), &listen, &nats.urls()[0]);
    let mut master = Killed(Some(child));
    let http = Http {
        http: reqwest::Client::new(),
        url,
    };
    for i in 0..4 {
        http.put_lot(&format!("lot-{i}")).await;
    }
    let mut amount = 10_000;
    http.bids(4, 40, &mut amount).await;
    let before: ReplicationStatus = http.get("/v1/replication").await;
    let epoch = before.epoch.clone();
    assert!(
        stream::wait_published(&client, DEFAULT_PREFIX, &epoch, before.primary_head, HANG).await,
        "the first {} entries were published",
        before.primary_head
    );

    // Committed (answered 201) but not published: the publisher is paused.
    let paused = http
        .post(
            "/v1/chaos",
            ADMIN,
            serde_json::json!({ "pause_publisher": true }),
        )
        .await;
    assert_eq!(paused, 200);
    http.bids(4, 60, &mut amount).await;
    let committed: ReplicationStatus = http.get("/v1/replication").await;
    let (_, last, _) = stream::state(&client, DEFAULT_PREFIX, &epoch)
        .await
        .unwrap();
    assert!(
        last < committed.primary_head,
        "entries {}..={} committed but not yet published (stream ends at {last})",
        last + 1,
        committed.primary_head
    );

    master.kill();
    let (_, after_kill, _) = stream::state(&client, DEFAULT_PREFIX, &epoch)
        .await
        .unwrap();
    assert!(after_kill < committed.primary_head);

    // Restart on the same directory: the publisher starts from the stream's end.
    let (child, url) = spawn_master(dir.path(), &listen, &nats.urls()[0]);
    master.0 = Some(child);
    let http = Http { url, ..http };
    let restarted: ReplicationStatus = http.get("/v1/replication").await;
    assert_eq!(restarted.epoch, epoch, "the history survived the crash");
    assert!(
        stream::wait_published(
            &client,
            DEFAULT_PREFIX,
            &epoch,
            committed.primary_head,
            HANG
        )
        .await,
        "the entries committed before the crash were published after the restart"
    );
    // And it keeps going.
    http.bids(4, 20, &mut amount).await;
    let end: ReplicationStatus = http.get("/v1/replication").await;
    assert!(stream::wait_published(&client, DEFAULT_PREFIX, &epoch, end.primary_head, HANG).await);

    let (first, last, messages) = stream::state(&client, DEFAULT_PREFIX, &epoch)
        .await
        .unwrap();
    assert_eq!(
        (first, last, messages),
        (1, end.primary_head, end.primary_head),
        "one message per entry, none twice"
    );
    let stored = stream::read(&client, DEFAULT_PREFIX, &epoch, 1, last)
        .await
        .unwrap();
    let log = http.log(end.primary_head).await;
    stream::check_exactly_once(DEFAULT_PREFIX, &epoch, &stored, &log).unwrap();
    master.kill();
}

/// Counts versions a display was shown twice or out of order.
fn count_regressions(client: &lotsync::Client) -> (Arc<AtomicU64>, tokio::task::JoinHandle<u64>) {
    let regressions = Arc::new(AtomicU64::new(0));
    let watcher = lotsync_tests::faults::watch_display(client, regressions.clone());
    (regressions, watcher)
}

fn jetstream_client(
    master: &mock_master::Master,
    nats: &[String],
    heartbeat: Duration,
) -> lotsync::Client {
    lotsync::Client::builder(master.url())
        .token(master.terminal_token())
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(500))
        .retry_delay(Duration::from_millis(10), Duration::from_millis(200))
        .jetstream(lotsync::JetStreamNotices::new(nats.to_vec()).heartbeat(heartbeat))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_stream_survives_a_node_killed_under_bidding() {
    logs();
    const LOTS: usize = 10;
    const BIDS: u64 = 900;
    let mut nats = Nats::cluster().await.expect("a three-node cluster starts");
    let urls = nats.urls();
    let observer = nats.client().await.unwrap();
    let master = mock_master::Master::builder()
        .in_memory()
        .heartbeat(Duration::from_millis(250))
        .bidder("anna", "anna-token")
        .bidder("ben", "ben-token")
        .nats(mock_master::nats::NatsOptions {
            servers: urls.clone(),
            replicas: 3,
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let handle = master.handle();
    let epoch = handle.epoch();
    let ids = lotsync_tests::create_lots(&handle, LOTS).await.unwrap();
    assert!(
        stream::wait_published(&observer, DEFAULT_PREFIX, &epoch, handle.head(), HANG).await,
        "the R3 stream takes the first entries"
    );
    let clients: Vec<lotsync::Client> = (0..3)
        .map(|_| jetstream_client(&master, &urls, Duration::from_millis(250)))
        .collect();
    let mut watchers = Vec::new();
    for client in &clients {
        assert!(client.wait_live(HANG).await, "client never live");
        watchers.push(count_regressions(client));
    }

    // Two bidders; the stream's leader is killed a third of the way through and
    // brought back at two thirds.
    let placed = Arc::new(tokio::sync::watch::Sender::new(0u64));
    let bidders: Vec<_> = ["anna", "ben"]
        .into_iter()
        .enumerate()
        .map(|(n, bidder)| {
            let (handle, ids, placed) = (handle.clone(), ids.clone(), placed.clone());
            tokio::spawn(async move {
                let mut amount = 10_000 + n as i64 * 50;
                let mut tick = tokio::time::interval(Duration::from_millis(3));
                let mut done = 0;
                while done < BIDS / 2 {
                    tick.tick().await;
                    amount += 100;
                    let id = &ids[(done as usize + n) % ids.len()];
                    if handle.place_bid(bidder, id, amount).await.is_ok() {
                        done += 1;
                        placed.send_modify(|p| *p += 1);
                    }
                }
            })
        })
        .collect();
    let mut progress = placed.subscribe();
    drop(placed);
    progress.wait_for(|p| *p >= BIDS / 3).await.unwrap();
    let leader = {
        let js = async_nats::jetstream::new(observer.clone());
        let mut s = js
            .get_stream(lotsync::protocol::jetstream::stream_name(
                DEFAULT_PREFIX,
                &epoch,
            ))
            .await
            .unwrap();
        let info = s.info().await.unwrap();
        info.cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .expect("an R3 stream has a leader")
    };
    let victim = nats
        .nodes
        .iter()
        .position(|n| n.name() == leader)
        .expect("the leader is one of ours");
    nats.nodes[victim].kill();
    progress.wait_for(|p| *p >= 2 * BIDS / 3).await.unwrap();
    nats.nodes[victim].start().unwrap();
    nats.nodes[victim].wait_ready().await.unwrap();
    for bidder in bidders {
        tokio::time::timeout(HANG, bidder)
            .await
            .expect("bidders hung")
            .unwrap();
    }

    let head = handle.head();
    assert!(
        stream::wait_published(&observer, DEFAULT_PREFIX, &epoch, head, HANG).await,
        "every entry reached the stream after the failover"
    );
    let outcome = lotsync_tests::wait_converged(&handle, &clients, HANG)
        .await
        .unwrap();
    if let Err(differences) = outcome {
        panic!("mirror differs from the replica: {differences:?}");
    }
    let (first, last, messages) = stream::state(&observer, DEFAULT_PREFIX, &epoch)
        .await
        .unwrap();
    assert_eq!((first, last, messages), (1, head, head), "every entry once");
    let stored = stream::read(&observer, DEFAULT_PREFIX, &epoch, 1, head)
        .await
        .unwrap();
    let seqs: Vec<u64> = stored.iter().map(|s| s.notice.seq).collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "in order, none twice");
    for client in &clients {
        let metrics = client.metrics();
        assert_eq!(metrics.resyncs, 1, "followed the stream without a resync");
        client.shutdown().await;
    }
    for (regressions, watcher) in watchers {
        assert!(watcher.await.unwrap() > 0);
        assert_eq!(
            regressions.load(Ordering::Relaxed),
            0,
            "a display was shown a version twice or out of order"
        );
    }
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_server_resumes_after_10000_notices_without_a_snapshot() {
    logs();
    const NOTICES: u64 = 10_000;
    let mut nats = Nats::single().await.expect("nats-server starts");
    let urls = nats.urls();
    let observer_urls = urls.clone();
    // The master keeps only 1,000 entries: its own stream could not resume this.
    let master = mock_master::Master::builder()
        .in_memory()
        .heartbeat(Duration::from_millis(250))
        .log_retention(1_000)
        .bidder("anna", "anna-token")
        .nats(mock_master::nats::NatsOptions {
            servers: urls.clone(),
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let handle = master.handle();
    let epoch = handle.epoch();
    let ids = lotsync_tests::create_lots(&handle, 20).await.unwrap();
    let server = lotsync_tests::start_terminal_server(master.url(), master.terminal_token(), |b| {
        b.client(move |c| {
            c.reconnect_delay(Duration::from_millis(20), Duration::from_millis(300))
                .jetstream(
                    lotsync::JetStreamNotices::new(urls.clone())
                        .heartbeat(Duration::from_millis(250)),
                )
        })
    })
    .await
    .unwrap();
    let upstream = server.server.client().clone();
    assert!(
        upstream.wait_live(HANG).await,
        "terminal server never live: {:?}, {:?}",
        *upstream.state().borrow(),
        upstream.metrics()
    );
    let before = upstream.metrics();
    assert_eq!(before.resyncs, 1, "one snapshot to start with");

    // Cut off: its only NATS server goes down while 10,000 notices are committed.
    nats.nodes[0].kill();
    let mut amount = 10_000;
    let mut placed = 0;
    while placed < NOTICES {
        amount += 100;
        let id = &ids[(placed % ids.len() as u64) as usize];
        handle.place_bid("anna", id, amount).await.unwrap();
        placed += 1;
    }
    let head = handle.head();
    nats.nodes[0].start().unwrap();
    nats.nodes[0].wait_ready().await.unwrap();

    let observer = {
        let servers: Vec<async_nats::ServerAddr> =
            observer_urls.iter().map(|u| u.parse().unwrap()).collect();
        async_nats::connect(servers).await.unwrap()
    };
    assert!(
        stream::wait_published(&observer, DEFAULT_PREFIX, &epoch, head, HANG).await,
        "the publisher caught up after NATS came back"
    );
    let display = server.connect().unwrap();
    let outcome =
        lotsync_tests::wait_converged(&handle, &[upstream.clone(), display.clone()], HANG)
            .await
            .unwrap();
    if let Err(differences) = outcome {
        panic!("terminal server differs from the replica: {differences:?}");
    }
    // The mirror can converge before the last notices arrive (a lot's newest version
    // is fetched for an older notice): wait for every one of them.
    let deadline = tokio::time::Instant::now() + HANG;
    while upstream.metrics().notices - before.notices < NOTICES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the {NOTICES} notices came from the stream ({} seen)",
            upstream.metrics().notices - before.notices
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = upstream.metrics();
    assert_eq!(
        after.resyncs, 1,
        "resumed from its sequence: no second snapshot"
    );
    assert_eq!(
        after.catchups, before.catchups,
        "nothing came from the change log"
    );
    assert_eq!(upstream.mirror().seq(), head);
    display.shutdown().await;
    server.stop().await;
    master.shutdown().await;
}

/// `/healthz` of a master with `--nats`, polled until `done` holds for it.
async fn wait_healthz(
    url: &str,
    what: &str,
    done: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + HANG;
    let mut last = None;
    loop {
        if let Ok(response) = http.get(format!("{url}/healthz")).send().await {
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            if done(status, &body) {
                return body;
            }
            last = Some((status, body));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never showed {what}; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_the_publisher_while_nats_is_down_and_clears_when_it_catches_up() {
    logs();
    let mut nats = Nats::single().await.expect("nats-server starts");
    let master = mock_master::Master::builder()
        .in_memory()
        .bidder("anna", "anna-token")
        .replication_stall(Duration::from_millis(500))
        .nats(mock_master::nats::NatsOptions {
            servers: nats.urls(),
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let handle = master.handle();
    let ids = lotsync_tests::create_lots(&handle, 3).await.unwrap();
    let head = handle.head();
    wait_healthz(master.url(), "the publisher caught up", |status, body| {
        status == 200
            && body["jetstream"]["publishing"] == true
            && body["jetstream"]["published"] == head
            && body["jetstream"]["behind"] == 0
    })
    .await;

    nats.nodes[0].kill();
    let mut amount = 10_000;
    for id in &ids {
        amount += 100;
        handle.place_bid("anna", id, amount).await.unwrap();
    }
    let head = handle.head();
    let down = wait_healthz(master.url(), "jetstream down", |status, body| {
        status == 503 && body["down"] == serde_json::json!(["jetstream"])
    })
    .await;
    assert_eq!(down["jetstream"]["stalled"], true);
    assert!(down["jetstream"]["behind"].as_u64().unwrap() > 0, "{down}");

    nats.nodes[0].start().unwrap();
    nats.nodes[0].wait_ready().await.unwrap();
    let up = wait_healthz(master.url(), "the publisher back", |status, body| {
        status == 200 && body["jetstream"]["published"] == head
    })
    .await;
    assert_eq!(up["down"], serde_json::json!([]));
    assert_eq!(up["jetstream"]["publishing"], true);
    master.shutdown().await;
}

/// The notice streams on `nats` of prefix `lotsync`, by name.
async fn epoch_streams(client: &async_nats::Client) -> Vec<String> {
    use futures::TryStreamExt;
    let js = async_nats::jetstream::new(client.clone());
    let mut names: Vec<String> = js
        .stream_names()
        .try_collect::<Vec<String>>()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| {
            n.starts_with(&lotsync::protocol::jetstream::stream_name(
                DEFAULT_PREFIX,
                "",
            ))
        })
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_older_epochs_beyond_the_kept_ones_are_deleted() {
    logs();
    let nats = Nats::single().await.expect("nats-server starts");
    let client = nats.client().await.unwrap();
    let mut epochs = Vec::new();
    // Three masters in turn, each a new history (in memory) publishing one lot.
    for _ in 0..3 {
        let master = mock_master::Master::builder()
            .in_memory()
            .nats(mock_master::nats::NatsOptions {
                servers: nats.urls(),
                ..Default::default()
            })
            .start()
            .await
            .unwrap();
        let handle = master.handle();
        lotsync_tests::create_lots(&handle, 1).await.unwrap();
        let epoch = handle.epoch();
        assert!(
            stream::wait_published(&client, DEFAULT_PREFIX, &epoch, handle.head(), HANG).await,
            "the master published"
        );
        epochs.push(lotsync::protocol::jetstream::stream_name(
            DEFAULT_PREFIX,
            &epoch,
        ));
        master.shutdown().await;
        let mut kept = epoch_streams(&client).await;
        kept.retain(|n| epochs.contains(n));
        // The current epoch and the previous one (the default), never another.
        let mut expected = epochs[epochs.len().saturating_sub(2)..].to_vec();
        expected.sort();
        assert_eq!(kept, expected, "after the master of epoch {}", epochs.len());
        assert_eq!(epoch_streams(&client).await.len(), expected.len());
    }
}
