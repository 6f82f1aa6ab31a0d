//! The notice log on NATS JetStream (`nats-server` started here on private ports):
//!
//! - **Following**: the same master (publishing to JetStream), the same steady load,
//!   two windows in one run: N SDK clients on the master's notice streams, then N on
//!   JetStream. Per window: notice-to-mirror latency (commit to every mirror) and the
//!   master's CPU per committed change.
//! - **Publishing**: a master saturated by closed-loop bidders, publishing to an R1
//!   stream (one server) and to an R3 stream (a three-node cluster): entries published
//!   per second (from the first bid until the stream holds the last entry), and the lag
//!   from commit to the entry being stored in the stream (the stream's own timestamp).

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use lotsync::protocol::jetstream::{DEFAULT_PREFIX, stream_name};
use lotsync::protocol::{Notice, Seq};
use lotsync_tests::create_lots;
use lotsync_tests::nats::Nats;
use serde::Serialize;

use crate::load::{self, histogram};
use crate::master::{self, BenchMaster};
use crate::measure::{Crews, Load, fleet, on_master};
use crate::stats::{DesignStats, Percentiles};
use crate::subscriber::Mode;

/// Sizes and durations of the JetStream rows.
#[derive(Debug, Clone, Serialize)]
pub struct JetStreamPlan {
    /// SDK clients per following window.
    pub subscribers: u32,
    /// Lots bid on.
    pub lots: usize,
    /// Bids per second while following.
    pub rate: f64,
    /// Duration of each following window, s.
    pub follow_s: f64,
    /// Closed-loop bidders of the publishing runs.
    pub bidders: usize,
    /// Duration of each publishing run, s.
    pub publish_s: f64,
}

impl JetStreamPlan {
    /// The full rows: 200 clients each way, 15 s windows.
    pub fn full() -> JetStreamPlan {
        JetStreamPlan {
            subscribers: 200,
            lots: 20,
            rate: 20.0,
            follow_s: 15.0,
            bidders: 64,
            publish_s: 4.0,
        }
    }

    /// The smoke version.
    pub fn quick() -> JetStreamPlan {
        JetStreamPlan {
            subscribers: 10,
            lots: 10,
            rate: 20.0,
            follow_s: 3.0,
            bidders: 32,
            publish_s: 1.5,
        }
    }
}

/// One following window.
#[derive(Debug, Clone, Serialize)]
pub struct Follow {
    /// `master SSE` or `JetStream`.
    pub source: String,
    /// What the clients saw.
    pub stats: DesignStats,
    /// Master CPU (runtime, writer, replicator) per committed change, ms.
    pub master_cpu_ms_per_change: f64,
    /// Master CPU over the window, % of one core.
    pub master_cpu_pct: f64,
}

/// One publishing run.
#[derive(Debug, Clone, Serialize)]
pub struct Publish {
    /// Stream replicas.
    pub replicas: usize,
    /// Entries committed (and published).
    pub entries: u64,
    /// Entries published per second, first bid to last entry in the stream.
    pub entries_per_s: f64,
    /// Bids committed per second (the offered side).
    pub commits_per_s: f64,
    /// Commit to stored in the stream.
    pub lag: Percentiles,
}

/// Everything the JetStream rows measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JetStreamResults {
    /// Clients following the master's streams, then JetStream.
    pub follow: Vec<Follow>,
    /// R1, then R3.
    pub publish: Vec<Publish>,
}

fn nats_options(nats: &Nats, replicas: usize) -> mock_master::nats::NatsOptions {
    mock_master::nats::NatsOptions {
        servers: nats.urls(),
        replicas,
        ..Default::default()
    }
}

fn port(url: &str) -> anyhow::Result<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("a NATS URL with a port")
}

/// Run the JetStream rows.
pub async fn run(plan: &JetStreamPlan) -> anyhow::Result<JetStreamResults> {
    if !lotsync_tests::nats::available() {
        anyhow::bail!("nats-server is not installed: the JetStream rows need it");
    }
    let mut results = JetStreamResults::default();
    {
        let nats = Nats::single().await?;
        let master = BenchMaster::start_with(None, Some(nats_options(&nats, 1))).await?;
        // Each window bids on lots of its own, from their starting prices.
        let mut windows = Vec::new();
        for window in ["sse", "js"] {
            let mut ids = Vec::new();
            for i in 0..plan.lots {
                let id = format!("{window}-{i}");
                master
                    .handle()
                    .put_lot(&id, lotsync_tests::lot_input(&id, 10_000))
                    .await?;
                ids.push(id);
            }
            windows.push(ids);
        }
        let load = Load::Steady {
            rate: plan.rate,
            seconds: plan.follow_s,
        };
        let nats_port = port(&nats.urls()[0])?;
        for ((source, spec), ids) in [
            ("master SSE", fleet(Mode::Notify, 0, plan.subscribers, 0)),
            (
                "JetStream",
                crate::fleet::FleetSpec {
                    nats: Some(nats_port),
                    ..fleet(Mode::Notify, 0, plan.subscribers, plan.subscribers)
                },
            ),
        ]
        .into_iter()
        .zip(&windows)
        {
            tracing::info!(source, subscribers = plan.subscribers, "following");
            let mut running = Crews::start(&[on_master(&master, spec)]).await?;
            let window = running
                .drive(&master, ids, load, None, &[master::CPU])
                .await?;
            let mut stats = running.finish_and_analyse(&window.run).await?;
            let changes = window.run.commits.len().max(1) as f64;
            let cpu = window.cpu_s.first().copied().unwrap_or_default();
            results.follow.push(Follow {
                source: source.to_owned(),
                stats: stats.remove(0),
                master_cpu_ms_per_change: cpu * 1000.0 / changes,
                master_cpu_pct: cpu * 100.0 / window.seconds.max(1e-9),
            });
        }
        master.shutdown().await;
    }
    for replicas in [1, 3] {
        let nats = if replicas == 1 {
            Nats::single().await?
        } else {
            Nats::cluster().await?
        };
        results.publish.push(publish(plan, &nats, replicas).await?);
    }
    Ok(results)
}

