//! Coalesced, batched fetching of changed lots.
//!
//! Notices mark lots dirty; one slot per lot (like client-go's DeltaFIFO) means a burst
//! of notices for one lot causes at most one fetch in flight plus one follow-up. Dirty
//! lots are fetched in batches with bounded concurrency. A fetch asks for the highest
//! sequence noticed (`min_seq`), so the master never answers with an older version;
//! a 503, an error or an answer older than asked is retried with jittered backoff and
//! never shown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::Api;
use crate::backoff;
use crate::cache::Cache;
use crate::error::FetchError;
use crate::metrics::Metrics;
use crate::mirror::{Applied, Mirror};
use crate::protocol::Seq;
use crate::state::StatePublisher;

#[derive(Debug)]
struct Entry {
    /// Highest sequence noticed for the lot.
    want: Seq,
    /// `want` when the fetch in flight was sent.
    dispatched_want: Seq,
    /// When the oldest notice not yet satisfied arrived.
    since: Instant,
    /// When the first notice after the current fetch was sent arrived.
    since_followup: Option<Instant>,
    in_flight: bool,
    queued: bool,
    waiting_retry: bool,
    attempts: u32,
    /// Which incarnation of the lot's entry this is: a fetch sent for an entry that
    /// was since cleared (a new epoch) or forgotten must not settle its successor.
    generation: u64,
}

#[derive(Debug, Default)]
struct DirtyInner {
    entries: HashMap<String, Entry>,
    ready: VecDeque<String>,
    next_generation: u64,
}

/// One lot taken for a fetch: what it needs and which entry it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The lot.
    pub id: String,
    /// The sequence the fetch must reach (`min_seq`).
    pub want: Seq,
    /// The entry's generation when it was taken.
    generation: u64,
}

impl DirtyInner {
    /// The entry a claim was taken from, if it is still that entry.
    fn claimed(&mut self, claim: &Claim) -> Option<&mut Entry> {
        self.entries
            .get_mut(&claim.id)
            .filter(|entry| entry.generation == claim.generation)
    }
}

/// Lots waiting to be fetched.
#[derive(Debug, Default)]
pub(crate) struct DirtySet {
    inner: Mutex<DirtyInner>,
    notify: Notify,
}

