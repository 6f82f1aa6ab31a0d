//! The terminal server's [`Source`]: the notices its client relayed, in a ring, and the
//! lots in its client's mirror.
//!
//! A notice enters the ring only once the mirror holds the noticed lot at that version
//! or a newer one, and in sequence order (a later notice whose lot arrived first waits
//! for the earlier ones). So a downstream fetch with a noticed `min_seq` is answered at
//! once, and `ready` equals `head`.
//!
//! Upstream resyncs become downstream resets: a new epoch starts a new history; a
//! snapshot beyond the last notice relayed (notices nobody can replay) restarts the
//! ring there.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::mirror::Mirror;
use crate::observer::SyncObserver;
use crate::protocol::{Heartbeat, Notice, Seq, codes};
use crate::serve::{Access, ApiError, Limits, LotsRead, NoticeLog, ServeMetrics, Source};
use crate::state::ConnectionState;

/// Notices relayed but not yet in the ring (their lots are being fetched).
#[derive(Default)]
struct Pending {
    /// Highest sequence noticed in the ring's epoch.
    observed: Seq,
    queue: VecDeque<Notice>,
}

/// Everything the relay's handlers and its observer share.
pub(crate) struct Relay {
    pub log: Arc<NoticeLog>,
    /// The client's mirror, known once the client is built.
    pub mirror: OnceLock<Mirror>,
    /// The client's connection state, known once the client is built.
    pub state: OnceLock<watch::Receiver<ConnectionState>>,
    /// The server's metrics registry, known once the client is built: the client's
    /// `lotsync_*` metrics and what this server served, as `lotsync_downstream_*`.
    pub registry: OnceLock<prometheus_client::registry::Registry>,
    /// Shared with the wall display's routes, which trade a token for a cookie.
    pub access: Arc<Access>,
    pub metrics: Arc<ServeMetrics>,
    pub shutdown: CancellationToken,
    pub limits: Limits,
    pub heartbeat: Duration,
    pub fetch_wait: Duration,
    /// Highest sequence the upstream announced (notices, heartbeats).
    upstream_head: AtomicU64,
    /// The upstream's clock minus ours, from its heartbeats.
    clock_offset_us: AtomicI64,
    pending: Mutex<Pending>,
    /// Forwards bids upstream.
    pub http: reqwest::Client,
    pub upstream: String,
}

