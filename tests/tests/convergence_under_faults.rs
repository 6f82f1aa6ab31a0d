//! Convergence under faults: bidders place a fixed number of bids at a steady pace on
//! many lots while every fault the master can inject is switched on and off at random;
//! when writes stop and faults clear, every client's mirror must equal the replica, lot
//! for lot, version for version and byte for byte, and no display may ever have been
//! shown a version older than one before it. How long convergence took is printed (the
//! design aims at one heartbeat plus one fetch); the test only bounds it by a timeout
//! that catches a hang, so a slow machine is not a failure.
//!
//! The suite runs twice: clients following the master's notice stream, and clients
//! following the log the master publishes to NATS JetStream (a `nats-server` the test
//! starts on a private port), where publishing is also paused at random and the NATS
//! server is killed and restarted during the load.
//!
//! Seeds: `LOTSYNC_SEEDS=1,2,3` (default three seeds). A failing seed is printed so it
//! can be replayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lotsync::protocol::LotStatus;
use lotsync_tests::faults::{all_clear, random_fault, random_jetstream_fault, watch_display};
use lotsync_tests::nats::Nats;
use lotsync_tests::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HEARTBEAT: Duration = Duration::from_millis(250);
const CLIENTS: usize = 4;
const LOTS: usize = 20;
/// Bids each of the three bidders places.
const BIDS_EACH: u64 = 700;
/// Generous bound on anything waited for: only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

struct Outcome {
    bids_accepted: u64,
    load_took: Duration,
    faults: u64,
    converged_in: Duration,
}

/// Where the clients follow notices from.
enum Source<'a> {
    /// The master's notice stream.
    Master,
    /// The master's log on JetStream, on this server.
    JetStream(&'a mut Nats),
}

