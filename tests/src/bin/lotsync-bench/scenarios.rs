//! The scenarios of one benchmark run and their parameters (full and `--quick`).
//!
//! Each scenario starts a fresh in-memory master in this process (loopback only),
//! creates its lots, starts its subscriber fleets, waits until every subscriber has
//! synced, drives the bid load, lets the last versions arrive, stops the fleets and
//! analyses what they saw.

use std::path::Path;
use std::time::{Duration, Instant};

use lotsync_tests::create_lots;
use serde::Serialize;

use crate::fleet::FleetSpec;
use crate::load::{self, LoadRun};
use crate::master::BenchMaster;
use crate::measure::{Crew, Crews, Load, fleet, on_master};
use crate::servers::{self, ServersPlan, ServersResults};
use crate::stats::{DesignStats, Percentiles};
use crate::subscriber::Mode;

/// Sizes and durations of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Requests in the loopback floor measurement.
    pub floor_requests: u32,
    /// Subscribers in the latency and polling comparisons.
    pub subscribers: u32,
    /// Lots bid on in the steady scenarios.
    pub lots: usize,
    /// Bid rate of the latency scenario and the busy polling comparison, per second.
    pub busy_rate: f64,
    /// Duration of the latency scenario.
    pub busy_s: f64,
    /// Duration of the busy polling comparison.
    pub busy_poll_s: f64,
    /// Bid rate of the quiet comparison (a live auction hall), per second.
    pub quiet_rate: f64,
    /// Duration of the quiet comparison.
    pub quiet_s: f64,
    /// Fan-out sizes.
    pub fanout: Vec<u32>,
    /// Bid rate during fan-out.
    pub fanout_rate: f64,
    /// Duration of each fan-out point.
    pub fanout_s: f64,
    /// Duration of each throughput run.
    pub throughput_s: f64,
    /// Concurrent bidders for group commit.
    pub throughput_bidders: usize,
    /// Offered rate of the sustained run, bids per second.
    pub sustained_rate: f64,
    /// Hot lots in the burst scenario.
    pub hot_lots: usize,
    /// Bids per hot lot per burst.
    pub per_burst: usize,
    /// Time between bursts, ms.
    pub burst_period_ms: u64,
    /// Subscribers in the burst scenario.
    pub burst_subscribers: u32,
    /// Duration of the burst scenario.
    pub burst_s: f64,
    /// Terminal servers and peer designs.
    pub servers: ServersPlan,
    /// Whether the scenarios of the SDK on the master run (off: only the loopback
    /// floor, the fan-out row of 1 and the terminal-server and peer scenarios).
    pub core: bool,
    /// The notice log on JetStream (skipped when `None`).
    pub jetstream: Option<crate::jetstream::JetStreamPlan>,
}

impl Plan {
    /// The full benchmark (about six minutes on 2 cores, with the servers' scenarios).
    pub fn full() -> Plan {
        Plan {
            floor_requests: 5_000,
            subscribers: 20,
            lots: 20,
            busy_rate: 100.0,
            busy_s: 30.0,
            busy_poll_s: 20.0,
            quiet_rate: 0.5,
            quiet_s: 40.0,
            fanout: vec![1, 10, 50, 200],
            fanout_rate: 20.0,
            fanout_s: 15.0,
            throughput_s: 4.0,
            throughput_bidders: 64,
            sustained_rate: 5_000.0,
            hot_lots: 4,
            per_burst: 25,
            burst_period_ms: 100,
            burst_subscribers: 10,
            burst_s: 15.0,
            servers: ServersPlan::full(),
            core: true,
            jetstream: Some(crate::jetstream::JetStreamPlan::full()),
        }
    }

    /// The smoke version: every figure, small and short (about a minute).
    pub fn quick() -> Plan {
        Plan {
            floor_requests: 500,
            subscribers: 5,
            lots: 10,
            busy_rate: 50.0,
            busy_s: 4.0,
            busy_poll_s: 3.0,
            quiet_rate: 2.0,
            quiet_s: 4.0,
            fanout: vec![1, 10],
            fanout_rate: 20.0,
            fanout_s: 3.0,
            throughput_s: 1.5,
            throughput_bidders: 32,
            sustained_rate: 2_000.0,
            hot_lots: 2,
            per_burst: 20,
            burst_period_ms: 100,
            burst_subscribers: 3,
            burst_s: 3.0,
            servers: ServersPlan::quick(),
            core: true,
            jetstream: Some(crate::jetstream::JetStreamPlan::quick()),
        }
    }
}

