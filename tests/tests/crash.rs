//! Crash: the master runs as a real child process on a data directory; SDK clients are
//! connected and bidders place bids over HTTP at a steady rate, recording every 201.
//! The master is killed with SIGKILL during the load and restarted on the same
//! directory and the same port, so the clients reconnect by themselves. Then:
//!
//! - every bid answered 201 is in the history (the operation log) and in the lot's
//!   state, and none is applied twice (bids per lot = bid operations in the log);
//! - the replica equals the primary, read through the library on the same directory
//!   after the master stopped;
//! - the epoch did not change (history was not lost), the clients resumed with
//!   `Last-Event-ID` without a full resync (one snapshot each: the first), and every
//!   mirror converged on the replica.
//!
//! The child is this test binary itself, re-run with `--exact master_child` and the
//! settings in environment variables: no guessing where cargo put another binary.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command};
use std::time::Duration;

use lotsync::protocol::{
    Bid, BidReceipt, ChangesResponse, Lot, LotsResponse, OpKind, ReplicationStatus,
};
use lotsync_tests::{differences, lot_input, spawn_test_child};
use tokio::sync::watch;
use tokio::time::Instant;

const ADMIN: &str = "crash-admin";
const TERMINAL: &str = "crash-terminal";
const BIDDERS: [&str; 4] = ["anna", "ben", "carla", "dirk"];
const LOTS: usize = 8;
const CLIENTS: usize = 3;
const ENV_DIR: &str = "LOTSYNC_CRASH_CHILD_DIR";
const ENV_LISTEN: &str = "LOTSYNC_CRASH_CHILD_LISTEN";
/// Generous bound on anything waited for: only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

