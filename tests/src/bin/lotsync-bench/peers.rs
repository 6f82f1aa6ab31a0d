//! Designs side by side under the same load: lotsync direct (every subscriber a
//! terminal server on the master), lotsync through one terminal server (subscribers are
//! its displays, with inline lots), nchan carrying the data (with default sockets and
//! with quick-ACK readers), and polling. Each design runs alone on a fresh master with
//! the same bid schedule, so its servers' CPU time is its own.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lotsync_tests::create_lots;
use serde::Serialize;

use crate::master::{self, BenchMaster};
use crate::measure::{Crew, Crews, Load, fleet, on_master};
use crate::nchan::{Nchan, Publisher};
use crate::relay::{DISPLAY_TOKEN, TerminalServerProcess};
use crate::stats::{DesignStats, Percentiles};
use crate::subscriber::Mode;

/// One design of a side-by-side comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Design {
    /// Every subscriber a terminal server (the SDK) on the master.
    Direct,
    /// Subscribers are displays of one terminal server, with inline lots; the terminal
    /// server fetches each change from the master (its default).
    Relay,
    /// The same, the terminal server also asking the master for inline lots (no fetch
    /// on either hop).
    RelayInline,
    /// nchan carrying each committed lot; readers with default socket settings.
    Nchan,
    /// nchan, readers acknowledging every read at once (TCP_QUICKACK).
    NchanQuickAck,
    /// Every subscriber polls every lot every second.
    Poll1s,
}

impl Design {
    /// Its name in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Design::Direct => "lotsync, direct on the master",
            Design::Relay => "lotsync, through one terminal server (inline lots)",
            Design::RelayInline => "lotsync, through one terminal server, inline lots on both hops",
            Design::Nchan => "nchan, default sockets (what a browser gets)",
            Design::NchanQuickAck => "nchan, readers with TCP_QUICKACK",
            Design::Poll1s => "polling every 1 s",
        }
    }

    fn is_nchan(self) -> bool {
        matches!(self, Design::Nchan | Design::NchanQuickAck)
    }
}

/// What one design did.
#[derive(Debug, Clone, Serialize)]
pub struct DesignRun {
    /// Which design.
    pub design: Design,
    /// Latency, staleness, requests as seen by the subscribers.
    pub stats: DesignStats,
    /// CPU seconds of the design's server side over the load and its catch-up: the
    /// master (plus the terminal server) for lotsync and polling, nginx for nchan.
    pub server_cpu_s: f64,
    /// CPU seconds of the master alone (for nchan: only committing the bids).
    pub master_cpu_s: f64,
    /// (subscriber, commit) pairs that reached the subscriber.
    pub deliveries: u64,
    /// `server_cpu_s` per 1,000 deliveries.
    pub cpu_s_per_1000: f64,
    /// Lot fetches (and polls) the master answered per second.
    pub master_fetches_per_s: f64,
    /// The same per commit.
    pub master_fetches_per_commit: f64,
    /// Publishes nchan refused (nchan designs).
    pub publish_failures: u64,
    /// Time of each publish (POST to nchan, until answered), nchan designs.
    pub publish: Percentiles,
}

/// A comparison at one load.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSet {
    /// What the load was, in words.
    pub load: String,
    /// Subscribers per design.
    pub subscribers: u32,
    /// Bids committed per second over the run.
    pub bid_rate: f64,
    /// Each design that ran.
    pub designs: Vec<DesignRun>,
}

impl PeerSet {
    /// The run of `design`, if it ran.
    pub fn get(&self, design: Design) -> Option<&DesignRun> {
        self.designs.iter().find(|d| d.design == design)
    }
}

/// The servers a design needs, started for one run.
struct Servers {
    relay: Option<TerminalServerProcess>,
    nchan: Option<Nchan>,
}

impl Servers {
    async fn stop(self) {
        if let Some(relay) = self.relay {
            relay.stop().await;
        }
        if let Some(nchan) = self.nchan {
            nchan.stop().await;
        }
    }
}

/// Where the comparisons run.
pub struct Setup<'a> {
    /// The `terminal-server` binary, or why there is none.
    pub relay_exe: Result<&'a Path, &'a str>,
    /// Whether nginx with nchan is installed (else why not).
    pub nchan: Result<(), &'a str>,
    /// Scratch directory for nginx's files.
    pub scratch: &'a Path,
    /// Lots bid on.
    pub lots: usize,
}

