//! Notices: the operation log's tail kept in memory, the `head` and `applied` watches,
//! and the Server-Sent Events stream that carries notices to terminal servers.
//!
//! The writer pushes each committed batch into the ring *before* bumping `head`, so a
//! subscriber woken by `head` always finds the entries it was woken for. Each subscriber
//! keeps only a cursor into the ring — no per-subscriber queue — so a slow subscriber
//! costs nothing; if it falls behind the ring's start it is told to reset.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use chrono::{DateTime, Utc};
use lotsync::protocol::{
    EVENT_HEARTBEAT, EVENT_HELLO, EVENT_NOTICE, EVENT_RESET, Heartbeat, Hello, Notice, Reset, Seq,
};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::TerminalAuth;
use crate::http::errors::ApiError;
use crate::server::AppState;

/// The requested position is not in the retained history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// Oldest sequence retained (0 when the log is empty).
    pub oldest: Seq,
    /// Last sequence committed.
    pub head: Seq,
}

struct Ring {
    entries: VecDeque<Notice>,
    head: Seq,
    stopped: bool,
}

/// The in-memory tail of the log and the watches derived from it.
pub struct Notices {
    epoch: String,
    capacity: usize,
    ring: Mutex<Ring>,
    /// Wakes the replicator thread when `head` moves (or at shutdown).
    wake: Condvar,
    head: watch::Sender<Seq>,
    applied: watch::Sender<Seq>,
}

impl Notices {
    /// A ring holding at most `capacity` entries, starting from the log's tail.
    pub fn new(
        epoch: String,
        capacity: usize,
        tail: Vec<Notice>,
        head: Seq,
        applied: Seq,
    ) -> Notices {
        let mut entries: VecDeque<Notice> = tail.into();
        while entries.len() > capacity {
            entries.pop_front();
        }
        Notices {
            epoch,
            capacity,
            ring: Mutex::new(Ring {
                entries,
                head,
                stopped: false,
            }),
            wake: Condvar::new(),
            head: watch::Sender::new(head),
            applied: watch::Sender::new(applied),
        }
    }

    /// Identity of this history.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Last sequence committed.
    pub fn head(&self) -> Seq {
        *self.head.borrow()
    }

    /// Last sequence applied to the replica.
    pub fn applied(&self) -> Seq {
        *self.applied.borrow()
    }

    /// Watch `head`.
    pub fn watch_head(&self) -> watch::Receiver<Seq> {
        self.head.subscribe()
    }

    /// Watch `applied`.
    pub fn watch_applied(&self) -> watch::Receiver<Seq> {
        self.applied.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding this lock leaves the ring consistent (pushes are
        // single steps), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record newly committed entries (in order, continuing the sequence) and move `head`.
    pub fn publish(&self, committed: Vec<Notice>) {
        let Some(last) = committed.last().map(|n| n.seq) else {
            return;
        };
        {
            let mut ring = self.lock();
            ring.entries.extend(committed);
            while ring.entries.len() > self.capacity {
                ring.entries.pop_front();
            }
            ring.head = last;
        }
        self.wake.notify_all();
        self.head.send_replace(last);
    }

    /// Record the replica's new applied position.
    pub fn set_applied(&self, applied: Seq) {
        self.applied.send_replace(applied);
    }

    /// Oldest retained sequence, 0 when the ring is empty.
    pub fn oldest(&self) -> Seq {
        self.lock().entries.front().map_or(0, |n| n.seq)
    }

    /// Entries after `after`, at most `limit`. Fails when `after` is older than the
    /// retained history or beyond `head` (a position from another history).
    pub fn after(&self, after: Seq, limit: usize) -> Result<Vec<Notice>, Truncated> {
        let ring = self.lock();
        let oldest = ring.entries.front().map_or(0, |n| n.seq);
        let truncated = Truncated {
            oldest,
            head: ring.head,
        };
        if after > ring.head {
            return Err(truncated);
        }
        if after == ring.head {
            return Ok(Vec::new());
        }
        if after + 1 < oldest || ring.entries.is_empty() {
            return Err(truncated);
        }
        let skip = (after + 1 - oldest) as usize;
        Ok(ring
            .entries
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect())
    }

    /// Commit time of a retained entry.
    pub fn at_of(&self, seq: Seq) -> Option<DateTime<Utc>> {
        let ring = self.lock();
        let oldest = ring.entries.front()?.seq;
        ring.entries
            .get(seq.checked_sub(oldest)? as usize)
            .map(|n| n.at)
    }

    /// Block (a thread, not a task) until `head` passes `applied`, the timeout elapses,
    /// or the store stops. Returns `None` once stopped, else the head.
    pub fn wait_beyond(&self, applied: Seq, timeout: Duration) -> Option<Seq> {
        let ring = self.lock();
        let (ring, _) = self
            .wake
            .wait_timeout_while(ring, timeout, |r| r.head <= applied && !r.stopped)
            .unwrap_or_else(|e| e.into_inner());
        (!ring.stopped).then_some(ring.head)
    }

    /// Wake the replicator thread (after a chaos change, say).
    pub fn wake(&self) {
        self.wake.notify_all();
    }

    /// Tell the replicator thread to stop.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_all();
    }
}

/// Query of `GET /v1/notices`.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    after: Option<String>,
    epoch: Option<String>,
}