async fn run_seed(seed: u64, mut source: Source<'_>) -> Outcome {
    let nats_urls = match &source {
        Source::Master => None,
        Source::JetStream(nats) => Some(nats.urls()),
    };
    let mut builder = mock_master::Master::builder();
    if let Some(urls) = &nats_urls {
        builder = builder.nats(mock_master::nats::NatsOptions {
            servers: urls.clone(),
            ..Default::default()
        });
    }
    let master = builder
        .in_memory()
        .heartbeat(HEARTBEAT)
        .fetch_wait(Duration::from_millis(300))
        .chaos(true)
        .seed(seed)
        .bidder("alice", "alice-token")
        .bidder("bob", "bob-token")
        .bidder("carol", "carol-token")
        .start()
        .await
        .expect("master starts");
    let handle = master.handle();
    let ids = create_lots(&handle, LOTS).await.unwrap();
    let clients: Vec<lotsync::Client> = (0..CLIENTS)
        .map(|_| match &nats_urls {
            None => connect(&master).unwrap(),
            Some(urls) => lotsync::Client::builder(master.url())
                .token(master.terminal_token())
                .reconnect_delay(Duration::from_millis(20), Duration::from_millis(500))
                .retry_delay(Duration::from_millis(10), Duration::from_millis(200))
                .jetstream(lotsync::JetStreamNotices::new(urls.clone()).heartbeat(HEARTBEAT))
                .build()
                .unwrap(),
        })
        .collect();
    for client in &clients {
        assert!(
            client.wait_live(HANG).await,
            "seed {seed}: client never live"
        );
    }
    let regressions = Arc::new(AtomicU64::new(0));
    let displays: Vec<_> = clients
        .iter()
        .map(|c| watch_display(c, regressions.clone()))
        .collect();

    let accepted = Arc::new(AtomicU64::new(0));
    // Bidders publish their progress; faults are switched as bids land, and the
    // channel closes when the last bidder is done.
    let progress = Arc::new(tokio::sync::watch::Sender::new(0u64));
    let load_started = Instant::now();
    let bidders: Vec<_> = ["alice", "bob", "carol"]
        .into_iter()
        .enumerate()
        .map(|(n, bidder)| {
            let (handle, ids, accepted) = (handle.clone(), ids.clone(), accepted.clone());
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed * 31 + n as u64);
                let mut amount = 10_000 + n as i64 * 100;
                let mut tick = tokio::time::interval(Duration::from_millis(4));
                let mut placed = 0;
                // Amounts only rise, so a bid refused as outbid is followed by a higher one.
                while placed < BIDS_EACH {
                    tick.tick().await;
                    let id = &ids[rng.random_range(0..ids.len())];
                    amount += 300;
                    // Every fifth request leaves a maximum: the master's proxy bids
                    // answer the others' bids, all through the same log.
                    let ok = if rng.random_range(0..5) == 0 {
                        let max = lotsync::protocol::BidRequest::max(amount + 900);
                        handle.bid(bidder, id, max).await.is_ok()
                    } else {
                        handle.place_bid(bidder, id, amount).await.is_ok()
                    };
                    if ok {
                        placed += 1;
                        accepted.fetch_add(1, Ordering::Relaxed);
                        progress.send_modify(|bids| *bids += 1);
                    }
                }
            })
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = 0;
    let mut landed = progress.subscribe();
    drop(progress);
    let mut next_switch = 0;
    loop {
        // Every 40-180 accepted bids (about 50-250 ms at this rate) one fault switches.
        next_switch += rng.random_range(40..180);
        if landed.wait_for(|bids| *bids >= next_switch).await.is_err() {
            break; // every bidder is done
        }
        let fault = match &source {
            Source::Master => random_fault(&mut rng),
            Source::JetStream(_) => random_jetstream_fault(&mut rng),
        };
        handle.set_chaos(fault).expect("chaos accepted");
        faults += 1;
        // On JetStream, the NATS server itself goes down for a while, once.
        if let Source::JetStream(nats) = &mut source {
            let node = &mut nats.nodes[0];
            if node.is_running() && faults == 4 {
                node.kill();
            } else if !node.is_running() && faults >= 7 {
                node.start().expect("nats-server restarts");
                node.wait_ready().await.expect("nats-server ready");
            }
        }
    }
    if let Source::JetStream(nats) = &mut source
        && !nats.nodes[0].is_running()
    {
        nats.nodes[0].start().expect("nats-server restarts");
        nats.nodes[0].wait_ready().await.expect("nats-server ready");
    }
    for bidder in bidders {
        tokio::time::timeout(HANG, bidder)
            .await
            .expect("the bidders hung")
            .unwrap();
    }
    let load_took = load_started.elapsed();
    // A status change too, so not every operation is a bid.
    handle
        .set_status(&ids[0], LotStatus::Withdrawn)
        .await
        .unwrap();
    handle.set_chaos(all_clear()).unwrap();

    let cleared = Instant::now();
    let outcome = wait_converged(&handle, &clients, HANG).await.unwrap();
    let converged_in = cleared.elapsed();
    if let Err(differences) = outcome {
        panic!(
            "seed {seed}: mirror differs from the replica (id, mirror, replica): {differences:?}"
        );
    }
    for client in &clients {
        client.shutdown().await;
    }
    for display in displays {
        assert!(display.await.unwrap() > 0);
    }
    assert_eq!(
        regressions.load(Ordering::Relaxed),
        0,
        "seed {seed}: a display went back in time"
    );
    master.shutdown().await;
    Outcome {
        bids_accepted: accepted.load(Ordering::Relaxed),
        load_took,
        faults,
        converged_in,
    }
}

fn seeds() -> Vec<u64> {
    std::env::var("LOTSYNC_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_converges_on_the_replica_whatever_the_faults() {
    for seed in seeds() {
        eprintln!("convergence seed {seed} (replay with LOTSYNC_SEEDS={seed})");
        let outcome = run_seed(seed, Source::Master).await;
        check(seed, &outcome);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_following_jetstream_converge_whatever_the_faults() {
    for seed in seeds() {
        eprintln!("convergence on JetStream, seed {seed} (replay with LOTSYNC_SEEDS={seed})");
        let mut nats = Nats::single().await.expect("nats-server starts");
        let outcome = run_seed(seed, Source::JetStream(&mut nats)).await;
        check(seed, &outcome);
    }
}

fn check(seed: u64, outcome: &Outcome) {
    eprintln!(
        "seed {seed}: {} bids accepted in {:?}, {} faults injected, converged {:?} after faults cleared",
        outcome.bids_accepted, outcome.load_took, outcome.faults, outcome.converged_in
    );
    assert_eq!(outcome.bids_accepted, 3 * BIDS_EACH, "seed {seed}");
    assert!(
        outcome.faults > 5,
        "seed {seed}: the schedule switched faults"
    );
}
