//! Database outages under bidding: each test starts its own PostgreSQL or MariaDB
//! server (a private data directory and port, never a shared server), puts the master's
//! primary and replica on it, and bids over HTTP while the server is restarted, crashed,
//! or has only the master's connections killed. Then:
//!
//! - bids (and fetches) during the outage were answered 503 (with Retry-After), never 500;
//! - `/healthz` answered 503 naming the primary while it was down, 200 again after;
//! - bids resume by themselves once the server is back (waited for as an event, with a
//!   timeout that only catches a hang);
//! - every 201 is in the primary's bids and in the log exactly once, the log has no gap,
//!   and the replica equals the primary;
//! - four SDK clients following the master through a PostgreSQL restart converge on the
//!   replica and no display ever goes back;
//! - with only the replica on the server, bids are never refused while it is down and
//!   the replicator catches up by itself.
//!
//! The figures (outage length, time to the first 201 after the return, bids refused and
//! kept) are printed: run with `--nocapture`. A server that cannot be started fails the
//! test (`scripts/test.sh` installs PostgreSQL and MariaDB).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lotsync::Update;
use lotsync_tests::outage::{Bidding, HealthLog, HealthWatch, Tally, summary};
use lotsync_tests::{connect, create_lots, wait_converged};
use mock_master::config::DbUrl;
use mock_master::store::engine::instance::{DbInstance, Server};
use mock_master::store::engine::{Access, connect as db_connect, off_runtime};
use mock_master::{Master, MasterHandle};
use tokio::time::Instant;

/// Generous bound on anything the tests wait for: only a hang reaches it.
const HANG: Duration = Duration::from_secs(90);
const BIDDERS: [(&str, &str); 3] = [
    ("anna", "anna-token"),
    ("ben", "ben-token"),
    ("carla", "carla-token"),
];
const LOTS: usize = 6;
const BID_EVERY: Duration = Duration::from_millis(5);
/// Acknowledged bids wanted before the fault and after the server's return.
const BIDS_EACH_SIDE: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A clean restart of the server.
    Restart,
    /// The server crashes (PostgreSQL immediate shutdown, MariaDB SIGKILL) and starts.
    Crash,
    /// Only the master's connections are killed; the server stays up.
    KillConnections,
}

/// A private server with the master's two databases on it.
async fn server_with_databases(server: Server) -> (DbInstance, DbUrl, DbUrl) {
    tokio::task::spawn_blocking(move || {
        let db = DbInstance::start(server)
            .unwrap_or_else(|e| panic!("cannot start a private {server:?} server: {e}"));
        let primary = db.create_database("lots").unwrap();
        let replica = db.create_database("lots_replica").unwrap();
        (db, primary, replica)
    })
    .await
    .unwrap()
}

/// Run `change` on the instance off the runtime (starting and stopping servers blocks).
async fn with_instance(
    db: DbInstance,
    change: impl FnOnce(&mut DbInstance) + Send + 'static,
) -> DbInstance {
    tokio::task::spawn_blocking(move || {
        let mut db = db;
        change(&mut db);
        db
    })
    .await
    .unwrap()
}

async fn start_master(primary: DbUrl, replica: DbUrl) -> Master {
    let mut builder = Master::builder()
        .primary(primary)
        .replica(replica)
        .heartbeat(Duration::from_millis(250));
    for (name, token) in BIDDERS {
        builder = builder.bidder(name, token);
    }
    builder.start().await.expect("the master starts")
}

/// Bids as stored: sequence -> (lot, bidder, amount).
type StoredBids = BTreeMap<u64, (String, String, i64)>;

/// What the master's primary holds: its bids `(seq -> (lot, bidder, amount))` and its
/// log `(seq, lot, kind)`, read directly from the database.
fn primary_rows(url: &DbUrl) -> (StoredBids, Vec<(u64, String, String)>) {
    off_runtime(|| {
        let mut conn = db_connect(url, Access::Read).unwrap();
        let bids_rows = conn
            .query(
                "SELECT seq, lot_id, bidder, amount FROM bids ORDER BY seq",
                &[],
            )
            .unwrap();
        let mut bids = BTreeMap::new();
        for r in &bids_rows {
            let seq = r.int(0).unwrap() as u64;
            let row = (r.text(1).unwrap(), r.text(2).unwrap(), r.int(3).unwrap());
            assert!(bids.insert(seq, row).is_none(), "bid {seq} stored twice");
        }
        let log = conn
            .query("SELECT seq, lot_id, kind FROM oplog ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.int(0).unwrap() as u64,
                    r.text(1).unwrap(),
                    r.text(2).unwrap(),
                )
            })
            .collect();
        (bids, log)
    })
}