async fn publish(plan: &JetStreamPlan, nats: &Nats, replicas: usize) -> anyhow::Result<Publish> {
    tracing::info!(replicas, "publishing");
    let master = BenchMaster::start_with(None, Some(nats_options(nats, replicas))).await?;
    let handle = master.handle();
    let epoch = handle.epoch();
    let ids = create_lots(handle, 256).await?;
    let client = nats.client().await?;
    let first = handle.head();
    if !lotsync_tests::stream::wait_published(
        &client,
        DEFAULT_PREFIX,
        &epoch,
        first,
        Duration::from_secs(30),
    )
    .await
    {
        anyhow::bail!("the R{replicas} stream never took the first entries");
    }
    let started = Instant::now();
    let run = load::saturate(
        handle,
        &ids,
        plan.bidders,
        Duration::from_secs_f64(plan.publish_s),
        64,
    )
    .await;
    let head = handle.head();
    let committed_s = started.elapsed().as_secs_f64();
    if !lotsync_tests::stream::wait_published(
        &client,
        DEFAULT_PREFIX,
        &epoch,
        head,
        Duration::from_secs(120),
    )
    .await
    {
        anyhow::bail!("the R{replicas} stream did not take every entry");
    }
    let published_s = started.elapsed().as_secs_f64();
    let lag = lags(&client, &epoch, first + 1, head).await?;
    master.shutdown().await;
    let entries = head - first;
    let row = Publish {
        replicas,
        entries,
        entries_per_s: entries as f64 / published_s,
        commits_per_s: run.accepted as f64 / committed_s,
        lag,
    };
    tracing::info!(
        replicas,
        entries_per_s = row.entries_per_s as u64,
        lag_p99_ms = row.lag.p99,
        "published"
    );
    Ok(row)
}

/// Commit-to-stored lag of the entries `from..=to`, read back with an ordered consumer.
async fn lags(
    client: &async_nats::Client,
    epoch: &str,
    from: Seq,
    to: Seq,
) -> anyhow::Result<Percentiles> {
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(stream_name(DEFAULT_PREFIX, epoch)).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut h = histogram();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .context("reading the stream back")?
    {
        let message = message?;
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (seq, stored) = (info.stream_sequence, info.published);
        let notice: Notice = serde_json::from_slice(&message.payload)?;
        let lag_us = (stored - notice.at).num_microseconds().unwrap_or(0).max(0) as u64;
        let _ = h.record(lag_us.max(1));
        if seq >= to {
            break;
        }
    }
    Ok(Percentiles::of(&h))
}

/// The rows as Markdown.
pub fn render(plan: &JetStreamPlan, r: &JetStreamResults) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "\n## Notices on NATS JetStream\n\n{} SDK clients, {} bids/s on {} lots for {} s, the same master (publishing to an R1 stream) in both windows:\n",
        plan.subscribers, plan.rate, plan.lots, plan.follow_s
    );
    let _ = writeln!(
        w,
        "| notices from | commit to mirror p50 | p99 | all clients p99 | master CPU per change | master CPU | never reached |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for f in &r.follow {
        let _ = writeln!(
            w,
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} ms | {:.0} % | {} |",
            f.source,
            f.stats.per_subscriber.p50,
            f.stats.per_subscriber.p99,
            f.stats.all_subscribers.p99,
            f.master_cpu_ms_per_change,
            f.master_cpu_pct,
            f.stats.never_reached
        );
    }
    let _ = writeln!(
        w,
        "\nPublishing, {} closed-loop bidders for {} s:\n",
        plan.bidders, plan.publish_s
    );
    let _ = writeln!(
        w,
        "| stream | entries | published/s | committed/s | commit to stored p50 | p99 |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for p in &r.publish {
        let _ = writeln!(
            w,
            "| R{} | {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms |",
            p.replicas, p.entries, p.entries_per_s, p.commits_per_s, p.lag.p50, p.lag.p99
        );
    }
    out
}

/// What `--quick` guarantees of these rows: samples in each.
pub fn smoke_checks(r: &JetStreamResults, check: &mut impl FnMut(&str, bool)) {
    check(
        "following JetStream vs SSE",
        r.follow.len() == 2 && r.follow.iter().all(|f| f.stats.per_subscriber.count > 0),
    );
    check(
        "publishing R1 and R3",
        r.publish.len() == 2 && r.publish.iter().all(|p| p.lag.count > 0),
    );
}
