//! Bid load against an in-process master: steady open-loop rates, bursts on hot lots,
//! and closed-loop saturation for throughput. Every accepted bid is a [`Commit`], the
//! ground truth the subscribers' observations are compared with.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mock_master::MasterHandle;
use tokio::sync::Mutex;

use crate::nchan::Publisher;
use crate::subscriber::now_us;

/// An accepted bid: the lot's new version and its commit time (master clock, unix µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Lot that changed.
    pub lot: String,
    /// Its new version.
    pub seq: u64,
    /// Commit time.
    pub at_us: i64,
}

/// What a load run produced.
#[derive(Debug, Default)]
pub struct LoadRun {
    /// Accepted bids.
    pub commits: Vec<Commit>,
    /// Bids the master refused (too low after a reordering, ...).
    pub rejected: u64,
    /// When the first bid was sent (unix µs).
    pub start_us: i64,
    /// When the last bid was answered (unix µs).
    pub end_us: i64,
}

/// Next amounts per lot, so every bid outbids the previous one.
#[derive(Debug)]
struct Prices(HashMap<String, i64>);

impl Prices {
    fn new(lots: &[String]) -> Prices {
        // Lots start at 10 000 with an increment of 100 (the harness's `lot_input`).
        Prices(lots.iter().map(|l| (l.clone(), 10_000)).collect())
    }

    fn next(&mut self, lot: &str) -> i64 {
        let price = self.0.entry(lot.to_owned()).or_insert(10_000);
        *price += 100;
        *price
    }
}

/// Place a bid; once committed, hand it to `publisher` if there is one.
async fn bid(
    handle: &MasterHandle,
    bidder: &str,
    lot: &str,
    amount: i64,
    publisher: Option<&Publisher>,
) -> Option<Commit> {
    match handle.place_bid(bidder, lot, amount).await {
        Ok(bid) => {
            if let Some(publisher) = publisher {
                publisher.publish(&bid).await;
            }
            Some(Commit {
                lot: bid.lot_id,
                seq: bid.seq,
                at_us: bid.at.timestamp_micros(),
            })
        }
        Err(e) => {
            tracing::debug!(lot, amount, error = %e, "bid refused");
            None
        }
    }
}

/// `rate` bids per second for `duration`, round-robin over `lots`, sent on schedule
/// whether or not earlier bids were answered (open loop, like real bidders). Each
/// committed bid is published to `publisher` when there is one.
pub async fn steady(
    handle: &MasterHandle,
    lots: &[String],
    rate: f64,
    duration: Duration,
    publisher: Option<Arc<Publisher>>,
) -> LoadRun {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as usize;
    let mut prices = Prices::new(lots);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start_us = now_us();
    let mut pending = Vec::with_capacity(total);
    for i in 0..total {
        ticks.tick().await;
        let lot = lots[i % lots.len()].clone();
        let amount = prices.next(&lot);
        let handle = handle.clone();
        let bidder = if i % 2 == 0 { "alice" } else { "bob" };
        let publisher = publisher.clone();
        pending.push(tokio::spawn(async move {
            bid(&handle, bidder, &lot, amount, publisher.as_deref()).await
        }));
    }
    collect(pending, start_us).await
}

/// Bursts: every `period`, each hot lot receives `per_burst` bids at once (a bidding
/// war), for `duration`. Committed bids are published to `publisher` if given.
pub async fn bursts(
    handle: &MasterHandle,
    hot: &[String],
    per_burst: usize,
    period: Duration,
    duration: Duration,
    publisher: Option<Arc<Publisher>>,
) -> LoadRun {
    let mut prices = Prices::new(hot);
    let rounds = (duration.as_secs_f64() / period.as_secs_f64())
        .round()
        .max(1.0) as usize;
    let mut ticks = tokio::time::interval(period);
    let start_us = now_us();
    let mut pending = Vec::new();
    for _ in 0..rounds {
        ticks.tick().await;
        for lot in hot {
            // Sent in order from one task, so the writer sees ascending amounts.
            let bids: Vec<(String, i64)> = (0..per_burst)
                .map(|_| (lot.clone(), prices.next(lot)))
                .collect();
            let handle = handle.clone();
            let publisher = publisher.clone();
            pending.push(tokio::spawn(async move {
                let futures = bids.iter().enumerate().map(|(i, (lot, amount))| {
                    let bidder = if i % 2 == 0 { "alice" } else { "bob" };
                    bid(&handle, bidder, lot, *amount, publisher.as_deref())
                });
                futures::future::join_all(futures).await
            }));
        }
    }
    let mut run = LoadRun {
        start_us,
        ..LoadRun::default()
    };
    for task in pending {
        for outcome in task.await.unwrap_or_default() {
            match outcome {
                Some(commit) => run.commits.push(commit),
                None => run.rejected += 1,
            }
        }
    }
    run.end_us = now_us();
    run
}

