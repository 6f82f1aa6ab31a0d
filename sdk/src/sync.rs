//! The task that owns the connection to the master: list, then watch.
//!
//! It loads a snapshot (consistent as of sequence S), subscribes to notices after S,
//! and keeps a cursor: the highest sequence up to which every notice was seen. A jump
//! in sequence, or a heartbeat whose head is beyond the cursor, means notices were
//! missed; they are caught up from the master's change log. A `reset` event, a new
//! epoch or a change log that no longer reaches back triggers a resync from a snapshot
//! while the mirror keeps showing its data, marked stale. The loop ends only on
//! shutdown: every error leads to a jittered reconnect that resumes with
//! `Last-Event-ID`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_client::{self as es, Client as _, SSE};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::Api;
use crate::backoff;
use crate::error::FetchError;
use crate::fetcher::DirtySet;
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::options::Options;
use crate::protocol::{
    ChangesResponse, EVENT_HEARTBEAT, EVENT_HELLO, EVENT_NOTICE, EVENT_RESET, Heartbeat, Hello,
    Notice, Reset, Seq, validate_lot_id,
};
use crate::state::{ConnectionState, StatePublisher};
use crate::transport::ReqwestTransport;

#[cfg(feature = "jetstream")]
mod jetstream;

/// Resyncs one catch-up may need before it gives up and reconnects (each resync
/// normally lands within the retained log; more means the log is pruned faster than
/// a snapshot can be read).
const MAX_RESYNCS_PER_CATCH_UP: u32 = 3;

/// Before the master has announced its heartbeat interval.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a stream connection ended.
#[derive(Debug)]
enum Ended {
    Shutdown,
    Reconnect(String),
}

pub(crate) struct SyncTask {
    pub api: Api,
    pub transport: ReqwestTransport,
    pub mirror: Mirror,
    pub dirty: Arc<DirtySet>,
    pub metrics: Arc<Metrics>,
    pub options: Options,
    pub state: Arc<StatePublisher>,
    pub synced: watch::Sender<bool>,
    pub cancel: CancellationToken,
    /// Epoch of the history the cursor belongs to.
    epoch: Option<String>,
    /// Every notice up to here has been seen (or caught up).
    cursor: Seq,
    need_snapshot: bool,
    /// Failed connection attempts since the last healthy stream.
    attempt: u32,
    /// When the stream went down (None while connected).
    down_since: Option<Instant>,
    idle_timeout: Duration,
    /// Since when the upstream (a terminal server) has said its data is stale.
    upstream_stale_since: Option<Instant>,
    /// This connection's `hello` announced a new epoch and a snapshot of it was loaded:
    /// the `reset` that follows needs no second snapshot.
    resynced_on_hello: bool,
    /// The upstream's head went below the cursor within one epoch (a restored backup,
    /// a promoted standby): the next snapshot, if it trails the cursor too, replaces
    /// the mirror instead of merging into it.
    suspect_rewind: bool,
}