impl DirtySet {
    fn lock(&self) -> MutexGuard<'_, DirtyInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Note that `id` changed at `seq`. Returns false when the notice was coalesced
    /// into a fetch already queued, in flight or waiting to retry.
    pub fn mark(&self, id: &str, seq: Seq, now: Instant) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let generation = &mut inner.next_generation;
        let entry = inner.entries.entry(id.to_owned()).or_insert_with(|| {
            *generation += 1;
            Entry {
                want: 0,
                dispatched_want: 0,
                since: now,
                since_followup: None,
                in_flight: false,
                queued: false,
                waiting_retry: false,
                attempts: 0,
                generation: *generation,
            }
        });
        entry.want = entry.want.max(seq);
        if entry.in_flight {
            entry.since_followup.get_or_insert(now);
            return false;
        }
        if entry.queued || entry.waiting_retry {
            return false;
        }
        entry.queued = true;
        inner.ready.push_back(id.to_owned());
        drop(guard);
        self.notify.notify_one();
        true
    }

    /// Take up to `max` queued lots for one fetch, with the sequence each needs.
    pub fn take_batch(&self, max: usize) -> Vec<Claim> {
        let mut inner = self.lock();
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some(id) = inner.ready.pop_front() else {
                break;
            };
            // An id can linger in the queue after it was forgotten and marked again;
            // only a queued entry is taken.
            if let Some(entry) = inner.entries.get_mut(&id).filter(|e| e.queued) {
                entry.queued = false;
                entry.in_flight = true;
                entry.dispatched_want = entry.want;
                batch.push(Claim {
                    id,
                    want: entry.want,
                    generation: entry.generation,
                });
            }
        }
        batch
    }

    /// The fetch of a claimed lot produced version `got`. Returns when the oldest
    /// satisfied notice arrived (for latency); queues the follow-up if a newer notice
    /// came in while the fetch was in flight. A claim on an entry that has since been
    /// replaced settles nothing.
    pub fn done(&self, claim: &Claim, got: Seq) -> Option<Instant> {
        let mut inner = self.lock();
        let id = claim.id.as_str();
        let entry = inner.claimed(claim)?;
        entry.in_flight = false;
        entry.attempts = 0;
        let since = entry.since;
        if entry.want > got {
            entry.since = entry.since_followup.take().unwrap_or(since);
            entry.queued = true;
            inner.ready.push_back(id.to_owned());
            drop(inner);
            self.notify.notify_one();
        } else {
            inner.entries.remove(id);
        }
        Some(since)
    }

    /// The fetch of these lots failed: hold them until [`DirtySet::retry`]. Returns the
    /// highest attempt count among them.
    pub fn failed(&self, claims: &[Claim]) -> u32 {
        let mut inner = self.lock();
        let mut attempts = 0;
        for claim in claims {
            if let Some(entry) = inner.claimed(claim).filter(|entry| entry.in_flight) {
                entry.in_flight = false;
                entry.waiting_retry = true;
                entry.attempts += 1;
                attempts = attempts.max(entry.attempts);
            }
        }
        attempts
    }

    /// Queue held lots again after their backoff.
    pub fn retry(&self, claims: &[Claim]) {
        let mut inner = self.lock();
        for claim in claims {
            let Some(entry) = inner.claimed(claim) else {
                continue;
            };
            if entry.waiting_retry {
                entry.waiting_retry = false;
                entry.queued = true;
                inner.ready.push_back(claim.id.clone());
            }
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// The lot does not exist on the master (or the answer was of another history):
    /// stop asking for it, unless its entry was replaced since the claim.
    pub fn forget(&self, claim: &Claim) {
        let mut inner = self.lock();
        if inner.claimed(claim).is_some() {
            inner.entries.remove(&claim.id);
        }
    }

    /// Drop everything (the master's history changed; old sequences mean nothing).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.ready.clear();
    }

    /// Lots dirty (queued, in flight or waiting to retry).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

/// Everything a fetch task needs; cheap to clone.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub api: Api,
    pub mirror: Mirror,
    pub dirty: Arc<DirtySet>,
    pub metrics: Arc<Metrics>,
    pub batch_size: usize,
    pub concurrency: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Told whether fetches work, so `Live` is only said while they do.
    pub state: Arc<StatePublisher>,
    /// memcached tier, read before the master when configured.
    pub cache: Option<Cache>,
    pub cache_grace: Duration,
}