/// `GET /v1/notices`: the Server-Sent Events stream.
pub async fn stream(
    _auth: TerminalAuth,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<ReceiverStream<Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid_field("after", e.body_text()))?;
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("").trim().to_owned());
    let resume = match header.or(query.after) {
        None => None,
        Some(text) if text.is_empty() => None,
        Some(text) => Some(text.parse::<Seq>().map_err(|_| {
            ApiError::invalid_field("after", "the resume point is a sequence number")
        })?),
    };
    let epoch_mismatch = query.epoch.is_some_and(|e| e != state.store.epoch());
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(subscriber(state, tx, resume, epoch_mismatch));
    Ok(Sse::new(ReceiverStream::new(rx)))
}

/// Decrements the subscriber gauge however the task ends.
struct SubscriberGuard(AppState);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.metrics.subscriber_left();
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(value).expect("wire types serialise"))
}

/// One subscriber: hello, replay or reset, then live notices and heartbeats until the
/// client goes away, the stream is cut, or the master shuts down.
async fn subscriber(
    state: AppState,
    tx: mpsc::Sender<Result<Event, Infallible>>,
    resume: Option<Seq>,
    epoch_mismatch: bool,
) {
    state.metrics.subscriber_joined();
    let _guard = SubscriberGuard(state.clone());
    let notices = state.store.notices().clone();
    let epoch = notices.epoch().to_owned();
    let mut head_rx = notices.watch_head();
    let mut cuts = state.chaos.cuts();
    cuts.mark_unchanged();
    let heartbeat_every = state.config.heartbeat;
    let head = *head_rx.borrow_and_update();

    let hello = Hello {
        epoch: epoch.clone(),
        head,
        heartbeat_ms: heartbeat_every.as_millis() as u64,
    };
    if tx.send(Ok(json_event(EVENT_HELLO, &hello))).await.is_err() {
        return;
    }
    let mut cursor = match resume {
        None => head,
        Some(_) if epoch_mismatch => {
            if !send_reset(&tx, &notices, head, "the stream is from another epoch").await {
                return;
            }
            head
        }
        Some(n) => n,
    };

    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Send everything committed after the cursor before anything else.
        match drain(&state, &tx, &notices, cursor).await {
            Some(next) => cursor = next,
            None => return,
        }
        tokio::select! {
            changed = head_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = heartbeat.tick() => {
                match drain(&state, &tx, &notices, cursor).await {
                    Some(next) => cursor = next,
                    None => return,
                }
                let beat = Heartbeat { epoch: epoch.clone(), head: cursor, at: Utc::now() };
                if tx.send(Ok(json_event(EVENT_HEARTBEAT, &beat))).await.is_err() {
                    return;
                }
            }
            _ = cuts.changed() => {
                tracing::debug!("notice stream cut by fault injection");
                return;
            }
            _ = state.shutdown.cancelled() => return,
            _ = tx.closed() => return,
        }
    }
}