async fn collect(pending: Vec<tokio::task::JoinHandle<Option<Commit>>>, start_us: i64) -> LoadRun {
    let mut run = LoadRun {
        start_us,
        ..LoadRun::default()
    };
    for task in pending {
        match task.await {
            Ok(Some(commit)) => run.commits.push(commit),
            _ => run.rejected += 1,
        }
    }
    run.end_us = now_us();
    run
}

/// Result of a saturation run.
#[derive(Debug)]
pub struct Saturation {
    /// Bids accepted.
    pub accepted: u64,
    /// Bids refused.
    pub rejected: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Commit-to-replica-applied times of sampled bids, µs.
    pub lag_us: Histogram<u64>,
    /// Time a bidder waited for its bid to be committed, µs.
    pub commit_us: Histogram<u64>,
}

/// `bidders` concurrent closed-loop bidders, each on its own lots, as fast as the
/// master accepts, for `duration`. One bid in `sample_every` is followed to the
/// replica to measure replication lag.
pub async fn saturate(
    handle: &MasterHandle,
    lots: &[String],
    bidders: usize,
    duration: Duration,
    sample_every: u64,
) -> Saturation {
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let lag = Arc::new(Mutex::new(histogram()));
    let commit = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for b in 0..bidders {
        let mine: Vec<String> = lots.iter().skip(b).step_by(bidders).cloned().collect();
        let (handle, accepted, rejected) = (handle.clone(), accepted.clone(), rejected.clone());
        let (lag, commit) = (lag.clone(), commit.clone());
        tasks.push(tokio::spawn(async move {
            let mut prices = Prices::new(&mine);
            let mut own_commit = histogram();
            let mut samplers = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline && !mine.is_empty() {
                let lot = &mine[(n as usize) % mine.len()];
                let amount = prices.next(lot);
                let sent = Instant::now();
                let done = handle.place_bid("alice", lot, amount).await;
                let _ = own_commit.record(sent.elapsed().as_micros() as u64);
                n += 1;
                match done {
                    Ok(bid) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        if n.is_multiple_of(sample_every) {
                            let (handle, lag) = (handle.clone(), lag.clone());
                            let at = bid.at.timestamp_micros();
                            samplers.push(tokio::spawn(async move {
                                if handle
                                    .wait_replicated(bid.seq, Duration::from_secs(10))
                                    .await
                                {
                                    let us = (now_us() - at).max(0) as u64;
                                    let _ = lag.lock().await.record(us);
                                }
                            }));
                        }
                    }
                    Err(_) => {
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            for sampler in samplers {
                let _ = sampler.await;
            }
            let _ = commit.lock().await.add(&own_commit);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let lag_us = lag.lock().await.clone();
    let commit_us = commit.lock().await.clone();
    Saturation {
        accepted: accepted.load(Ordering::Relaxed),
        rejected: rejected.load(Ordering::Relaxed),
        elapsed,
        lag_us,
        commit_us,
    }
}

/// A histogram of microseconds with three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
}

/// `rate` bids per second offered on schedule (open loop, in 5 ms steps) for
/// `duration`, round-robin over `lots`: what the master sustains at that rate, and the
/// replica lag there. One bid in `sample_every` is followed to the replica.
pub async fn paced(
    handle: &MasterHandle,
    lots: &[String],
    rate: f64,
    duration: Duration,
    sample_every: u64,
) -> Saturation {
    let step = Duration::from_millis(5);
    let per_step = rate * step.as_secs_f64();
    let lag = Arc::new(Mutex::new(histogram()));
    let commit = Arc::new(Mutex::new(histogram()));
    let mut prices = Prices::new(lots);
    let mut ticks = tokio::time::interval(step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let (mut owed, mut n) = (0.0, 0u64);
    let mut pending = Vec::new();
    while started.elapsed() < duration {
        ticks.tick().await;
        owed += per_step;
        while owed >= 1.0 {
            owed -= 1.0;
            let lot = lots[(n as usize) % lots.len()].clone();
            let amount = prices.next(&lot);
            let sample = n.is_multiple_of(sample_every);
            n += 1;
            let (handle, lag, commit) = (handle.clone(), lag.clone(), commit.clone());
            pending.push(tokio::spawn(async move {
                let sent = Instant::now();
                let bid = handle.place_bid("alice", &lot, amount).await.ok()?;
                let _ = commit
                    .lock()
                    .await
                    .record(sent.elapsed().as_micros() as u64);
                if sample
                    && handle
                        .wait_replicated(bid.seq, Duration::from_secs(10))
                        .await
                {
                    let us = (now_us() - bid.at.timestamp_micros()).max(0) as u64;
                    let _ = lag.lock().await.record(us);
                }
                Some(())
            }));
        }
    }
    let elapsed = started.elapsed();
    let (mut accepted, mut rejected) = (0, 0);
    for task in pending {
        match task.await {
            Ok(Some(())) => accepted += 1,
            _ => rejected += 1,
        }
    }
    let lag_us = lag.lock().await.clone();
    let commit_us = commit.lock().await.clone();
    Saturation {
        accepted,
        rejected,
        elapsed,
        lag_us,
        commit_us,
    }
}