impl Fetcher {
    /// Dispatch dirty lots in batches until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        loop {
            let notified = self.dirty.notify.notified();
            loop {
                let permit = tokio::select! {
                    _ = cancel.cancelled() => return,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                };
                let batch = self.dirty.take_batch(self.batch_size);
                if batch.is_empty() {
                    break;
                }
                let fetcher = self.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = fetcher.fetch(batch, cancel.clone()) => {}
                    }
                    drop(permit);
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = notified => {}
            }
        }
    }

    async fn fetch(&self, batch: Vec<Claim>, cancel: CancellationToken) {
        let batch = match &self.cache {
            Some(cache) => {
                let mut rest = self.serve_from_cache(cache, batch).await;
                if !rest.is_empty() && !self.cache_grace.is_zero() {
                    // The warmer got the same notice at the same moment; give it a moment.
                    tokio::time::sleep(self.cache_grace).await;
                    rest = self.serve_from_cache(cache, rest).await;
                }
                if rest.is_empty() {
                    Metrics::inc(&self.metrics.fetches_saved);
                    return;
                }
                rest
            }
            None => batch,
        };
        let min_seq = batch.iter().map(|claim| claim.want).max().unwrap_or(0);
        let ids: Vec<String> = batch.iter().map(|claim| claim.id.clone()).collect();
        Metrics::inc(&self.metrics.fetches);
        self.metrics.observe_batch(ids.len());
        let failed = match self.api.fetch_lots(&ids, min_seq).await {
            Ok(response) => self.apply(batch, response),
            Err(error) => {
                Metrics::inc(&self.metrics.fetch_errors);
                if matches!(error, FetchError::Malformed(_) | FetchError::TooLarge) {
                    Metrics::inc(&self.metrics.malformed_events);
                }
                debug!(%error, lots = ids.len(), min_seq, "fetch failed; will retry");
                batch
            }
        };
        if failed.is_empty() {
            self.state.fetch_succeeded();
            return;
        }
        self.state.fetch_failed();
        let attempts = self.dirty.failed(&failed);
        Metrics::add(&self.metrics.retries, failed.len() as u64);
        let delay = backoff::jittered(attempts.saturating_sub(1), self.retry_base, self.retry_max);
        let dirty = self.dirty.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(delay) => dirty.retry(&failed),
            }
        });
    }

    /// Put a lot that answers its notice into the mirror and settle its dirty entry.
    fn deliver(&self, epoch: &str, claim: &Claim, lot: crate::protocol::Lot) {
        let got = lot.seq;
        match self.mirror.apply(epoch, lot) {
            Applied::NotNewer { .. } => Metrics::inc(&self.metrics.ignored_stale_versions),
            Applied::Inserted | Applied::Updated { .. } => Metrics::inc(&self.metrics.applied),
            Applied::OtherEpoch => {
                // Read before an epoch change: the entry (if any) belongs to the new
                // history now and is fetched again there.
                Metrics::inc(&self.metrics.other_epoch_answers);
                debug!(lot = %claim.id, "a lot of the previous epoch arrived; dropped");
                return;
            }
        }
        if let Some(since) = self.dirty.done(claim, got) {
            self.metrics.observe_latency(since.elapsed());
        }
    }

    /// Apply what memcached holds at the needed version; returns the rest of the batch.
    async fn serve_from_cache(&self, cache: &Cache, batch: Vec<Claim>) -> Vec<Claim> {
        let Some(epoch) = self.mirror.epoch() else {
            return batch;
        };
        let ids: Vec<String> = batch.iter().map(|claim| claim.id.clone()).collect();
        let (lots, errors) = cache.get_many(&epoch, &ids).await;
        if !errors.is_empty() {
            Metrics::add(&self.metrics.cache_errors, errors.len() as u64);
            debug!(errors = errors.len(), first = %errors[0], "memcached errors; asking the master");
        }
        let mut found: HashMap<String, crate::protocol::Lot> =
            lots.into_iter().map(|l| (l.id.clone(), l)).collect();
        let mut rest = Vec::new();
        // After a rewound history, memcached may still hold the abandoned history's
        // versions under this epoch's keys: only versions beyond it are trusted.
        let trusted_above = self.mirror.rewound_upto();
        for claim in batch {
            let usable =
                |lot: &crate::protocol::Lot| lot.seq >= claim.want && lot.seq > trusted_above;
            match found.remove(&claim.id).filter(usable) {
                Some(lot) => {
                    Metrics::inc(&self.metrics.cache_hits);
                    self.deliver(&epoch, &claim, lot);
                }
                None => {
                    Metrics::inc(&self.metrics.cache_misses);
                    rest.push(claim);
                }
            }
        }
        rest
    }

    /// Apply a batch response; returns the claims to retry.
    fn apply(&self, batch: Vec<Claim>, response: crate::protocol::LotsResponse) -> Vec<Claim> {
        if self
            .mirror
            .epoch()
            .is_some_and(|epoch| epoch != response.epoch)
        {
            // Fetched from another history: the stream task resynchronises; these lots
            // are re-noticed after it, so nothing is retried from here (and an entry
            // marked in the new history since is not this claim's to settle).
            debug!("fetch answered from another epoch; dropping it");
            Metrics::inc(&self.metrics.other_epoch_answers);
            for claim in &batch {
                self.dirty.forget(claim);
            }
            return Vec::new();
        }
        let mut claims: HashMap<String, Claim> = batch
            .into_iter()
            .map(|claim| (claim.id.clone(), claim))
            .collect();
        let mut retry = Vec::new();
        Metrics::add(&self.metrics.fetched_lots, response.lots.len() as u64);
        for lot in response.lots {
            let Some(claim) = claims.remove(lot.id.as_str()) else {
                // Not asked for, or answered twice.
                Metrics::inc(&self.metrics.malformed_events);
                warn!(lot = %lot.id.escape_default(), "fetch returned a lot that was not asked for");
                continue;
            };
            if lot.seq < claim.want {
                // Older than the notice it answers: never shown.
                Metrics::inc(&self.metrics.stale_responses);
                retry.push(claim);
                continue;
            }
            self.deliver(&response.epoch, &claim, lot);
        }
        for id in &response.missing {
            if let Some(claim) = claims.remove(id.as_str()) {
                self.dirty.forget(&claim);
            }
        }
        // Neither returned nor reported missing: the response broke the protocol.
        if !claims.is_empty() {
            Metrics::add(&self.metrics.malformed_events, claims.len() as u64);
            retry.extend(claims.into_values());
        }
        retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::now()
    }

    /// What a batch asks for, without the generations.
    fn wants(batch: &[Claim]) -> Vec<(String, Seq)> {
        batch.iter().map(|c| (c.id.clone(), c.want)).collect()
    }

    #[test]
    fn a_burst_on_one_lot_is_one_fetch_plus_one_follow_up() {
        let dirty = DirtySet::default();
        assert!(dirty.mark("a", 1, now()));
        for seq in 2..=50 {
            assert!(!dirty.mark("a", seq, now()), "coalesced while queued");
        }
        let first = dirty.take_batch(10);
        assert_eq!(wants(&first), vec![("a".to_owned(), 50)]);
        for seq in 51..=100 {
            assert!(!dirty.mark("a", seq, now()), "coalesced while in flight");
        }
        assert!(
            dirty.take_batch(10).is_empty(),
            "never two in flight for one lot"
        );
        dirty.done(&first[0], 50);
        let follow_up = dirty.take_batch(10);
        assert_eq!(
            wants(&follow_up),
            vec![("a".to_owned(), 100)],
            "the one follow-up"
        );
        dirty.done(&follow_up[0], 100);
        assert!(dirty.take_batch(10).is_empty());
        assert_eq!(dirty.len(), 0);
    }

    #[test]
    fn no_follow_up_when_the_answer_covers_newer_notices() {
        let dirty = DirtySet::default();
        dirty.mark("a", 5, now());
        let batch = dirty.take_batch(1);
        dirty.mark("a", 6, now());
        dirty.done(&batch[0], 6);
        assert!(dirty.take_batch(10).is_empty());
    }

    #[test]
    fn batches_respect_the_size_and_keep_order() {
        let dirty = DirtySet::default();
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            dirty.mark(id, i as Seq + 1, now());
        }
        let first: Vec<String> = dirty.take_batch(3).into_iter().map(|c| c.id).collect();
        assert_eq!(first, ["a", "b", "c"]);
        assert_eq!(dirty.take_batch(3).len(), 2);
    }

    #[test]
    fn failures_wait_for_retry_then_requeue_once() {
        let dirty = DirtySet::default();
        dirty.mark("a", 1, now());
        let batch = dirty.take_batch(1);
        assert_eq!(dirty.failed(&batch), 1);
        assert!(!dirty.mark("a", 2, now()), "held for retry");
        assert!(dirty.take_batch(1).is_empty());
        dirty.retry(&batch);
        let again = dirty.take_batch(5);
        assert_eq!(wants(&again), vec![("a".to_owned(), 2)]);
        assert_eq!(dirty.failed(&again), 2, "attempts grow until a success");
    }

    #[test]
    fn forgotten_and_cleared_lots_are_not_fetched() {
        let dirty = DirtySet::default();
        dirty.mark("a", 1, now());
        dirty.mark("b", 2, now());
        let batch = dirty.take_batch(1);
        dirty.forget(&batch[0]);
        assert_eq!(wants(&dirty.take_batch(5)), vec![("b".to_owned(), 2)]);
        dirty.mark("c", 3, now());
        dirty.clear();
        assert!(dirty.take_batch(5).is_empty());
    }

    #[test]
    fn a_claim_from_before_a_clear_settles_nothing_after_it() {
        let dirty = DirtySet::default();
        dirty.mark("a", 7, now());
        let old = dirty.take_batch(1);
        // A new epoch: everything dirty is dropped and the lot is noticed again.
        dirty.clear();
        dirty.mark("a", 2, now());
        // The old fetch answers (or fails, or is dropped) after that.
        assert_eq!(
            dirty.done(&old[0], 7),
            None,
            "the old claim settles nothing"
        );
        assert_eq!(dirty.failed(&old), 0, "nor holds the new entry for retry");
        dirty.forget(&old[0]);
        assert_eq!(
            wants(&dirty.take_batch(5)),
            vec![("a".to_owned(), 2)],
            "the new entry is still fetched"
        );
    }
}
