//! The scenarios with terminal servers and peer designs: their plan, results and run.
//!
//! - Side by side (see `peers`): lotsync direct, through one terminal server, nchan
//!   (two socket settings) and polling, at the busy rate, at 200 subscribers, and in
//!   bursts.
//! - One terminal server holding thousands of notice streams (see `relayed`).
//! - A two-level tree of terminal servers.
//!
//! Rows whose server is missing (no `terminal-server` binary, no nginx with nchan)
//! are skipped with the reason; the rest run.

use std::path::Path;

use serde::Serialize;

use crate::measure::Load;
use crate::peers::{self, Design, PeerSet, Setup};
use crate::relayed::{ManyStreams, Tree};
use crate::{nchan, procfs, relay};

/// Sizes and durations of these scenarios.
#[derive(Debug, Clone, Serialize)]
pub struct ServersPlan {
    /// Duration of each design at the busy rate.
    pub peer_s: f64,
    /// Subscribers in the wide comparison (at the fan-out rate).
    pub wide_subscribers: u32,
    /// Duration of each design in the wide comparison.
    pub wide_s: f64,
    /// Duration of each design under bursts.
    pub peer_burst_s: f64,
    /// Notice streams held by one terminal server.
    pub streams: u32,
    /// Bid rate while they are held.
    pub streams_rate: f64,
    /// Duration of each phase (one stream, then all).
    pub streams_s: f64,
    /// Displays per level of the tree.
    pub tree_displays: u32,
    /// Bid rate in the tree.
    pub tree_rate: f64,
    /// Duration of the tree run.
    pub tree_s: f64,
}

impl ServersPlan {
    /// The full run (about three minutes on 2 cores).
    pub fn full() -> ServersPlan {
        ServersPlan {
            peer_s: 10.0,
            wide_subscribers: 200,
            wide_s: 8.0,
            peer_burst_s: 8.0,
            streams: 10_000,
            streams_rate: 10.0,
            streams_s: 10.0,
            tree_displays: 5,
            tree_rate: 20.0,
            tree_s: 10.0,
        }
    }

    /// The smoke version: a couple of seconds per design.
    pub fn quick() -> ServersPlan {
        ServersPlan {
            peer_s: 2.0,
            wide_subscribers: 10,
            wide_s: 2.0,
            peer_burst_s: 2.0,
            streams: 200,
            streams_rate: 10.0,
            streams_s: 2.0,
            tree_displays: 2,
            tree_rate: 20.0,
            tree_s: 2.0,
        }
    }
}

/// What these scenarios measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServersResults {
    /// Every design at the busy rate with the latency scenario's subscriber count.
    pub busy: Option<PeerSet>,
    /// Through a terminal server and nchan with many subscribers, at the fan-out rate.
    pub wide: Option<PeerSet>,
    /// Every push design under the burst load.
    pub bursts: Option<PeerSet>,
    /// One terminal server holding many streams.
    pub streams: Option<ManyStreams>,
    /// The two-level tree.
    pub tree: Option<Tree>,
    /// What was skipped, and why.
    pub skipped: Vec<String>,
}

/// The parameters shared with the rest of the run.
pub struct Shared {
    /// Lots bid on in the steady scenarios.
    pub lots: usize,
    /// Subscribers at the busy rate and its rate.
    pub subscribers: u32,
    /// The busy bid rate.
    pub busy_rate: f64,
    /// The fan-out bid rate.
    pub fanout_rate: f64,
    /// Subscribers under bursts.
    pub burst_subscribers: u32,
    /// The burst load (its duration is replaced).
    pub bursts: Load,
}

/// Run every scenario of `plan`; `open_files` is the raised limit (and why not, if
/// refused).
pub async fn run(
    plan: &ServersPlan,
    shared: &Shared,
    scratch: &Path,
    open_files: (u64, Option<String>),
) -> anyhow::Result<ServersResults> {
    let mut results = ServersResults::default();
    let exe = relay::binary().await;
    let relay_why = exe
        .as_ref()
        .err()
        .map(|e| format!("terminal-server rows skipped: {e:#}"));
    let nchan_why = nchan::unavailable();
    results.skipped.extend(relay_why.clone());
    results.skipped.extend(nchan_why.clone());
    for why in &results.skipped {
        tracing::warn!("{why}");
    }
    let setup = Setup {
        relay_exe: match (&exe, &relay_why) {
            (Ok(path), _) => Ok(path.as_path()),
            (Err(_), why) => Err(why.as_deref().unwrap_or("no terminal-server")),
        },
        nchan: nchan_why.as_deref().map_or(Ok(()), Err),
        scratch,
        lots: shared.lots,
    };

    use Design::*;
    results.busy = Some(
        peers::compare(
            &setup,
            "steady",
            &[Direct, Relay, RelayInline, Nchan, NchanQuickAck, Poll1s],
            shared.subscribers,
            Load::Steady {
                rate: shared.busy_rate,
                seconds: plan.peer_s,
            },
        )
        .await?,
    );
    results.wide = Some(
        peers::compare(
            &setup,
            "fan-out",
            &[Relay, RelayInline, Nchan, NchanQuickAck],
            plan.wide_subscribers,
            Load::Steady {
                rate: shared.fanout_rate,
                seconds: plan.wide_s,
            },
        )
        .await?,
    );
    let bursts = match shared.bursts {
        Load::Bursts {
            hot,
            per_burst,
            period,
            ..
        } => Load::Bursts {
            hot,
            per_burst,
            period,
            seconds: plan.peer_burst_s,
        },
        steady => steady,
    };
    results.bursts = Some(
        peers::compare(
            &setup,
            "bursts",
            &[Direct, Relay, RelayInline, Nchan, NchanQuickAck],
            shared.burst_subscribers,
            bursts,
        )
        .await?,
    );

    let Ok(exe) = exe else {
        return Ok(results);
    };
    // The terminal server needs a descriptor per stream, plus its own few.
    let room = open_files.0.saturating_sub(256).min(u64::from(u32::MAX)) as u32;
    let streams = plan.streams.min(room.max(1));
    if streams < plan.streams {
        results.skipped.push(format!(
            "only {streams} of {} streams: the open-file limit is {}",
            plan.streams, open_files.0
        ));
    }
    let steady = |rate, seconds| Load::Steady { rate, seconds };
    crate::stage(format!("one terminal server, {streams} streams"));
    tracing::info!(streams, "one terminal server, many streams");
    results.streams = Some(
        crate::relayed::many_streams(
            &exe,
            shared.lots,
            streams,
            steady(plan.streams_rate, plan.streams_s),
            open_files,
        )
        .await?,
    );
    crate::stage("two-level tree");
    tracing::info!(displays = plan.tree_displays, "two-level tree");
    results.tree = Some(
        crate::relayed::tree(
            &exe,
            shared.lots,
            plan.tree_displays,
            steady(plan.tree_rate, plan.tree_s),
        )
        .await?,
    );
    Ok(results)
}

/// Raise the open-file limit for the many-streams scenario (children inherit it).
pub fn raise_open_files() -> (u64, Option<String>) {
    let (limit, refused) = procfs::raise_open_files();
    match &refused {
        Some(why) => tracing::warn!(limit, "{why}"),
        None => tracing::info!(limit, "open-file limit"),
    }
    (limit, refused)
}
