//! The measuring engine every scenario shares: start subscriber fleets (each on its
//! own server: the master, a terminal server, nchan), wait until all are ready, drive a
//! bid load on the master, wait until the last versions arrived, and read the servers'
//! CPU time and the master's fetch count over that window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::fleet::{Fleet, FleetSpec};
use crate::load::{self, LoadRun};
use crate::master::BenchMaster;
use crate::nchan::Publisher;
use crate::procfs::Probe;
use crate::stats::{self, DesignStats};
use crate::subscriber::{Line, Mode};

/// Pause between the last subscriber being ready and the first bid.
const SETTLE: Duration = Duration::from_millis(300);

/// Longest wait for the subscribers to report the final versions after the load.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// What drives the bids of a measured scenario.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Open loop at `rate` bids per second, round-robin over the lots.
    Steady { rate: f64, seconds: f64 },
    /// Every `period`, `per_burst` bids on each of the first `hot` lots.
    Bursts {
        hot: usize,
        per_burst: usize,
        period: Duration,
        seconds: f64,
    },
}

/// A fleet and the server it subscribes to.
#[derive(Debug, Clone)]
pub struct Crew {
    /// What to start.
    pub spec: FleetSpec,
    /// Base URL of its server (for nchan, the subscribe URL).
    pub url: String,
    /// Its bearer token.
    pub token: String,
}

/// The servers' side of one measured load.
#[derive(Debug, Default)]
pub struct Window {
    /// The bids.
    pub run: LoadRun,
    /// CPU seconds used by each probe from just before the load until every
    /// subscriber held the last versions.
    pub cpu_s: Vec<f64>,
    /// CPU seconds of the subscriber processes over the same span.
    pub subscribers_cpu_s: f64,
    /// Lot fetches the master answered over the same span.
    pub master_fetches: u64,
    /// That span, seconds.
    pub seconds: f64,
}

/// Running fleets.
pub struct Crews {
    crews: Vec<Crew>,
    fleets: Vec<Fleet>,
}

impl Crews {
    /// Start every fleet and wait until each subscriber is ready.
    pub async fn start(crews: &[Crew]) -> anyhow::Result<Crews> {
        let started = std::time::Instant::now();
        let mut fleets = Vec::new();
        for crew in crews {
            fleets.push(Fleet::spawn(&crew.url, &crew.token, crew.spec).await?);
        }
        let total: u32 = crews.iter().map(|c| c.spec.subscribers).sum();
        // Thousands of raw streams connect at a few hundred per second on 2 cores.
        let timeout = Duration::from_secs(30)
            + Duration::from_millis(200) * total.min(1_000)
            + Duration::from_millis(10) * total;
        for fleet in &mut fleets {
            fleet.wait_ready(timeout).await?;
        }
        tracing::info!(subscribers = total, took = ?started.elapsed(), "subscribers ready");
        Ok(Crews {
            crews: crews.to_vec(),
            fleets,
        })
    }

    /// Drive `load` on `master` (over its lots `ids`), publishing each commit to
    /// `publisher` if given; then wait for the fleets to report the last versions.
    /// `probes` are read before and after.
    pub async fn drive(
        &mut self,
        master: &BenchMaster,
        ids: &[String],
        load: Load,
        publisher: Option<Arc<Publisher>>,
        probes: &[Probe],
    ) -> anyhow::Result<Window> {
        // Timeline, not synchronisation (readiness was awaited): the load opens SETTLE
        // after the last subscriber was ready, so start-up work stays out of it.
        tokio::time::sleep(SETTLE).await;
        let handle = master.handle();
        let fetches_before = master.fetches().await?;
        let before: Vec<_> = probes.iter().map(Probe::mark).collect();
        let readers: Vec<Probe> = self
            .fleets
            .iter()
            .flat_map(Fleet::pids)
            .map(Probe::Process)
            .collect();
        let readers_before: Vec<_> = readers.iter().map(Probe::mark).collect();
        let started = std::time::Instant::now();
        let run = match load {
            Load::Steady { rate, seconds } => {
                let duration = Duration::from_secs_f64(seconds);
                load::steady(handle, ids, rate, duration, publisher).await
            }
            Load::Bursts {
                hot,
                per_burst,
                period,
                seconds,
            } => {
                let hot = &ids[..hot.min(ids.len())];
                let duration = Duration::from_secs_f64(seconds);
                load::bursts(handle, hot, per_burst, period, duration, publisher).await
            }
        };
        self.wait_caught_up(&run).await;
        let cpu_s = probes
            .iter()
            .zip(&before)
            .map(|(p, b)| p.mark().since(b))
            .collect();
        let subscribers_cpu_s = readers
            .iter()
            .zip(&readers_before)
            .map(|(p, b)| p.mark().since(b))
            .sum();
        let seconds = started.elapsed().as_secs_f64();
        let master_fetches = master.fetches().await?.saturating_sub(fetches_before);
        tracing::info!(
            commits = run.commits.len(),
            rejected = run.rejected,
            "load done"
        );
        Ok(Window {
            run,
            cpu_s,
            subscribers_cpu_s,
            master_fetches,
            seconds,
        })
    }