/// Every acknowledged bid is in the primary exactly once, the log has no gap and
/// agrees with the bids, and the replica equals the primary.
async fn check_history(handle: &MasterHandle, primary: &DbUrl, tally: &Tally) {
    assert!(
        tally.unexpected.is_empty(),
        "answers other than 201/409/503: {:?}",
        tally.unexpected
    );
    assert!(
        tally.keys_answered_twice().is_empty(),
        "a key placed two bids"
    );
    let (bids, log) = primary_rows(primary);
    let head = handle.head();
    let seqs: Vec<u64> = log.iter().map(|e| e.0).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "the log is gap-free up to the head"
    );
    for (seq, bid) in tally.placed() {
        assert_eq!(
            bids.get(&seq),
            Some(&(bid.lot_id.clone(), bid.bidder.clone(), bid.amount)),
            "acknowledged bid {seq} is stored as acknowledged"
        );
    }
    let bid_ops: BTreeMap<u64, &str> = log
        .iter()
        .filter(|e| e.2 == "bid")
        .map(|e| (e.0, e.1.as_str()))
        .collect();
    assert_eq!(
        bid_ops.keys().collect::<Vec<_>>(),
        bids.keys().collect::<Vec<_>>(),
        "one log entry per stored bid"
    );
    assert!(
        handle.wait_replicated(head, HANG).await,
        "the replica reaches the head {head}"
    );
    let primary_lots = handle.primary_lots().await.unwrap();
    assert_eq!(
        handle.replica_lots().await.unwrap(),
        primary_lots,
        "the replica equals the primary"
    );
    for lot in &primary_lots {
        let in_log = bid_ops.values().filter(|id| **id == lot.id).count() as u32;
        assert_eq!(lot.bid_count, in_log, "{}: each bid applied once", lot.id);
    }
}

/// How long `/healthz` said 503 after `from`, until it said 200 again.
fn unhealthy_for(log: &HealthLog, from: Instant) -> Option<Duration> {
    let start = log.iter().find(|(at, s, _)| *at >= from && *s == 503)?.0;
    let end = log.iter().find(|(at, s, _)| *at > start && *s == 200)?.0;
    Some(end - start)
}