/// Send every retained notice after `cursor`; returns the new cursor, or `None` when the
/// client is gone. A cursor outside the history produces a reset and jumps to head.
async fn drain(
    state: &AppState,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
    notices: &Notices,
    mut cursor: Seq,
) -> Option<Seq> {
    loop {
        let batch = match notices.after(cursor, 256) {
            Ok(batch) => batch,
            Err(t) => {
                let reason = if cursor > t.head {
                    "the resume point is beyond the head of this history"
                } else {
                    "the resume point is older than the retained history"
                };
                if !send_reset(tx, notices, t.head, reason).await {
                    return None;
                }
                return Some(t.head);
            }
        };
        let Some(last) = batch.last().map(|n| n.seq) else {
            return Some(cursor);
        };
        for notice in batch {
            if state.chaos.drop_notice() {
                state.metrics.notice_dropped();
                continue;
            }
            let event = json_event(EVENT_NOTICE, &notice).id(notice.seq.to_string());
            tx.send(Ok(event)).await.ok()?;
            state.metrics.notice_sent();
        }
        cursor = last;
    }
}

async fn send_reset(
    tx: &mpsc::Sender<Result<Event, Infallible>>,
    notices: &Notices,
    head: Seq,
    reason: &str,
) -> bool {
    let reset = Reset {
        epoch: notices.epoch().to_owned(),
        head,
        oldest_retained: notices.oldest(),
        reason: reason.to_owned(),
    };
    tx.send(Ok(json_event(EVENT_RESET, &reset))).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lotsync::protocol::OpKind;

    fn notice(seq: Seq) -> Notice {
        Notice {
            seq,
            lot_id: format!("lot-{seq}"),
            kind: OpKind::Upsert,
            at: Utc::now(),
        }
    }

    #[test]
    fn ring_serves_ranges_and_reports_truncation() {
        let ring = Notices::new("e".into(), 3, vec![], 0, 0);
        assert_eq!(ring.after(0, 10), Ok(vec![]));
        ring.publish((1..=5).map(notice).collect());
        assert_eq!(ring.oldest(), 3);
        assert_eq!(ring.head(), 5);
        let seqs = |v: Vec<Notice>| v.iter().map(|n| n.seq).collect::<Vec<_>>();
        assert_eq!(seqs(ring.after(2, 10).unwrap()), vec![3, 4, 5]);
        assert_eq!(seqs(ring.after(3, 1).unwrap()), vec![4]);
        assert_eq!(ring.after(5, 10), Ok(vec![]));
        assert_eq!(ring.after(1, 10), Err(Truncated { oldest: 3, head: 5 }));
        assert_eq!(ring.after(0, 10), Err(Truncated { oldest: 3, head: 5 }));
        assert_eq!(ring.after(6, 10), Err(Truncated { oldest: 3, head: 5 }));
        assert!(ring.at_of(4).is_some());
        assert!(ring.at_of(2).is_none());
    }

    #[test]
    fn waiting_returns_on_publish_and_stop() {
        let ring = std::sync::Arc::new(Notices::new("e".into(), 10, vec![], 0, 0));
        assert_eq!(ring.wait_beyond(0, Duration::from_millis(1)), Some(0));
        let waiter = {
            let ring = ring.clone();
            std::thread::spawn(move || ring.wait_beyond(0, Duration::from_secs(10)))
        };
        ring.publish(vec![notice(1)]);
        assert_eq!(waiter.join().unwrap(), Some(1));
        ring.stop();
        assert_eq!(ring.wait_beyond(1, Duration::from_secs(10)), None);
    }
}