/// Not a test of its own: the master process of `kill_9_during_load...`. Does nothing
/// unless started by it.
#[test]
fn master_child() {
    let (Ok(dir), Ok(listen)) = (std::env::var(ENV_DIR), std::env::var(ENV_LISTEN)) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        // The parent reaped the killed master before starting this one, so its sockets
        // are closed; tokio sets SO_REUSEADDR, so connections still in TIME_WAIT on the
        // port do not stop the bind. The port is free now: no retry.
        let listener = lotsync_tests::child_listener(&listen).await;
        let config = mock_master::MasterConfig {
            storage: mock_master::Storage::Dir(dir.into()),
            admin_token: ADMIN.into(),
            terminal_token: TERMINAL.into(),
            bidders: BIDDERS
                .iter()
                .map(|b| (b.to_string(), format!("{b}-token")))
                .collect(),
            heartbeat: Duration::from_millis(250),
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

/// Start the master child on `dir`, listening on `listen`; returns it and its URL.
fn spawn_master(dir: &std::path::Path, listen: &str) -> (Child, String) {
    let dir = dir.to_str().expect("a UTF-8 temp dir");
    spawn_test_child("master_child", &[(ENV_DIR, dir), (ENV_LISTEN, listen)])
}

async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> T {
    let response = http.get(url).bearer_auth(TERMINAL).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

/// Place bids on random lots until `stop`, recording every 201 (the watch wakes whoever
/// waits for a count). A 409 bid_too_low is retried at the minimum it names; connection
/// errors (the master is down) are retried.
async fn bidder(
    url: String,
    name: &'static str,
    seed: u64,
    acked: watch::Sender<Vec<Bid>>,
    stop: tokio_util::sync::CancellationToken,
) -> u64 {
    use rand::{Rng, SeedableRng};
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut amounts: BTreeMap<usize, i64> = BTreeMap::new();
    // The bid rate (and the retry pace while the master is down) is a schedule.
    let mut tick = tokio::time::interval(Duration::from_millis(8));
    let mut failures = 0;
    while !stop.is_cancelled() {
        tick.tick().await;
        let lot = rng.random_range(0..LOTS);
        let amount = *amounts.get(&lot).unwrap_or(&10_000) + rng.random_range(0..3) * 100;
        // One request in four leaves a maximum, so proxy bids are part of the load.
        let body = if rng.random_range(0..4) == 0 {
            serde_json::json!({ "max_amount": amount + rng.random_range(1..8) * 100 })
        } else {
            serde_json::json!({ "amount": amount })
        };
        let response = http
            .post(format!("{url}/v1/lots/lot-{lot}/bids"))
            .bearer_auth(format!("{name}-token"))
            .json(&body)
            .send()
            .await;
        let Ok(response) = response else {
            failures += 1;
            continue;
        };
        match response.status().as_u16() {
            201 => {
                let receipt: BidReceipt = response.json().await.unwrap();
                amounts.insert(lot, receipt.current_price + 100);
                // A maximum raised while leading placed nothing new to account for.
                if receipt.placed {
                    acked.send_modify(|acked| acked.push(receipt.bid));
                }
            }
            409 => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if let Some(min) = body["error"]["min_next_bid"].as_i64() {
                    amounts.insert(lot, min);
                }
            }
            _ => failures += 1,
        }
    }
    failures
}

/// Wait until at least `count` bids are acknowledged; woken by every 201.
async fn acknowledged(acked: &watch::Sender<Vec<Bid>>, count: usize, what: &str) {
    let mut acked = acked.subscribe();
    tokio::time::timeout(HANG, acked.wait_for(|acked| acked.len() >= count))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_load_loses_no_acknowledged_bid_and_clients_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_master(dir.path(), "127.0.0.1:0");
    let listen = url.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::new();
    for i in 0..LOTS {
        let response = http
            .put(format!("{url}/v1/lots/lot-{i}"))
            .bearer_auth(ADMIN)
            .json(&lot_input(&format!("Car {i}"), 10_000))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let epoch = get::<LotsResponse>(&http, &format!("{url}/v1/lots"))
        .await
        .epoch;
    let clients: Vec<lotsync::Client> = (0..CLIENTS)
        .map(|_| {
            lotsync::Client::builder(&url)
                .token(TERMINAL)
                .reconnect_delay(Duration::from_millis(20), Duration::from_millis(300))
                .retry_delay(Duration::from_millis(10), Duration::from_millis(200))
                .build()
                .unwrap()
        })
        .collect();
    for client in &clients {
        assert!(client.wait_live(HANG).await);
    }

    let acked = watch::Sender::new(Vec::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let bidders: Vec<_> = BIDDERS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            tokio::spawn(bidder(
                url.clone(),
                name,
                i as u64,
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    acknowledged(&acked, 150, "bids before the crash").await;
    // Blocking process calls off the runtime, so the bidders keep bidding throughout.
    let data = dir.path().to_owned();
    let (before_restart, (mut child, url2)) = {
        let acked = acked.clone();
        tokio::task::spawn_blocking(move || {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let before = acked.borrow().len();
            (before, spawn_master(&data, &listen))
        })
        .await
        .unwrap()
    };
    assert_eq!(url2, url, "same port");
    acknowledged(&acked, before_restart + 150, "bids after the restart").await;
    stop.cancel();
    let mut failures = 0;
    for bidder in bidders {
        failures += bidder.await.unwrap();
    }
    let acked: Vec<Bid> = acked.borrow().clone();

    // Convergence of every client on the replica, after the replica caught up. The
    // snapshot asks for min_seq = the head: the master waits on its replica's applied
    // watch (up to its fetch wait, then 503 replica_behind, asked again at once).
    let status: ReplicationStatus = get(&http, &format!("{url}/v1/replication")).await;
    let caught_up = format!("{url}/v1/lots?min_seq={}", status.primary_head);
    let snapshot: LotsResponse = tokio::time::timeout(HANG, async {
        loop {
            let response = http.get(&caught_up).bearer_auth(TERMINAL).send().await;
            match response.unwrap() {
                r if r.status() == 200 => break r.json::<LotsResponse>().await.unwrap(),
                r if r.status() == 503 => continue,
                r => panic!("{caught_up}: {}", r.status()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("replica behind: {status:?}"));
    assert_eq!(
        snapshot.seq, status.primary_head,
        "replica behind: {status:?}"
    );
    assert_eq!(snapshot.epoch, epoch, "history was kept: same epoch");
    let converged_by = Instant::now() + HANG;
    for (n, client) in clients.iter().enumerate() {
        // Subscribed before the first look: every mirror change after it wakes us.
        let mut updates = client.subscribe();
        loop {
            let diff = differences(&client.mirror().lots(), &snapshot.lots);
            if diff.is_empty() {
                break;
            }
            let update = tokio::time::timeout_at(converged_by, updates.recv()).await;
            assert!(
                matches!(update, Ok(Some(_))),
                "client {n} differs: {diff:?}"
            );
        }
        let metrics = client.metrics();
        assert_eq!(metrics.resyncs, 1, "client {n} resynced: {metrics:?}");
        assert!(metrics.reconnects >= 1, "client {n} never reconnected");
        client.shutdown().await;
    }

    // History: every bid operation in the log, in pages.
    let mut log = Vec::new();
    let mut after = 0;
    loop {
        let page: ChangesResponse = get(
            &http,
            &format!("{url}/v1/changes?after={after}&limit=10000"),
        )
        .await;
        let Some(last) = page.changes.last() else {
            break;
        };
        after = last.seq;
        log.extend(page.changes);
    }
    let bid_ops: BTreeMap<u64, String> = log
        .iter()
        .filter(|n| n.kind == OpKind::Bid)
        .map(|n| (n.seq, n.lot_id.clone()))
        .collect();

    // Graceful stop, then read the primary and the replica through the library.
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(code.success(), "{code:?}");
    let master = mock_master::Master::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let handle = master.handle();
    assert_eq!(handle.epoch(), epoch);
    assert!(handle.wait_replicated(handle.head(), HANG).await);
    let primary: Vec<Lot> = handle.primary_lots().await.unwrap();
    let replica: Vec<Lot> = handle.replica_lots().await.unwrap();
    assert_eq!(primary, replica, "the replica equals the primary");

    let mut seqs = HashSet::new();
    for bid in &acked {
        assert!(seqs.insert(bid.seq), "two 201s with one sequence: {bid:?}");
        assert_eq!(
            bid_ops.get(&bid.seq),
            Some(&bid.lot_id),
            "acknowledged bid missing from the history: {bid:?}"
        );
    }
    for lot in &primary {
        let in_log = bid_ops.values().filter(|id| **id == lot.id).count() as u32;
        assert_eq!(lot.bid_count, in_log, "{}: bids applied once each", lot.id);
        let newest = acked
            .iter()
            .filter(|b| b.lot_id == lot.id)
            .max_by_key(|b| b.seq);
        if let Some(newest) = newest {
            assert!(lot.current_price >= newest.amount, "{}", lot.id);
            assert!(lot.seq >= newest.seq, "{}", lot.id);
        }
        for shown in &lot.recent_bids {
            if let Some(ours) = acked.iter().find(|b| b.seq == shown.seq) {
                assert_eq!(
                    (&ours.bidder, ours.amount),
                    (&shown.bidder, shown.amount),
                    "{}",
                    lot.id
                );
            }
        }
    }
    eprintln!(
        "crash: {} bids acknowledged ({} before the kill), {} bid operations in the log, \
         {} failed attempts while the master was down, {CLIENTS} clients resumed without a resync",
        acked.len(),
        before_restart,
        bid_ops.len(),
        failures
    );
    master.shutdown().await;
}