    /// Wait until every subscriber reports the final committed versions, giving up
    /// when nothing arrives for longer than the slowest poll interval plus a margin
    /// (or at a hard deadline).
    async fn wait_caught_up(&mut self, run: &LoadRun) {
        let mut last: HashMap<String, u64> = HashMap::new();
        for commit in &run.commits {
            let seq = last.entry(commit.lot.clone()).or_default();
            *seq = (*seq).max(commit.seq);
        }
        let head = run.commits.iter().map(|c| c.seq).max().unwrap_or(0);
        let slowest_poll = self
            .crews
            .iter()
            .filter(|c| c.spec.mode == Mode::Poll)
            .map(|c| c.spec.interval_ms)
            .max()
            .unwrap_or(0);
        // Thousands of streams report a notice only once all of them have it.
        let many = self.crews.iter().any(|c| c.spec.mode == Mode::Streams);
        let quiet = Duration::from_millis(slowest_poll + if many { 3_000 } else { 500 });
        let deadline = tokio::time::Instant::now() + CATCH_UP_LIMIT.max(4 * quiet);
        for (fleet, crew) in self.fleets.iter_mut().zip(&self.crews) {
            let reached = match crew.spec.mode {
                Mode::Streams => fleet.wait_streams_reached(head, quiet, deadline).await,
                _ => fleet.wait_caught_up(&last, quiet, deadline).await,
            };
            if !reached {
                tracing::warn!("some subscribers did not report the final versions in time");
            }
        }
    }

    /// Stop every fleet and return all their lines.
    pub async fn finish(self) -> anyhow::Result<Vec<Line>> {
        let mut lines = Vec::new();
        for fleet in self.fleets {
            lines.extend(fleet.finish(Duration::from_secs(20)).await?.lines);
        }
        Ok(lines)
    }

    /// Stop every fleet and analyse each (not `streams` fleets: see `streams`).
    pub async fn finish_and_analyse(self, run: &LoadRun) -> anyhow::Result<Vec<DesignStats>> {
        let crews = self.crews.clone();
        let lines = self.finish().await?;
        Ok(analyse(&crews, &lines, run))
    }
}

/// Each crew's figures from `lines` against the commits of `run`.
pub fn analyse(crews: &[Crew], lines: &[Line], run: &LoadRun) -> Vec<DesignStats> {
    crews
        .iter()
        .map(|c| {
            let ids = c.spec.first_id..c.spec.first_id + c.spec.subscribers;
            stats::analyse(lines, ids, &run.commits, run.start_us, run.end_us)
        })
        .collect()
}

/// A fleet spec with the common defaults.
pub fn fleet(mode: Mode, interval_ms: u64, subscribers: u32, first_id: u32) -> FleetSpec {
    FleetSpec {
        mode,
        interval_ms,
        subscribers,
        first_id,
        inline: false,
        quickack: false,
        nats: None,
    }
}

/// A crew subscribing to the master.
pub fn on_master(master: &BenchMaster, spec: FleetSpec) -> Crew {
    Crew {
        spec,
        url: master.url().to_owned(),
        token: master.terminal_token().to_owned(),
    }
}