/// The three designs side by side at one bid rate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparison {
    /// Bids per second.
    pub bid_rate: f64,
    /// Notify, then fetch.
    pub ours: DesignStats,
    /// Polling every second.
    pub poll_1000: DesignStats,
    /// Polling every 250 ms.
    pub poll_250: DesignStats,
}

/// One fan-out size.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutPoint {
    /// Subscribers.
    pub subscribers: u32,
    /// Processes they ran in.
    pub processes: u32,
    /// Subscribers (SDK clients, as tasks) per process.
    pub per_process: u32,
    /// What they saw.
    pub stats: DesignStats,
}

/// One throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// `in-memory` (no fsync) or `durable` (files, fsync on commit).
    pub storage: String,
    /// How bids were offered: `group commit`, `one bid per commit` or `sustained`.
    pub load: String,
    /// Concurrent closed-loop bidders (1: every batch holds a single bid); 0 for the
    /// open-loop sustained run.
    pub bidders: usize,
    /// Offered rate of the sustained run (0 for closed loop).
    pub offered_per_s: f64,
    /// Accepted bids per second.
    pub bids_per_s: f64,
    /// Refused bids.
    pub rejected: u64,
    /// Commit to replica-applied, sampled bids.
    pub replica_lag: Percentiles,
    /// A bidder's wait for its commit.
    pub commit_wait: Percentiles,
}

/// The burst scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bursts {
    /// Bids per second over the run.
    pub bid_rate: f64,
    /// Bids refused (a burst's bids can reach the writer out of order).
    pub rejected: u64,
    /// What the subscribers saw.
    pub stats: DesignStats,
    /// Diagnostic: commit to notice arrival at a raw stream reader.
    pub notice_arrival: Percentiles,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Parameters.
    pub plan: Plan,
    /// Plain HTTP round trip on loopback.
    pub floor: Percentiles,
    /// Latency at `busy_rate` with `subscribers` notify subscribers, alone on the master.
    pub latency: DesignStats,
    /// In the same run, one raw notice-stream reader: commit to notice arrival.
    pub notice_arrival: DesignStats,
    /// Polling at `busy_rate` (ours from `latency`).
    pub busy: Comparison,
    /// All three designs at `quiet_rate`, on the same master and the same bids.
    pub quiet: Comparison,
    /// Latency per fan-out size.
    pub fanout: Vec<FanoutPoint>,
    /// Master throughput runs.
    pub throughput: Vec<Throughput>,
    /// Coalescing under bursts.
    pub bursts: Bursts,
    /// Terminal servers, side by side with nchan and polling.
    pub servers: ServersResults,
    /// The notice log on JetStream.
    pub jetstream: Option<crate::jetstream::JetStreamResults>,
}

/// Start a master and `fleets` on it, drive `load`, and analyse each fleet.
async fn measure(
    lots: usize,
    fleets: &[FleetSpec],
    load: Load,
) -> anyhow::Result<(Vec<DesignStats>, LoadRun)> {
    let master = BenchMaster::start(None).await?;
    let ids = create_lots(master.handle(), lots).await?;
    let crews: Vec<Crew> = fleets.iter().map(|f| on_master(&master, *f)).collect();
    let mut running = Crews::start(&crews).await?;
    let window = running.drive(&master, &ids, load, None, &[]).await?;
    let stats = running.finish_and_analyse(&window.run).await?;
    master.shutdown().await;
    Ok((stats, window.run))
}

