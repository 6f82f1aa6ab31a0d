//! `GET /v1/notices`: the notice stream as Server-Sent Events.
//!
//! Each stream is a cursor into the source's [`NoticeLog`](super::NoticeLog): no
//! per-stream queue beyond one small batch, and it advances only as fast as the
//! client reads (the body is polled when the socket can take more). A client that falls
//! behind the ring's start is told to `reset`, so a slow display costs a bounded amount
//! of memory however slow it is.
//!
//! With `?lots=inline` each notice also carries the lot, read when the source can
//! answer at that sequence (`ready`), so the client needs no fetch.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

use super::error::ApiError;
use super::fetch::{Params, params};
use super::{Reader, Source};
use crate::protocol::{
    EVENT_HEARTBEAT, EVENT_HELLO, EVENT_NOTICE, EVENT_RESET, Heartbeat, Hello, Lot, Notice, Reset,
    Seq, codes,
};

/// Notices read from the log per step: small, so a stream holds little at a time.
const BATCH: usize = 64;
/// Per step with inline lots, which are a few KiB each.
const INLINE_BATCH: usize = 16;

/// `GET /v1/notices`.
pub(crate) async fn notices<S: Source>(
    _reader: Reader,
    State(source): State<S>,
    headers: HeaderMap,
    query: Params,
) -> Result<Response, ApiError> {
    let params = params(query)?;
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("").trim().to_owned());
    let resume = match header.or_else(|| params.get("after").cloned()) {
        None => None,
        Some(text) if text.is_empty() => None,
        Some(text) => Some(text.parse::<Seq>().map_err(|_| {
            ApiError::invalid_field("after", "the resume point is a sequence number")
        })?),
    };
    let inline = match params.get("lots").map(String::as_str) {
        None => false,
        Some("inline") => true,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "lots",
                "the only value is `inline`",
            ));
        }
    };
    let slot = StreamSlot::acquire(&source)?;
    let epoch_mismatch = params
        .get("epoch")
        .is_some_and(|e| *e != source.log().epoch());
    let feed = Feed::new(source, slot, resume, epoch_mismatch, inline);
    Ok(Sse::new(feed.into_stream()).into_response())
}

/// Holds one of the source's stream places; gives it back however the stream ends.
struct StreamSlot<S: Source>(S);

impl<S: Source> StreamSlot<S> {
    fn acquire(source: &S) -> Result<StreamSlot<S>, ApiError> {
        let metrics = source.metrics();
        metrics.stream_opened();
        let slot = StreamSlot(source.clone());
        if metrics.streams() > source.limits().max_streams as i64 {
            metrics.refused("streams");
            return Err(ApiError::unavailable(
                codes::OVERLOADED,
                "too many open notice streams; retry shortly",
                1,
            ));
        }
        Ok(slot)
    }
}

impl<S: Source> Drop for StreamSlot<S> {
    fn drop(&mut self) {
        self.0.metrics().stream_closed();
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    // Our own wire types: serialising them cannot fail.
    let data = serde_json::to_string(value).unwrap_or_default();
    Event::default().event(name).data(data)
}

/// One stream's state: where it is in the history and what is ready to send.
struct Feed<S: Source> {
    source: S,
    _slot: StreamSlot<S>,
    inline: bool,
    /// The history this stream follows now.
    epoch: String,
    /// Every notice up to here was sent (or deliberately left out).
    cursor: Seq,
    out: VecDeque<Event>,
    /// Wakes on new notices (`head`), or on new answerable data with inline lots
    /// (`ready`).
    wake: watch::Receiver<Seq>,
    resets: watch::Receiver<u64>,
    cuts: Option<watch::Receiver<u64>>,
    heartbeat: Interval,
    heartbeat_due: bool,
    done: bool,
}

impl<S: Source> Feed<S> {
    fn new(
        source: S,
        slot: StreamSlot<S>,
        resume: Option<Seq>,
        epoch_mismatch: bool,
        inline: bool,
    ) -> Feed<S> {
        let log = source.log().clone();
        let mut wake = if inline {
            log.watch_ready()
        } else {
            log.watch_head()
        };
        wake.mark_unchanged();
        let mut resets = log.watch_resets();
        resets.mark_unchanged();
        let cuts = source.stream_cuts().map(|mut cuts| {
            cuts.mark_unchanged();
            cuts
        });
        let every = source.heartbeat_interval();
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (epoch, head) = log.position();
        let mut out = VecDeque::new();
        out.push_back(json_event(
            EVENT_HELLO,
            &Hello {
                epoch: epoch.clone(),
                head,
                heartbeat_ms: every.as_millis() as u64,
            },
        ));
        let mut feed = Feed {
            source,
            _slot: slot,
            inline,
            epoch,
            cursor: head,
            out,
            wake,
            resets,
            cuts,
            heartbeat,
            heartbeat_due: false,
            done: false,
        };
        match resume {
            None => {}
            Some(_) if epoch_mismatch => feed.reset(head, "the stream is from another epoch"),
            Some(n) => feed.cursor = n,
        }
        feed
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut feed| async move {
            let event = feed.next().await?;
            Some((Ok(event), feed))
        })
    }