/// Run `designs` one after the other, `subscribers` each, under `load`. A design whose
/// server is missing is skipped (and said so); the others run.
pub async fn compare(
    setup: &Setup<'_>,
    name: &str,
    designs: &[Design],
    subscribers: u32,
    load: Load,
) -> anyhow::Result<PeerSet> {
    let mut set = PeerSet {
        load: name.to_owned(),
        subscribers,
        bid_rate: 0.0,
        designs: Vec::new(),
    };
    for &design in designs {
        let skip = match (design, &setup.relay_exe, &setup.nchan) {
            (Design::Relay | Design::RelayInline, Err(why), _) => Some(*why),
            (d, _, Err(why)) if d.is_nchan() => Some(*why),
            _ => None,
        };
        if let Some(why) = skip {
            tracing::warn!(design = design.label(), "skipped: {why}");
            continue;
        }
        tracing::info!(
            design = design.label(),
            subscribers,
            load = name,
            "side by side"
        );
        let (run, rate) = run_design(setup, design, subscribers, load)
            .await
            .with_context(|| format!("{} ({name})", design.label()))?;
        set.bid_rate = rate;
        set.designs.push(run);
    }
    Ok(set)
}

async fn run_design(
    setup: &Setup<'_>,
    design: Design,
    subscribers: u32,
    load: Load,
) -> anyhow::Result<(DesignRun, f64)> {
    let master = BenchMaster::start(None).await?;
    let handle = master.handle();
    let ids = create_lots(handle, setup.lots).await?;
    let mut servers = Servers {
        relay: None,
        nchan: None,
    };
    let mut publisher = None;
    let spec = fleet(Mode::Notify, 0, subscribers, 0);
    let mut probes = vec![master::CPU];
    let crew = match design {
        Design::Direct => on_master(&master, spec),
        Design::Poll1s => on_master(&master, fleet(Mode::Poll, 1000, subscribers, 0)),
        Design::Relay | Design::RelayInline => {
            let exe = setup.relay_exe.map_err(|why| anyhow::anyhow!("{why}"))?;
            let inline = design == Design::RelayInline;
            let (url, token) = (master.url(), master.terminal_token());
            let relay = TerminalServerProcess::start(exe, url, token, inline).await?;
            probes.push(relay.cpu());
            let crew = Crew {
                spec: crate::fleet::FleetSpec {
                    inline: true,
                    ..spec
                },
                url: relay.url().to_owned(),
                token: DISPLAY_TOKEN.to_owned(),
            };
            servers.relay = Some(relay);
            crew
        }
        Design::Nchan | Design::NchanQuickAck => {
            let nchan = Nchan::start(setup.scratch).await?;
            probes.push(nchan.cpu());
            let head = handle.head();
            if !handle.wait_replicated(head, Duration::from_secs(10)).await {
                anyhow::bail!("the replica did not catch up before the load");
            }
            let lots = handle.replica_lots().await?;
            publisher = Some(Arc::new(Publisher::new(nchan.publish_url(), lots)?));
            let crew = Crew {
                spec: crate::fleet::FleetSpec {
                    mode: Mode::Nchan,
                    quickack: design == Design::NchanQuickAck,
                    nats: None,
                    ..spec
                },
                url: nchan.subscribe_url(),
                token: String::new(),
            };
            servers.nchan = Some(nchan);
            crew
        }
    };
    let result = async {
        let mut running = Crews::start(std::slice::from_ref(&crew)).await?;
        let window = running
            .drive(&master, &ids, load, publisher.clone(), &probes)
            .await?;
        let stats = running.finish_and_analyse(&window.run).await?.remove(0);
        anyhow::Ok((window, stats))
    }
    .await;
    servers.stop().await;
    master.shutdown().await;
    let (window, stats) = result?;

    let master_cpu_s = window.cpu_s[0];
    let server_cpu_s = if design.is_nchan() {
        window.cpu_s[1]
    } else {
        window.cpu_s.iter().sum()
    };
    let pairs = stats.commits as u64 * stats.subscribers as u64;
    let deliveries = pairs.saturating_sub(stats.never_reached);
    let commits = window.run.commits.len().max(1) as f64;
    let run_s = ((window.run.end_us - window.run.start_us) as f64 / 1e6).max(1e-3);
    let run = DesignRun {
        design,
        server_cpu_s,
        master_cpu_s,
        deliveries,
        cpu_s_per_1000: server_cpu_s * 1000.0 / deliveries.max(1) as f64,
        master_fetches_per_s: window.master_fetches as f64 / window.seconds.max(1e-3),
        master_fetches_per_commit: window.master_fetches as f64 / commits,
        publish_failures: publisher.as_ref().map_or(0, |p| p.failed()),
        publish: publisher.map_or_else(Percentiles::default, |p| p.times()),
        stats,
    };
    Ok((run, window.run.commits.len() as f64 / run_s))
}