impl Relay {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        capacity: usize,
        access: Arc<Access>,
        limits: Limits,
        heartbeat: Duration,
        fetch_wait: Duration,
        http: reqwest::Client,
        upstream: String,
    ) -> Relay {
        Relay {
            // No history until the first snapshot: "" is never an epoch.
            log: Arc::new(NoticeLog::new("", capacity, 0)),
            mirror: OnceLock::new(),
            state: OnceLock::new(),
            registry: OnceLock::new(),
            access,
            metrics: Arc::default(),
            shutdown: CancellationToken::new(),
            limits,
            heartbeat,
            fetch_wait,
            upstream_head: AtomicU64::new(0),
            clock_offset_us: AtomicI64::new(0),
            pending: Mutex::new(Pending::default()),
            http,
            upstream,
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Each change is one step on a queue: a poisoned lock is still consistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move every pending notice whose lot the mirror now holds into the ring, in order.
    pub fn advance(&self) {
        let mut pending = self.pending();
        self.advance_locked(&mut pending);
    }

    fn advance_locked(&self, pending: &mut Pending) {
        let Some(mirror) = self.mirror.get() else {
            return;
        };
        let mut ready = Vec::new();
        while let Some(front) = pending.queue.front() {
            let held = mirror.get(&front.lot_id).map(|lot| lot.seq);
            if held.is_none_or(|held| held < front.seq) {
                break;
            }
            ready.extend(pending.queue.pop_front());
        }
        let Some(last) = ready.last().map(|n| n.seq) else {
            return;
        };
        if let Err(seq) = self.log.publish(ready) {
            // The client hands notices over contiguously; if not, restart the ring so
            // downstream clients resynchronise rather than miss a change.
            tracing::warn!(
                seq,
                "relayed notices are not contiguous; resetting downstream"
            );
            let epoch = self.log.epoch();
            self.log.reset(&epoch, last);
        }
        self.log.set_ready(last);
    }

    /// Whether the mirror can be served: it holds a snapshot of the ring's history.
    pub fn synced(&self) -> Option<&Mirror> {
        let mirror = self.mirror.get()?;
        let epoch = mirror.epoch()?;
        (epoch == self.log.epoch()).then_some(mirror)
    }

    /// The client's connection state.
    pub fn connection(&self) -> ConnectionState {
        self.state
            .get()
            .map_or(ConnectionState::Connecting, |s| *s.borrow())
    }
}

impl SyncObserver for Relay {
    fn resynced(&self, epoch: &str, seq: Seq, rewound: bool) {
        let mut pending = self.pending();
        if epoch != self.log.epoch() || rewound {
            // Downstream cursors beyond `seq` see the head below them and resync too.
            tracing::info!(head = seq, rewound, "following a new upstream history");
            pending.queue.clear();
            pending.observed = seq;
            self.upstream_head.store(seq, Relaxed);
            self.log.reset(epoch, seq);
            return;
        }
        // Everything noticed up to the snapshot is in the mirror now.
        self.advance_locked(&mut pending);
        if seq > pending.observed {
            // Changes between the last notice and the snapshot cannot be replayed:
            // downstream resume points before it get a reset.
            tracing::info!(
                from = pending.observed,
                to = seq,
                "upstream resync skipped notices; resetting downstream"
            );
            pending.queue.clear();
            pending.observed = seq;
            self.log.reset(epoch, seq);
        }
        self.upstream_head.fetch_max(seq, Relaxed);
    }

    fn noticed(&self, notice: Notice) {
        let mut pending = self.pending();
        if notice.seq <= pending.observed {
            // Replayed after a resync to an earlier snapshot: already relayed.
            return;
        }
        pending.observed = notice.seq;
        self.upstream_head.fetch_max(notice.seq, Relaxed);
        pending.queue.push_back(notice);
        self.advance_locked(&mut pending);
    }

    fn heartbeat(&self, heartbeat: &Heartbeat) {
        self.upstream_head.fetch_max(heartbeat.head, Relaxed);
        let offset = heartbeat.at - Utc::now();
        if let Some(us) = offset.num_microseconds() {
            self.clock_offset_us.store(us, Relaxed);
        }
    }
}

/// The handle the router holds.
#[derive(Clone)]
pub(crate) struct RelaySource(pub Arc<Relay>);

impl Source for RelaySource {
    fn log(&self) -> &Arc<NoticeLog> {
        &self.0.log
    }

    async fn lots(&self, ids: Option<Vec<String>>) -> Result<LotsRead, ApiError> {
        let relay = &self.0;
        // Read the position first: the lots read after it are at least that new.
        let (epoch, seq) = relay.log.position();
        let Some(mirror) = relay.synced() else {
            return Err(ApiError::unavailable(
                codes::NOT_SYNCED,
                "the terminal server has not synchronised with its upstream yet",
                1,
            ));
        };
        let (lots, missing) = match ids {
            None => (
                mirror.lots().iter().map(|l| (**l).clone()).collect(),
                Vec::new(),
            ),
            Some(ids) => {
                let mut lots = Vec::new();
                let mut missing = Vec::new();
                for id in ids {
                    match mirror.get(&id) {
                        Some(lot) => lots.push((*lot).clone()),
                        None => missing.push(id),
                    }
                }
                lots.sort_by(|a, b| a.id.cmp(&b.id));
                lots.dedup_by(|a, b| a.id == b.id);
                (lots, missing)
            }
        };
        Ok(LotsRead {
            epoch,
            seq,
            lots,
            missing,
        })
    }

    fn authorize(&self, parts: &Parts) -> Result<(), ApiError> {
        match self.0.access.check(&parts.headers) {
            Some(true) => Ok(()),
            Some(false) => Err(ApiError::unauthorized("unknown display token")),
            None => Err(ApiError::unauthorized("missing bearer token")),
        }
    }

    fn metrics(&self) -> &Arc<ServeMetrics> {
        &self.0.metrics
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    fn heartbeat_interval(&self) -> Duration {
        self.0.heartbeat
    }

    fn fetch_wait(&self) -> Duration {
        self.0.fetch_wait
    }

    fn limits(&self) -> &Limits {
        &self.0.limits
    }

    fn known_head(&self) -> Seq {
        self.0.upstream_head.load(Relaxed).max(self.0.log.head())
    }

    fn is_stale(&self) -> bool {
        !self.0.connection().is_live()
    }

    fn clock(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::microseconds(self.0.clock_offset_us.load(Relaxed))
    }
}