    fn reset(&mut self, head: Seq, reason: &str) {
        let log = self.source.log();
        self.out.push_back(json_event(
            EVENT_RESET,
            &Reset {
                epoch: self.epoch.clone(),
                head,
                oldest_retained: log.oldest(),
                reason: reason.to_owned(),
            },
        ));
        self.cursor = head;
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.out.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if self.fill().await {
                continue;
            }
            if self.heartbeat_due {
                self.heartbeat_due = false;
                let beat = Heartbeat {
                    epoch: self.epoch.clone(),
                    head: self.cursor,
                    at: self.source.clock(),
                    stale: self.source.is_stale(),
                };
                return Some(json_event(EVENT_HEARTBEAT, &beat));
            }
            let cut = async {
                match self.cuts.as_mut() {
                    Some(cuts) => cuts.changed().await.is_err(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() { return None; }
                }
                _ = self.resets.changed() => {}
                _ = self.heartbeat.tick() => self.heartbeat_due = true,
                _ = cut => {
                    tracing::debug!("notice stream cut by fault injection");
                    return None;
                }
                _ = self.source.shutdown().cancelled() => return None,
            }
        }
    }

    /// Queue the next notices after the cursor; returns whether anything was queued.
    async fn fill(&mut self) -> bool {
        let log = self.source.log().clone();
        let limit = if self.inline { INLINE_BATCH } else { BATCH };
        let ready = log.ready();
        let (epoch, mut batch) = match log.after(self.cursor, limit) {
            Ok(found) => found,
            Err(t) => {
                let (epoch, head) = log.position();
                let reason = if epoch != self.epoch {
                    "the history changed (a new epoch)"
                } else if self.cursor > t.head {
                    "the resume point is beyond the head of this history"
                } else {
                    "the resume point is older than the retained history"
                };
                self.epoch = epoch;
                self.reset(head, reason);
                return true;
            }
        };
        if epoch != self.epoch {
            let (epoch, head) = log.position();
            self.epoch = epoch;
            self.reset(head, "the history changed (a new epoch)");
            return true;
        }
        if self.inline {
            batch.retain(|n| n.seq <= ready);
        }
        let Some(last) = batch.last().map(|n| n.seq) else {
            return false;
        };
        if self.inline && !self.attach_lots(&mut batch).await {
            // The data could not be read: end the stream; the client resumes from its
            // last notice and nothing is lost.
            self.done = true;
            return false;
        }
        let metrics = self.source.metrics();
        for notice in batch {
            if self.source.drop_notice() {
                metrics.notice_dropped();
                continue;
            }
            let id = notice.seq.to_string();
            self.out.push_back(json_event(EVENT_NOTICE, &notice).id(id));
            metrics.notice_sent();
        }
        self.cursor = last;
        true
    }

    /// Put each notice's lot into it (one read for the whole batch).
    async fn attach_lots(&self, batch: &mut [Notice]) -> bool {
        let ids: Vec<String> = batch
            .iter()
            .map(|n| n.lot_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let read = match self.source.lots(Some(ids)).await {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, "cannot read lots for an inline notice stream");
                return false;
            }
        };
        let lots: BTreeMap<String, Box<Lot>> = read
            .lots
            .into_iter()
            .map(|lot| (lot.id.clone(), Box::new(lot)))
            .collect();
        for notice in batch {
            notice.lot = lots.get(&notice.lot_id).cloned();
        }
        true
    }
}
