//! Terminal servers at scale: one `terminal-server` process holding thousands of
//! downstream notice streams (delivery to all of them, and its memory per stream), and
//! a two-level tree (the latency each level adds).

use std::path::Path;

use lotsync_tests::create_lots;
use serde::Serialize;

use crate::fleet::FleetSpec;
use crate::load::histogram;
use crate::master::BenchMaster;
use crate::measure::{Crew, Crews, Load, Window, fleet, on_master};
use crate::relay::{DISPLAY_TOKEN, TerminalServerProcess};
use crate::stats::{DesignStats, Percentiles};
use crate::subscriber::{Line, Mode};

/// Delivery to many raw notice streams of one terminal server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delivery {
    /// Streams open.
    pub streams: u32,
    /// Commits during the load.
    pub commits: usize,
    /// Commit to arrival, every (stream, notice) pair.
    pub per_stream: Percentiles,
    /// Commit to arrival at the last of the streams, per notice.
    pub all_streams: Percentiles,
    /// (stream, notice) pairs that never arrived.
    pub never_reached: u64,
    /// CPU seconds of the terminal server over the load.
    pub server_cpu_s: f64,
    /// CPU seconds of the reader processes over the load.
    pub readers_cpu_s: f64,
    /// Seconds from the first bid until every stream had the last notice (or the wait
    /// gave up).
    pub seconds: f64,
}

/// The terminal server holding many streams.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ManyStreams {
    /// Bids per second.
    pub bid_rate: f64,
    /// Reader processes holding the streams.
    pub reader_processes: u32,
    /// Open-file limit in force for the benchmark and its children.
    pub open_files: u64,
    /// Why the limit could not be raised, if it could not.
    pub open_files_refused: Option<String>,
    /// One stream alone on the same terminal server, same load, just before.
    pub one: Delivery,
    /// All the streams.
    pub many: Delivery,
    /// Resident memory of the terminal server before the streams opened, KiB.
    pub rss_before_kib: u64,
    /// ... once every stream had its `hello`.
    pub rss_open_kib: u64,
    /// ... after the load.
    pub rss_after_kib: u64,
}

impl ManyStreams {
    /// KiB of resident memory per stream once open.
    pub fn kib_per_stream_open(&self) -> f64 {
        self.rss_open_kib.saturating_sub(self.rss_before_kib) as f64
            / f64::from(self.many.streams.max(1))
    }

    /// KiB of resident memory per stream after the load (the larger, judged figure).
    pub fn kib_per_stream(&self) -> f64 {
        let most = self.rss_open_kib.max(self.rss_after_kib);
        most.saturating_sub(self.rss_before_kib) as f64 / f64::from(self.many.streams.max(1))
    }
}

/// Sum up the `streams`-mode lines of a fleet of `streams` streams over `window`.
fn delivery(lines: &[Line], streams: u32, window: &Window) -> Delivery {
    let mut per_stream = histogram();
    let mut reached: std::collections::HashMap<u64, (u64, i64)> = Default::default();
    for line in lines {
        match line {
            Line::Latency {
                value_us, count, ..
            } => {
                let _ = per_stream.record_n(*value_us, *count);
            }
            Line::Delivered {
                seq,
                last_us,
                count,
                ..
            } => {
                let entry = reached.entry(*seq).or_default();
                entry.0 += u64::from(*count);
                entry.1 = entry.1.max(*last_us);
            }
            _ => {}
        }
    }
    let mut all = histogram();
    let mut never_reached = 0;
    for commit in &window.run.commits {
        let (count, last) = reached.get(&commit.seq).copied().unwrap_or((0, 0));
        let missing = u64::from(streams).saturating_sub(count);
        never_reached += missing;
        let until = if missing > 0 {
            window.run.end_us.max(last)
        } else {
            last
        };
        let _ = all.record((until - commit.at_us).max(0) as u64);
    }
    Delivery {
        streams,
        commits: window.run.commits.len(),
        per_stream: Percentiles::of(&per_stream),
        all_streams: Percentiles::of(&all),
        never_reached,
        server_cpu_s: window.cpu_s.first().copied().unwrap_or(0.0),
        readers_cpu_s: window.subscribers_cpu_s,
        seconds: window.seconds,
    }
}