/// Round trips of `GET /healthz`, one at a time on a kept-alive connection, µs.
async fn loopback_floor(requests: u32) -> anyhow::Result<Percentiles> {
    let master = BenchMaster::start(None).await?;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let url = format!("{}/healthz", master.url());
    let mut h = load::histogram();
    for i in 0..requests + 100 {
        let sent = Instant::now();
        http.get(&url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        if i >= 100 {
            let _ = h.record(sent.elapsed().as_micros() as u64);
        }
    }
    master.shutdown().await;
    Ok(Percentiles::of(&h))
}

/// How a throughput run offers its bids.
#[derive(Debug, Clone, Copy)]
enum Offer {
    /// Closed loop with this many concurrent bidders.
    Bidders(usize),
    /// Open loop at this many bids per second.
    Rate(f64),
}

async fn throughput(
    plan: &Plan,
    storage: &str,
    dir: Option<&Path>,
    offer: Offer,
) -> anyhow::Result<Throughput> {
    let master = BenchMaster::start(dir).await?;
    let handle = master.handle();
    let ids = create_lots(handle, 256).await?;
    let duration = Duration::from_secs_f64(plan.throughput_s);
    let run = match offer {
        Offer::Bidders(n) => load::saturate(handle, &ids, n, duration, 8).await,
        Offer::Rate(rate) => load::paced(handle, &ids, rate, duration, 8).await,
    };
    master.shutdown().await;
    let (load, bidders, offered_per_s) = match offer {
        Offer::Bidders(1) => ("one bid per commit", 1, 0.0),
        Offer::Bidders(n) => ("group commit", n, 0.0),
        Offer::Rate(rate) => ("sustained", 0, rate),
    };
    let result = Throughput {
        storage: storage.to_owned(),
        load: load.to_owned(),
        bidders,
        offered_per_s,
        bids_per_s: run.accepted as f64 / run.elapsed.as_secs_f64(),
        rejected: run.rejected,
        replica_lag: Percentiles::of(&run.lag_us),
        commit_wait: Percentiles::of(&run.commit_us),
    };
    tracing::info!(
        storage,
        load,
        bids_per_s = result.bids_per_s as u64,
        "throughput"
    );
    Ok(result)
}

/// Run every scenario of `plan`. `scratch` holds the durable master's files.
pub async fn run_all(plan: Plan, scratch: &Path) -> anyhow::Result<Results> {
    // Before any process starts, so every one inherits it.
    let open_files = servers::raise_open_files();

    crate::stage("loopback floor");
    tracing::info!("loopback floor");
    let floor = loopback_floor(plan.floor_requests).await?;
    let mut results = Results {
        plan: plan.clone(),
        floor,
        latency: DesignStats::default(),
        notice_arrival: DesignStats::default(),
        busy: Comparison::default(),
        quiet: Comparison::default(),
        fanout: Vec::new(),
        throughput: Vec::new(),
        bursts: Bursts::default(),
        servers: ServersResults::default(),
        jetstream: None,
    };
    if plan.core {
        core(&plan, scratch, &mut results).await?;
    } else {
        // The baseline the terminal-server rows are judged against.
        results.fanout = fanout_points(&plan, &[1]).await?;
    }

    let shared = servers::Shared {
        lots: plan.lots,
        subscribers: plan.subscribers,
        busy_rate: plan.busy_rate,
        fanout_rate: plan.fanout_rate,
        burst_subscribers: plan.burst_subscribers,
        bursts: bursts_load(&plan),
    };
    results.servers = servers::run(&plan.servers, &shared, scratch, open_files).await?;
    if let Some(jetstream) = &plan.jetstream {
        results.jetstream = Some(crate::jetstream::run(jetstream).await?);
    }
    Ok(results)
}

fn bursts_load(plan: &Plan) -> Load {
    Load::Bursts {
        hot: plan.hot_lots,
        per_burst: plan.per_burst,
        period: Duration::from_millis(plan.burst_period_ms),
        seconds: plan.burst_s,
    }
}

async fn fanout_points(plan: &Plan, sizes: &[u32]) -> anyhow::Result<Vec<FanoutPoint>> {
    let mut fanout = Vec::new();
    for &size in sizes {
        crate::stage(format!("fan-out: {size} subscribers"));
        tracing::info!(subscribers = size, rate = plan.fanout_rate, "fan-out");
        let spec = fleet(Mode::Notify, 0, size, 0);
        let (mut s, _) = measure(
            plan.lots,
            &[spec],
            Load::Steady {
                rate: plan.fanout_rate,
                seconds: plan.fanout_s,
            },
        )
        .await?;
        let (processes, per_process) = spec.layout();
        fanout.push(FanoutPoint {
            subscribers: size,
            processes,
            per_process,
            stats: s.remove(0),
        });
    }
    Ok(fanout)
}

/// The scenarios of the SDK on the master: latency, polling, fan-out, throughput and
/// bursts.
async fn core(plan: &Plan, scratch: &Path, r: &mut Results) -> anyhow::Result<()> {
    let n = plan.subscribers;
    crate::stage(format!("notify, then fetch: {n} subscribers"));
    tracing::info!(
        subscribers = n,
        rate = plan.busy_rate,
        "latency: notify, then fetch"
    );
    let (mut s, _) = measure(
        plan.lots,
        &[fleet(Mode::Notify, 0, n, 0), fleet(Mode::Notices, 0, 1, n)],
        Load::Steady {
            rate: plan.busy_rate,
            seconds: plan.busy_s,
        },
    )
    .await?;
    r.latency = s.remove(0);
    r.notice_arrival = s.remove(0);

    crate::stage(format!("polling: {n} subscribers"));
    tracing::info!(
        subscribers = n,
        rate = plan.busy_rate,
        "polling at the same rate"
    );
    let (mut s, _) = measure(
        plan.lots,
        &[fleet(Mode::Poll, 1000, n, 0), fleet(Mode::Poll, 250, n, n)],
        Load::Steady {
            rate: plan.busy_rate,
            seconds: plan.busy_poll_s,
        },
    )
    .await?;
    r.busy = Comparison {
        bid_rate: plan.busy_rate,
        ours: r.latency.clone(),
        poll_1000: s.remove(0),
        poll_250: s.remove(0),
    };

    crate::stage(format!("all designs at a hall's rate: {n} subscribers"));
    tracing::info!(
        subscribers = n,
        rate = plan.quiet_rate,
        "all designs at a hall's bid rate"
    );
    let (mut s, _) = measure(
        plan.lots,
        &[
            fleet(Mode::Notify, 0, n, 0),
            fleet(Mode::Poll, 1000, n, n),
            fleet(Mode::Poll, 250, n, 2 * n),
        ],
        Load::Steady {
            rate: plan.quiet_rate,
            seconds: plan.quiet_s,
        },
    )
    .await?;
    r.quiet = Comparison {
        bid_rate: plan.quiet_rate,
        ours: s.remove(0),
        poll_1000: s.remove(0),
        poll_250: s.remove(0),
    };

    r.fanout = fanout_points(plan, &plan.fanout).await?;

    let durable = tempfile::Builder::new()
        .prefix("bench-durable-")
        .tempdir_in(scratch)?;
    for (storage, dir) in [("in-memory", None), ("durable", Some(durable.path()))] {
        let offers = [
            Offer::Bidders(plan.throughput_bidders),
            Offer::Bidders(1),
            Offer::Rate(plan.sustained_rate),
        ];
        for (i, offer) in offers.into_iter().enumerate() {
            let dir = dir.map(|d: &Path| d.join(i.to_string()));
            r.throughput
                .push(throughput(plan, storage, dir.as_deref(), offer).await?);
        }
    }

    crate::stage("bursts");
    tracing::info!(hot = plan.hot_lots, per_burst = plan.per_burst, "bursts");
    let (mut s, run) = measure(
        plan.lots,
        &[
            fleet(Mode::Notify, 0, plan.burst_subscribers, 0),
            fleet(Mode::Notices, 0, 1, plan.burst_subscribers),
        ],
        bursts_load(plan),
    )
    .await?;
    let seconds = ((run.end_us - run.start_us) as f64 / 1e6).max(1e-3);
    r.bursts = Bursts {
        bid_rate: run.commits.len() as f64 / seconds,
        rejected: run.rejected,
        stats: s.remove(0),
        notice_arrival: s.remove(0).per_subscriber,
    };
    Ok(())
}