async fn bidding_survives(server: Server, fault: Fault) {
    let (db, primary, replica) = server_with_databases(server).await;
    let master = start_master(primary.clone(), replica).await;
    let handle = master.handle();
    let lots = create_lots(&handle, LOTS).await.unwrap();
    let health = HealthWatch::start(master.url(), Duration::from_millis(20));
    health
        .wait("ok", HANG, |log| {
            log.last().is_some_and(|(_, s, _)| *s == 200)
        })
        .await;
    let bidding = Bidding::start(master.url(), &BIDDERS, &lots, BID_EVERY);
    bidding
        .wait("bids before the fault", HANG, |t| {
            t.placed().len() >= BIDS_EACH_SIDE
        })
        .await;

    let before = bidding.tally();
    let fault_at = Instant::now();
    let db = match fault {
        Fault::Restart | Fault::Crash => {
            let db = with_instance(db, move |db| {
                if fault == Fault::Crash {
                    db.kill()
                } else {
                    db.stop()
                }
                .unwrap()
            })
            .await;
            // While the server is down: bids are refused and health says so.
            bidding
                .wait("bids refused during the outage", HANG, |t| {
                    t.unavailable >= before.unavailable + 10
                })
                .await;
            health
                .wait("503 naming the primary", HANG, |log| {
                    log.iter().any(|(at, s, down)| {
                        *at >= fault_at && *s == 503 && down.iter().any(|d| d == "primary")
                    })
                })
                .await;
            // Fetches need the replica, on the same server: 503 too, never 500.
            let fetch = reqwest::Client::new()
                .get(format!("{}/v1/lots/{}", master.url(), lots[0]))
                .bearer_auth(master.terminal_token())
                .send()
                .await
                .unwrap();
            assert_eq!(fetch.status(), 503);
            assert!(fetch.headers().contains_key("retry-after"));
            let body: serde_json::Value = fetch.json().await.unwrap();
            assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
            with_instance(db, |db| db.start_again().unwrap()).await
        }
        Fault::KillConnections => {
            let killed = tokio::task::block_in_place(|| db.kill_connections()).unwrap();
            assert!(
                killed >= 2,
                "the writer's and the replicator's connections: {killed}"
            );
            db
        }
    };
    let back = Instant::now();
    let during = bidding.tally();
    bidding
        .wait("bids after the server's return", HANG, |t| {
            t.acked_since(back) >= BIDS_EACH_SIDE
        })
        .await;
    health
        .wait("ok again", HANG, |log| {
            log.last().is_some_and(|(_, s, _)| *s == 200)
        })
        .await;
    let tally = bidding.stop().await;
    let health_log = health.stop().await;

    check_history(&handle, &primary, &tally).await;
    let first_after = tally.acked.iter().map(|a| a.2).find(|at| *at >= back);
    let refused = tally.unavailable - before.unavailable;
    let unhealthy = unhealthy_for(&health_log, fault_at);
    if fault != Fault::KillConnections {
        assert!(
            unhealthy.is_some(),
            "/healthz said 503 during the outage: {health_log:?}"
        );
    }
    let what = match fault {
        Fault::KillConnections => "connections killed in",
        Fault::Restart | Fault::Crash => "server down",
    };
    eprintln!(
        "outage {server:?} {fault:?}: {what} {:?}; first 201 {:?} after its return; \
         {refused} bids answered 503 meanwhile ({} unanswered); /healthz 503 for {unhealthy:?}; \
         bids kept: {} before, {} during, {} after ({} replayed by key); {}",
        back - fault_at,
        first_after.map(|at| at - back),
        during.unanswered - before.unanswered,
        before.placed().len(),
        during.placed().len() - before.placed().len(),
        tally.placed().len() - during.placed().len(),
        tally.replayed,
        summary(&tally),
    );
    master.shutdown().await;
    drop(with_instance(db, |_| {}).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_bidding() {
    bidding_survives(Server::Postgres, Fault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_under_bidding() {
    bidding_survives(Server::Postgres, Fault::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backends_terminated_under_bidding() {
    bidding_survives(Server::Postgres, Fault::KillConnections).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_restart_under_bidding() {
    bidding_survives(Server::MariaDb, Fault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_crash_under_bidding() {
    bidding_survives(Server::MariaDb, Fault::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_connections_killed_under_bidding() {
    bidding_survives(Server::MariaDb, Fault::KillConnections).await;
}

/// The replica's server alone goes away: bids never notice (they only need the
/// primary), `/healthz` names the replica, and the replicator catches up by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_server_restart_leaves_bids_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (db, replica) = tokio::task::spawn_blocking(|| {
        let db = DbInstance::start(Server::Postgres)
            .unwrap_or_else(|e| panic!("cannot start a private PostgreSQL server: {e}"));
        let replica = db.create_database("lots_replica").unwrap();
        (db, replica)
    })
    .await
    .unwrap();
    let primary = DbUrl::Sqlite(dir.path().join("primary.db"));
    let master = start_master(primary.clone(), replica).await;
    let handle = master.handle();
    let lots = create_lots(&handle, LOTS).await.unwrap();
    let health = HealthWatch::start(master.url(), Duration::from_millis(20));
    let bidding = Bidding::start(master.url(), &BIDDERS, &lots, BID_EVERY);
    bidding
        .wait("bids before the fault", HANG, |t| {
            t.placed().len() >= BIDS_EACH_SIDE
        })
        .await;
    let fault_at = Instant::now();
    let db = with_instance(db, |db| db.stop().unwrap()).await;
    health
        .wait("503 naming the replica", HANG, |log| {
            log.iter().any(|(at, s, down)| {
                *at >= fault_at && *s == 503 && down.iter().any(|d| d == "replica")
            })
        })
        .await;
    bidding
        .wait("bids while the replica is down", HANG, |t| {
            t.acked_since(fault_at) >= BIDS_EACH_SIDE
        })
        .await;
    let db = with_instance(db, |db| db.start_again().unwrap()).await;
    let back = Instant::now();
    let tally = bidding.stop().await;
    let head = handle.head();
    assert!(
        handle.wait_replicated(head, HANG).await,
        "the replica catches up"
    );
    let caught_up = back.elapsed();
    health
        .wait("ok again", HANG, |log| {
            log.last().is_some_and(|(_, s, _)| *s == 200)
        })
        .await;
    health.stop().await;
    assert_eq!(
        tally.unavailable,
        0,
        "no bid needs the replica: {}",
        summary(&tally)
    );
    check_history(&handle, &primary, &tally).await;
    eprintln!(
        "replica outage (PostgreSQL): replica down {:?}; {} bids placed meanwhile, none refused; \
         replica at the head {caught_up:?} after its return",
        back - fault_at,
        tally.acked_since(fault_at),
    );
    master.shutdown().await;
    drop(with_instance(db, |_| {}).await);
}

/// Counts versions shown out of order to one display.
fn watch_display(
    client: &lotsync::Client,
    regressions: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let mut display = client.subscribe();
    tokio::spawn(async move {
        let mut shown: HashMap<String, u64> = HashMap::new();
        while let Some(update) = display.recv().await {
            let lots = match update {
                Update::LotChanged { lot, .. } => vec![lot],
                Update::Snapshot { lots, .. } | Update::Resynced { lots, .. } => lots,
                Update::State(_) => continue,
            };
            for lot in lots {
                if shown.get(&lot.id).is_some_and(|held| *held > lot.seq) {
                    regressions.fetch_add(1, Ordering::Relaxed);
                }
                shown.insert(lot.id.clone(), lot.seq);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_clients_follow_a_master_whose_postgres_restarts() {
    let (db, primary, replica) = server_with_databases(Server::Postgres).await;
    let master = start_master(primary.clone(), replica).await;
    let handle = master.handle();
    let lots = create_lots(&handle, LOTS).await.unwrap();
    let clients: Vec<lotsync::Client> = (0..4).map(|_| connect(&master).unwrap()).collect();
    for client in &clients {
        assert!(client.wait_live(HANG).await, "client live");
    }
    let regressions = Arc::new(AtomicU64::new(0));
    let displays: Vec<_> = clients
        .iter()
        .map(|c| watch_display(c, regressions.clone()))
        .collect();
    let bidding = Bidding::start(master.url(), &BIDDERS, &lots, BID_EVERY);
    bidding
        .wait("bids before the restart", HANG, |t| {
            t.placed().len() >= BIDS_EACH_SIDE
        })
        .await;
    let before = bidding.tally();
    let fault_at = Instant::now();
    let db = with_instance(db, |db| db.stop().unwrap()).await;
    bidding
        .wait("bids refused during the outage", HANG, |t| {
            t.unavailable >= before.unavailable + 10
        })
        .await;
    let db = with_instance(db, |db| db.start_again().unwrap()).await;
    let back = Instant::now();
    bidding
        .wait("bids after the restart", HANG, |t| {
            t.acked_since(back) >= BIDS_EACH_SIDE
        })
        .await;
    let tally = bidding.stop().await;
    check_history(&handle, &primary, &tally).await;

    let converging = Instant::now();
    let outcome = wait_converged(&handle, &clients, HANG).await.unwrap();
    if let Err(differences) = outcome {
        panic!("a mirror differs from the replica (id, mirror, replica): {differences:?}");
    }
    let converged_in = converging.elapsed();
    for client in &clients {
        client.shutdown().await;
    }
    for display in displays {
        display.await.unwrap();
    }
    assert_eq!(
        regressions.load(Ordering::Relaxed),
        0,
        "a display went back in time"
    );
    eprintln!(
        "four clients through a PostgreSQL restart: server down {:?}; {} bids kept, {} answered 503; \
         mirrors equal the replica {converged_in:?} after bidding stopped",
        back - fault_at,
        tally.placed().len(),
        tally.unavailable
    );
    master.shutdown().await;
    drop(with_instance(db, |_| {}).await);
}