/// Open `streams` raw notice streams on `relay`, drive `load`, sum up. `rss` is read
/// once the streams are open and after the load.
async fn streams_phase(
    master: &BenchMaster,
    ids: &[String],
    relay: &TerminalServerProcess,
    streams: u32,
    load: Load,
) -> anyhow::Result<(Delivery, u64, u64, u32)> {
    let spec = fleet(Mode::Streams, 0, streams, 0);
    let crew = Crew {
        spec,
        url: relay.url().to_owned(),
        token: DISPLAY_TOKEN.to_owned(),
    };
    let mut running = Crews::start(std::slice::from_ref(&crew)).await?;
    let rss_open = relay.rss_kib();
    let window = running
        .drive(master, ids, load, None, &[relay.cpu()])
        .await?;
    let rss_after = relay.rss_kib();
    let lines = running.finish().await?;
    Ok((
        delivery(&lines, streams, &window),
        rss_open,
        rss_after,
        spec.layout().0,
    ))
}

/// One terminal server, first with one stream, then with `streams` streams, each
/// phase under `load`.
pub async fn many_streams(
    exe: &Path,
    lots: usize,
    streams: u32,
    load: Load,
    open_files: (u64, Option<String>),
) -> anyhow::Result<ManyStreams> {
    let master = BenchMaster::start(None).await?;
    // Each phase bids on lots of its own, so the second's bids start from fresh prices.
    let ids = create_lots(master.handle(), 2 * lots).await?;
    let (first_lots, second_lots) = ids.split_at(lots);
    let relay =
        TerminalServerProcess::start(exe, master.url(), master.terminal_token(), false).await?;
    let result = async {
        tracing::info!("one stream on the terminal server");
        let (one, _, _, _) = streams_phase(&master, first_lots, &relay, 1, load).await?;
        let rss_before = relay.rss_kib();
        tracing::info!(streams, "many streams on the terminal server");
        let (many, rss_open, rss_after, processes) =
            streams_phase(&master, second_lots, &relay, streams, load).await?;
        let bid_rate = match load {
            Load::Steady { rate, .. } => rate,
            Load::Bursts { .. } => 0.0,
        };
        anyhow::Ok(ManyStreams {
            bid_rate,
            reader_processes: processes,
            open_files: open_files.0,
            open_files_refused: open_files.1.clone(),
            one,
            many,
            rss_before_kib: rss_before,
            rss_open_kib: rss_open,
            rss_after_kib: rss_after,
        })
    }
    .await;
    relay.stop().await;
    master.shutdown().await;
    result
}

/// One level of the tree.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    /// 0: displays on the master; 1: on a terminal server; 2: on a terminal server
    /// following that one.
    pub level: u32,
    /// What the displays are connected to.
    pub path: String,
    /// What they saw.
    pub stats: DesignStats,
}

/// The two-level tree, every level measured on the same bids.
#[derive(Debug, Clone, Serialize)]
pub struct Tree {
    /// Bids per second.
    pub bid_rate: f64,
    /// Displays per level.
    pub displays: u32,
    /// Levels 0, 1, 2.
    pub levels: Vec<Level>,
}

/// master -> terminal server -> terminal server (inline lots upstream), with
/// `displays` displays on each: SDK clients on the master, displays with inline lots
/// on each terminal server.
pub async fn tree(exe: &Path, lots: usize, displays: u32, load: Load) -> anyhow::Result<Tree> {
    let master = BenchMaster::start(None).await?;
    let ids = create_lots(master.handle(), lots).await?;
    let first =
        TerminalServerProcess::start(exe, master.url(), master.terminal_token(), false).await?;
    let second = TerminalServerProcess::start(exe, first.url(), DISPLAY_TOKEN, true).await;
    let result = async {
        let second = second.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let inline = |first_id, url: &str| Crew {
            spec: FleetSpec {
                inline: true,
                ..fleet(Mode::Notify, 0, displays, first_id)
            },
            url: url.to_owned(),
            token: DISPLAY_TOKEN.to_owned(),
        };
        let crews = [
            on_master(&master, fleet(Mode::Notify, 0, displays, 0)),
            inline(displays, first.url()),
            inline(2 * displays, second.url()),
        ];
        let mut running = Crews::start(&crews).await?;
        let window = running.drive(&master, &ids, load, None, &[]).await?;
        let stats = running.finish_and_analyse(&window.run).await?;
        let paths = [
            "master",
            "master -> terminal server",
            "master -> terminal server -> terminal server",
        ];
        let seconds = ((window.run.end_us - window.run.start_us) as f64 / 1e6).max(1e-3);
        anyhow::Ok(Tree {
            bid_rate: window.run.commits.len() as f64 / seconds,
            displays,
            levels: stats
                .into_iter()
                .zip(paths)
                .enumerate()
                .map(|(level, (stats, path))| Level {
                    level: level as u32,
                    path: path.to_owned(),
                    stats,
                })
                .collect(),
        })
    }
    .await;
    if let Ok(second) = second {
        second.stop().await;
    }
    first.stop().await;
    master.shutdown().await;
    result
}