impl SyncTask {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        api: Api,
        transport: ReqwestTransport,
        mirror: Mirror,
        dirty: Arc<DirtySet>,
        metrics: Arc<Metrics>,
        options: Options,
        state: Arc<StatePublisher>,
        synced: watch::Sender<bool>,
        cancel: CancellationToken,
    ) -> Self {
        let idle_timeout = options.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
        SyncTask {
            api,
            transport,
            mirror,
            dirty,
            metrics,
            options,
            state,
            synced,
            cancel,
            epoch: None,
            cursor: 0,
            need_snapshot: true,
            attempt: 0,
            down_since: None,
            idle_timeout,
            upstream_stale_since: None,
            resynced_on_hello: false,
            suspect_rewind: false,
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.state.set_stream(state);
    }

    pub async fn run(mut self) {
        self.set_state(ConnectionState::Connecting);
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            if self.need_snapshot {
                match self.resync().await {
                    Ok(()) => {}
                    Err(error) => {
                        warn!(%error, "snapshot failed");
                        if !self.wait_before_retry().await {
                            break;
                        }
                        continue;
                    }
                }
            }
            match self.stream_once().await {
                Ended::Shutdown => break,
                Ended::Reconnect(reason) => {
                    info!(%reason, cursor = self.cursor, "notice stream ended; reconnecting");
                    Metrics::inc(&self.metrics.reconnects);
                    if !self.wait_before_retry().await {
                        break;
                    }
                }
            }
        }
        self.set_state(ConnectionState::Closed);
    }

    /// Load a snapshot into the mirror. The mirror keeps showing meanwhile.
    async fn resync(&mut self) -> Result<(), FetchError> {
        if *self.synced.borrow() {
            self.set_state(ConnectionState::Syncing);
        }
        let snapshot = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(()),
            snapshot = self.api.snapshot() => snapshot?,
        };
        if let Some(bad) = snapshot
            .lots
            .iter()
            .find(|lot| validate_lot_id(&lot.id).is_err())
        {
            Metrics::inc(&self.metrics.malformed_events);
            return Err(FetchError::Malformed(format!(
                "snapshot holds an invalid lot id {:?}",
                bad.id
            )));
        }
        let epoch = snapshot.epoch.clone();
        let same_epoch = self.epoch.as_deref() == Some(epoch.as_str());
        // A head below the cursor was only a trailing server if the snapshot has
        // caught up; one still short of what was seen is a history that lost it.
        let rewound =
            std::mem::take(&mut self.suspect_rewind) && same_epoch && snapshot.seq < self.cursor;
        if rewound {
            warn!(
                cursor = self.cursor,
                head = snapshot.seq,
                "the history was rewound under the same epoch; replacing the mirror"
            );
        }
        let epoch_changed = self
            .mirror
            .resync(&epoch, snapshot.seq, snapshot.lots, rewound);
        if epoch_changed || !same_epoch {
            // Sequences of another history mean nothing here.
            self.dirty.clear();
        }
        if let Some(observer) = &self.options.observer {
            observer.resynced(&epoch, snapshot.seq, rewound);
        }
        self.epoch = Some(epoch);
        self.cursor = snapshot.seq;
        self.need_snapshot = false;
        // The master answers in full again, whatever fetches said before.
        self.state.fetch_succeeded();
        Metrics::inc(&self.metrics.resyncs);
        self.synced.send_replace(true);
        info!(
            seq = self.cursor,
            lots = self.mirror.len(),
            epoch_changed,
            "snapshot loaded"
        );
        Ok(())
    }

    /// Sleep a jittered backoff; the state turns stale once down long enough.
    /// Returns false on shutdown.
    async fn wait_before_retry(&mut self) -> bool {
        let since = *self.down_since.get_or_insert_with(Instant::now);
        self.attempt = self.attempt.saturating_add(1);
        let delay = backoff::jittered(
            self.attempt - 1,
            self.options.reconnect_base,
            self.options.reconnect_max,
        );
        let wake = tokio::time::Instant::now() + delay;
        let stale_at = tokio::time::Instant::from_std(since + self.options.stale_after);
        loop {
            let stale = tokio::time::Instant::now() >= stale_at;
            self.set_state(if stale {
                ConnectionState::Stale { since }
            } else {
                ConnectionState::Reconnecting {
                    attempt: self.attempt,
                    since,
                }
            });
            let until = if stale { wake } else { wake.min(stale_at) };
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => {}
            }
            if tokio::time::Instant::now() >= wake {
                return true;
            }
        }
    }

    /// One connection of the notice stream, until it ends.
    async fn stream_once(&mut self) -> Ended {
        self.resynced_on_hello = false;
        #[cfg(feature = "jetstream")]
        if let Some(source) = self.options.jetstream.clone() {
            return self.follow_jetstream(&source).await;
        }
        let client = match self.connect() {
            Ok(client) => client,
            Err(error) => {
                return Ended::Reconnect(format!("cannot build the stream request: {error}"));
            }
        };
        let mut stream = client.stream();
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return Ended::Shutdown,
                next = tokio::time::timeout(self.idle_timeout, stream.next()) => next,
            };
            let item = match next {
                Err(_) => {
                    return Ended::Reconnect(format!(
                        "nothing received for {:?}",
                        self.idle_timeout
                    ));
                }
                Ok(None) => return Ended::Reconnect("stream closed".into()),
                Ok(Some(item)) => item,
            };
            match item {
                Ok(SSE::Connected(details)) => {
                    let content_type = details
                        .response()
                        .get_header_value("content-type")
                        .ok()
                        .flatten()
                        .unwrap_or("")
                        .to_owned();
                    if !content_type.starts_with("text/event-stream") {
                        Metrics::inc(&self.metrics.malformed_events);
                        return Ended::Reconnect(format!("not an event stream: {content_type:?}"));
                    }
                }
                Ok(SSE::Comment(_)) => {}
                Ok(SSE::Event(event)) => {
                    if let Err(reason) = self.handle_event(event).await {
                        return reason;
                    }
                }
                Err(error) => {
                    if matches!(error, es::Error::InvalidLine(_) | es::Error::InvalidEvent) {
                        Metrics::inc(&self.metrics.malformed_events);
                    }
                    if let es::Error::Transport(ref e) = error
                        && e.to_string().contains("exceeded")
                    {
                        Metrics::inc(&self.metrics.malformed_events);
                    }
                    return Ended::Reconnect(describe(&error));
                }
            }
        }
    }

    fn connect(&self) -> Result<impl es::Client + use<>, es::Error> {
        let url = self.api.notices_url(self.epoch.as_deref());
        let mut builder = es::ClientBuilder::for_url(&url)?
            .header("Accept", "text/event-stream")?
            // We reconnect ourselves: jittered backoff, a fresh cursor, a stale state.
            .reconnect(es::ReconnectOptions::reconnect(false).build());
        if let Some(bearer) = self.api.bearer() {
            builder = builder.header("Authorization", &bearer)?;
        }
        // Always a resume point, even 0: without one the master starts live from its
        // head and whatever happened since the snapshot would need a catch-up.
        builder = builder.last_event_id(self.cursor.to_string());
        Ok(builder.build_with_transport(self.transport.clone()))
    }

    async fn handle_event(&mut self, event: es::Event) -> Result<(), Ended> {
        match event.event_type.as_str() {
            EVENT_NOTICE => {
                let Some(notice) = self.parse::<Notice>(&event.data) else {
                    return Ok(());
                };
                let id_matches = event
                    .id
                    .as_deref()
                    .is_none_or(|id| id == notice.seq.to_string());
                if !id_matches || validate_lot_id(&notice.lot_id).is_err() {
                    Metrics::inc(&self.metrics.malformed_events);
                    warn!(id = ?event.id, "notice with a bad id or lot id ignored");
                    return Ok(());
                }
                self.on_notice(notice).await
            }
            EVENT_HEARTBEAT => {
                let Some(heartbeat) = self.parse::<Heartbeat>(&event.data) else {
                    return Ok(());
                };
                Metrics::inc(&self.metrics.heartbeats);
                if let Some(observer) = &self.options.observer {
                    observer.heartbeat(&heartbeat);
                }
                // A terminal server cut off from its upstream says so: what it serves,
                // and so this mirror, may be old.
                match (heartbeat.stale, self.upstream_stale_since) {
                    (true, None) => {
                        let since = Instant::now();
                        self.upstream_stale_since = Some(since);
                        self.set_state(ConnectionState::Stale { since });
                    }
                    (false, Some(_)) => {
                        self.upstream_stale_since = None;
                        self.set_state(ConnectionState::Live);
                    }
                    _ => {}
                }
                // A full heartbeat interval on this stream: the connection is healthy.
                self.attempt = 0;
                if self.epoch.as_deref() != Some(heartbeat.epoch.as_str()) {
                    info!("heartbeat from a new epoch; resynchronising");
                    return self.resync_inline().await;
                }
                if heartbeat.head < self.cursor {
                    return self.on_rewind(heartbeat.head).await;
                }
                if heartbeat.head > self.cursor {
                    Metrics::inc(&self.metrics.gaps);
                    debug!(
                        head = heartbeat.head,
                        cursor = self.cursor,
                        "heartbeat ahead of notices; catching up"
                    );
                    return self.catch_up(heartbeat.head).await;
                }
                Ok(())
            }
            EVENT_HELLO => {
                let Some(hello) = self.parse::<Hello>(&event.data) else {
                    return Ok(());
                };
                if self.options.idle_timeout.is_none() && hello.heartbeat_ms > 0 {
                    self.idle_timeout = Duration::from_millis(hello.heartbeat_ms.saturating_mul(3))
                        .max(Duration::from_millis(300));
                }
                self.down_since = None;
                self.upstream_stale_since = None;
                self.set_state(ConnectionState::Live);
                if self.epoch.as_deref() != Some(hello.epoch.as_str()) {
                    info!("master has a new epoch; resynchronising");
                    self.resync_inline().await?;
                    self.resynced_on_hello = true;
                    return Ok(());
                }
                if hello.head < self.cursor {
                    self.on_rewind(hello.head).await?;
                    self.resynced_on_hello = true;
                }
                Ok(())
            }
            EVENT_RESET => {
                let Some(reset) = self.parse::<Reset>(&event.data) else {
                    return Ok(());
                };
                let same_history = self.epoch.as_deref() == Some(reset.epoch.as_str());
                if same_history && self.resynced_on_hello {
                    // The snapshot this connection's `hello` triggered is of this very
                    // history: one snapshot per epoch change, not two. Notices between
                    // it and the stream's restart point come from the change log (which
                    // falls back to a snapshot when it does not reach back).
                    debug!(reason = %reset.reason, head = reset.head, "reset after a fresh snapshot; catching up");
                    self.resynced_on_hello = false;
                    return self.catch_up(reset.head).await;
                }
                if same_history && reset.head < self.cursor {
                    return self.on_rewind(reset.head).await;
                }
                info!(reason = %reset.reason, head = reset.head, "master asked for a resync");
                self.resync_inline().await
            }
            other => {
                Metrics::inc(&self.metrics.malformed_events);
                debug!(event = %other.escape_default(), "unknown event type ignored");
                Ok(())
            }
        }
    }

    async fn on_notice(&mut self, notice: Notice) -> Result<(), Ended> {
        Metrics::inc(&self.metrics.notices);
        self.resynced_on_hello = false;
        if notice.seq <= self.cursor {
            Metrics::inc(&self.metrics.duplicate_notices);
            return Ok(());
        }
        if notice.seq > self.cursor + 1 {
            Metrics::inc(&self.metrics.gaps);
            debug!(
                seq = notice.seq,
                cursor = self.cursor,
                "sequence jumped; catching up"
            );
            self.catch_up(notice.seq - 1).await?;
            if notice.seq <= self.cursor {
                return Ok(());
            }
            if notice.seq > self.cursor + 1 {
                // The gap could not be bridged (the history changed under us): resume
                // from the cursor and let the master replay or reset. Moving the cursor
                // past the gap would lose whatever changed inside it.
                return Err(Ended::Reconnect(format!(
                    "could not catch up from {} to {}",
                    self.cursor,
                    notice.seq - 1
                )));
            }
        }
        self.mark(notice);
        Ok(())
    }

    /// Record a notice the cursor accepted: its lot becomes dirty (or, with an inline
    /// lot at that version, goes into the mirror at once).
    fn mark(&mut self, mut notice: Notice) {
        let inline = notice
            .lot
            .take()
            .filter(|lot| lot.id == notice.lot_id && lot.seq >= notice.seq);
        let seq = notice.seq;
        match inline {
            Some(lot) => {
                Metrics::inc(&self.metrics.inline_lots);
                let epoch = self.epoch.clone().unwrap_or_default();
                self.mirror.apply(&epoch, *lot);
            }
            None => {
                if !self.dirty.mark(&notice.lot_id, seq, Instant::now()) {
                    Metrics::inc(&self.metrics.coalesced_notices);
                }
            }
        }
        self.cursor = seq;
        if let Some(observer) = &self.options.observer {
            observer.noticed(notice);
        }
    }

    /// Read the change log from the cursor up to `target`; a log that no longer reaches
    /// back means a resync.
    async fn catch_up(&mut self, target: Seq) -> Result<(), Ended> {
        Metrics::inc(&self.metrics.catchups);
        let epoch = self.epoch.clone();
        // A resync moves the cursor to the snapshot's sequence, which may still be
        // short of the target: keep catching up from there, a bounded number of times.
        let mut resyncs = 0;
        while self.cursor < target {
            if resyncs > MAX_RESYNCS_PER_CATCH_UP {
                return Err(Ended::Reconnect(format!(
                    "catch-up to {target} needed more than {MAX_RESYNCS_PER_CATCH_UP} resyncs"
                )));
            }
            let page = tokio::select! {
                _ = self.cancel.cancelled() => return Err(Ended::Shutdown),
                page = self.api.changes(self.cursor) => page,
            };
            let page: ChangesResponse = match page {
                Ok(page) => page,
                Err(FetchError::HistoryTruncated) => {
                    resyncs += 1;
                    self.resync_inline().await?;
                    continue;
                }
                // Reconnecting resumes from the cursor, which replays the missed notices.
                Err(error) => return Err(Ended::Reconnect(format!("catch-up failed: {error}"))),
            };
            if self.epoch.as_deref() != Some(page.epoch.as_str()) {
                resyncs += 1;
                self.resync_inline().await?;
                if self.epoch != epoch {
                    // A new history: the target belongs to the old one.
                    return Ok(());
                }
                continue;
            }
            if page.changes.is_empty() {
                break;
            }
            for change in page.changes {
                if change.seq != self.cursor + 1 || validate_lot_id(&change.lot_id).is_err() {
                    Metrics::inc(&self.metrics.malformed_events);
                    warn!(
                        seq = change.seq,
                        cursor = self.cursor,
                        "change log not contiguous; resynchronising"
                    );
                    resyncs += 1;
                    self.resync_inline().await?;
                    break;
                }
                self.mark(change);
            }
        }
        Ok(())
    }

    /// The upstream's head is below what this client has seen, within one epoch:
    /// either its history was rewound or it is a server that trails the one this
    /// client followed before. A snapshot tells which (see [`SyncTask::resync`]).
    async fn on_rewind(&mut self, head: Seq) -> Result<(), Ended> {
        info!(
            head,
            cursor = self.cursor,
            "head below the cursor; resynchronising"
        );
        self.suspect_rewind = true;
        self.resync_inline().await
    }

    /// Resync without dropping the stream: notices keep buffering in the connection
    /// meanwhile, and the cursor logic catches whatever falls between.
    async fn resync_inline(&mut self) -> Result<(), Ended> {
        match self.resync().await {
            Ok(()) => {
                if self.cancel.is_cancelled() {
                    return Err(Ended::Shutdown);
                }
                self.set_state(match self.upstream_stale_since {
                    Some(since) => ConnectionState::Stale { since },
                    None => ConnectionState::Live,
                });
                Ok(())
            }
            Err(error) => {
                self.need_snapshot = true;
                Err(Ended::Reconnect(format!("resync failed: {error}")))
            }
        }
    }

    fn parse<T: DeserializeOwned>(&self, data: &str) -> Option<T> {
        match serde_json::from_str(data) {
            Ok(value) => Some(value),
            Err(error) => {
                Metrics::inc(&self.metrics.malformed_events);
                warn!(%error, bytes = data.len(), "malformed event ignored");
                None
            }
        }
    }
}

fn describe(error: &es::Error) -> String {
    match error {
        es::Error::UnexpectedResponse(response, _) => format!("HTTP {}", response.status()),
        other => other.to_string(),
    }
}
