//! Delivery of mirror changes to local displays ("terminals").
//!
//! Each display has its own queue with one slot per lot (like client-go's DeltaFIFO):
//! a newer version of a lot replaces the pending one instead of queueing behind it. A
//! slow display therefore skips to the newest value of each lot and is told how many
//! versions it skipped, and a queue never holds more than one entry per lot plus a
//! resync and a state change: memory stays bounded however slow the display is, and a
//! slow display never slows the sync or the other displays.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::protocol::{Lot, Seq};
use crate::state::ConnectionState;

/// What a display receives from [`Subscription::recv`].
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// First update of every subscription: the mirror as it was when the display joined.
    Snapshot {
        /// Every lot, ordered by id.
        lots: Vec<Arc<Lot>>,
        /// The history the lots belong to (`None` before the first snapshot loaded).
        epoch: Option<Arc<str>>,
    },
    /// A lot changed.
    LotChanged {
        /// The lot as the mirror now holds it.
        lot: Arc<Lot>,
        /// The history the lot's version belongs to.
        epoch: Arc<str>,
        /// The version this display saw last (`None` if the lot is new to it).
        previous_version: Option<Seq>,
        /// Versions in between that this display skipped because it was behind.
        skipped: u64,
    },
    /// The mirror was reloaded from a snapshot: replace everything shown.
    Resynced {
        /// Every lot, ordered by id.
        lots: Vec<Arc<Lot>>,
        /// The history the lots belong to.
        epoch: Arc<str>,
        /// Whether the history changed (a new epoch, or the same epoch rewound to an
        /// earlier head): versions shown before are not comparable with these.
        epoch_changed: bool,
    },
    /// The connection state changed (only the newest state is kept for a slow display).
    State(ConnectionState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Lot(String),
    Resync,
    State,
}

#[derive(Debug)]
struct PendingLot {
    lot: Arc<Lot>,
    epoch: Arc<str>,
    previous_version: Option<Seq>,
    skipped: u64,
}

#[derive(Debug)]
struct PendingResync {
    lots: Vec<Arc<Lot>>,
    /// `None` only for a subscription's first update before any snapshot loaded.
    epoch: Option<Arc<str>>,
    epoch_changed: bool,
}

#[derive(Debug, Default)]
struct Pending {
    order: VecDeque<Slot>,
    lots: HashMap<String, PendingLot>,
    resync: Option<PendingResync>,
    state: Option<ConnectionState>,
    skipped_total: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    pending: Mutex<Pending>,
    notify: Notify,
    closed: AtomicBool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the queue inconsistent in a way
        // that matters more than losing updates, so recover from poisoning.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a change; returns how many versions were skipped by replacing a pending one.
    fn push_lot(&self, lot: Arc<Lot>, epoch: &Arc<str>, previous_version: Option<Seq>) -> u64 {
        let mut pending = self.lock();
        let skipped = match pending.lots.get_mut(&lot.id) {
            Some(waiting) => {
                waiting.lot = lot;
                waiting.epoch = epoch.clone();
                waiting.skipped += 1;
                1
            }
            None => {
                pending.order.push_back(Slot::Lot(lot.id.clone()));
                pending.lots.insert(
                    lot.id.clone(),
                    PendingLot {
                        lot,
                        epoch: epoch.clone(),
                        previous_version,
                        skipped: 0,
                    },
                );
                0
            }
        };
        pending.skipped_total += skipped;
        drop(pending);
        self.notify.notify_one();
        skipped
    }

    fn push_resync(&self, lots: Vec<Arc<Lot>>, epoch: &Arc<str>, epoch_changed: bool) -> u64 {
        let mut pending = self.lock();
        // The full set supersedes every pending change.
        let superseded = pending.lots.len() as u64;
        pending.lots.clear();
        pending.order.retain(|slot| !matches!(slot, Slot::Lot(_)));
        let epoch_changed =
            epoch_changed || pending.resync.as_ref().is_some_and(|r| r.epoch_changed);
        let resync = PendingResync {
            lots,
            epoch: Some(epoch.clone()),
            epoch_changed,
        };
        if pending.resync.replace(resync).is_none() {
            pending.order.push_back(Slot::Resync);
        }
        pending.skipped_total += superseded;
        drop(pending);
        self.notify.notify_one();
        superseded
    }

    fn push_state(&self, state: ConnectionState) {
        let mut pending = self.lock();
        if pending.state.replace(state).is_none() {
            pending.order.push_back(Slot::State);
        }
        drop(pending);
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Update> {
        let mut pending = self.lock();
        let slot = pending.order.pop_front()?;
        match slot {
            Slot::Lot(id) => pending.lots.remove(&id).map(|p| Update::LotChanged {
                lot: p.lot,
                epoch: p.epoch,
                previous_version: p.previous_version,
                skipped: p.skipped,
            }),
            Slot::Resync => pending.resync.take().map(|resync| match resync.epoch {
                Some(epoch) => Update::Resynced {
                    lots: resync.lots,
                    epoch,
                    epoch_changed: resync.epoch_changed,
                },
                // Only a subscription's own first update has no epoch yet.
                None => Update::Snapshot {
                    lots: resync.lots,
                    epoch: None,
                },
            }),
            Slot::State => pending.state.take().map(Update::State),
        }
    }

    fn len(&self) -> usize {
        self.lock().order.len()
    }
}

/// The set of display queues.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    queues: Mutex<Vec<Arc<Queue>>>,
    /// Updates skipped across every display so far: the `display_skipped` metric
    /// itself, which the client's metrics hold the other handle of.
    skipped: prometheus_client::metrics::counter::Counter,
}

impl Fanout {
    fn queues(&self) -> MutexGuard<'_, Vec<Arc<Queue>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a display whose first update is `initial`. The caller holds the mirror
    /// lock so no change slips between the snapshot and the registration.
    pub fn subscribe(
        &self,
        initial: Vec<Arc<Lot>>,
        epoch: Option<Arc<str>>,
        state: ConnectionState,
    ) -> Subscription {
        let queue = Arc::new(Queue::default());
        {
            let mut pending = queue.lock();
            pending.order.push_back(Slot::Resync);
            pending.resync = Some(PendingResync {
                lots: initial,
                epoch,
                epoch_changed: false,
            });
            pending.order.push_back(Slot::State);
            pending.state = Some(state);
        }
        let mut queues = self.queues();
        queues.retain(|q| !q.closed.load(Ordering::Relaxed));
        queues.push(queue.clone());
        Subscription { queue, first: true }
    }

    /// Returns the number of updates skipped across displays.
    pub fn publish_lot(
        &self,
        lot: &Arc<Lot>,
        epoch: &Arc<str>,
        previous_version: Option<Seq>,
    ) -> u64 {
        let skipped = self
            .queues()
            .iter()
            .map(|q| q.push_lot(lot.clone(), epoch, previous_version))
            .sum();
        self.skipped.inc_by(skipped);
        skipped
    }

    pub fn publish_resync(&self, lots: &[Arc<Lot>], epoch: &Arc<str>, epoch_changed: bool) -> u64 {
        let skipped = self
            .queues()
            .iter()
            .map(|q| q.push_resync(lots.to_vec(), epoch, epoch_changed))
            .sum();
        self.skipped.inc_by(skipped);
        skipped
    }

    /// The `display_skipped` counter, for the client's metrics registry.
    pub fn skipped_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.skipped.clone()
    }

    pub fn publish_state(&self, state: ConnectionState) {
        for queue in self.queues().iter() {
            queue.push_state(state);
        }
    }

    /// Wake every display with "closed".
    pub fn close(&self) {
        for queue in self.queues().drain(..) {
            queue.closed.store(true, Ordering::Relaxed);
            queue.notify.notify_one();
        }
    }
}

/// A display's subscription to mirror changes, from [`Client::subscribe`](crate::Client::subscribe).
///
/// ```no_run
/// # async fn demo(client: lotsync::Client) {
/// let mut display = client.subscribe();
/// while let Some(update) = display.recv().await {
///     match update {
///         lotsync::Update::LotChanged { lot, skipped, .. } => {
///             println!("{} now {} ({skipped} skipped)", lot.id, lot.current_price)
///         }
///         other => println!("{other:?}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Subscription {
    queue: Arc<Queue>,
    first: bool,
}

impl Subscription {
    /// Wait for the next update; `None` once the client has shut down.
    pub async fn recv(&mut self) -> Option<Update> {
        loop {
            // Register interest before checking, so a push between the check and the
            // wait is not missed.
            let queue = self.queue.clone();
            let notified = queue.notify.notified();
            if let Some(update) = self.try_recv() {
                return Some(update);
            }
            if self.queue.closed.load(Ordering::Relaxed) {
                return None;
            }
            notified.await;
        }
    }

    /// The next update if one is waiting.
    pub fn try_recv(&mut self) -> Option<Update> {
        let update = self.queue.pop()?;
        if std::mem::take(&mut self.first) {
            // The registration snapshot is delivered as `Snapshot`, not as a resync.
            if let Update::Resynced { lots, epoch, .. } = update {
                return Some(Update::Snapshot {
                    lots,
                    epoch: Some(epoch),
                });
            }
        }
        Some(update)
    }

    /// Updates waiting to be received (at most one per lot, plus a resync and a state).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Versions this display has skipped over in total because it was behind.
    pub fn skipped(&self) -> u64 {
        self.queue.lock().skipped_total
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot(id: &str, seq: Seq) -> Arc<Lot> {
        let mut lot = Lot::example(id);
        lot.seq = seq;
        Arc::new(lot)
    }

    fn e() -> Arc<str> {
        Arc::from("e1")
    }

    fn drain(sub: &mut Subscription) -> Vec<Update> {
        std::iter::from_fn(|| sub.try_recv()).collect()
    }

    #[test]
    fn joins_with_a_snapshot_then_the_state() {
        let fanout = Fanout::default();
        let mut sub = fanout.subscribe(vec![lot("a", 1)], Some(e()), ConnectionState::Live);
        assert_eq!(
            drain(&mut sub),
            vec![
                Update::Snapshot {
                    lots: vec![lot("a", 1)],
                    epoch: Some(e()),
                },
                Update::State(ConnectionState::Live)
            ]
        );
    }

    #[test]
    fn a_slow_display_skips_to_the_newest_version_of_each_lot() {
        let fanout = Fanout::default();
        let mut sub = fanout.subscribe(vec![], Some(e()), ConnectionState::Live);
        drain(&mut sub);
        for seq in 1..=1000 {
            fanout.publish_lot(&lot("a", seq), &e(), Some(seq - 1));
            fanout.publish_lot(&lot("b", seq), &e(), Some(seq - 1));
        }
        assert_eq!(sub.pending(), 2, "one slot per lot, however many versions");
        assert_eq!(
            drain(&mut sub),
            vec![
                Update::LotChanged {
                    epoch: e(),
                    lot: lot("a", 1000),
                    previous_version: Some(0),
                    skipped: 999
                },
                Update::LotChanged {
                    epoch: e(),
                    lot: lot("b", 1000),
                    previous_version: Some(0),
                    skipped: 999
                },
            ]
        );
        assert_eq!(sub.skipped(), 1998);
    }

    #[test]
    fn a_fast_display_is_not_held_back_by_a_slow_one() {
        let fanout = Fanout::default();
        let mut slow = fanout.subscribe(vec![], Some(e()), ConnectionState::Live);
        let mut fast = fanout.subscribe(vec![], Some(e()), ConnectionState::Live);
        drain(&mut fast);
        for seq in 1..=3 {
            fanout.publish_lot(&lot("a", seq), &e(), Some(seq - 1));
            let got = drain(&mut fast);
            assert_eq!(got.len(), 1);
            assert!(
                matches!(&got[0], Update::LotChanged { lot, skipped: 0, .. } if lot.seq == seq)
            );
        }
        assert_eq!(slow.pending(), 3, "snapshot, state and one slot for lot a");
        assert_eq!(drain(&mut slow).len(), 3);
    }

    #[test]
    fn a_resync_supersedes_pending_changes() {
        let fanout = Fanout::default();
        let mut sub = fanout.subscribe(vec![], Some(e()), ConnectionState::Live);
        drain(&mut sub);
        fanout.publish_lot(&lot("a", 5), &e(), Some(4));
        fanout.publish_state(ConnectionState::Syncing);
        fanout.publish_resync(&[lot("a", 9)], &Arc::from("e2"), true);
        fanout.publish_lot(&lot("b", 10), &Arc::from("e2"), None);
        assert_eq!(
            drain(&mut sub),
            vec![
                Update::State(ConnectionState::Syncing),
                Update::Resynced {
                    lots: vec![lot("a", 9)],
                    epoch: Arc::from("e2"),
                    epoch_changed: true
                },
                Update::LotChanged {
                    epoch: Arc::from("e2"),
                    lot: lot("b", 10),
                    previous_version: None,
                    skipped: 0
                },
            ]
        );
    }

    #[test]
    fn only_the_newest_state_is_kept() {
        let fanout = Fanout::default();
        let mut sub = fanout.subscribe(vec![], Some(e()), ConnectionState::Connecting);
        fanout.publish_state(ConnectionState::Syncing);
        fanout.publish_state(ConnectionState::Live);
        assert_eq!(
            drain(&mut sub),
            vec![
                Update::Snapshot {
                    lots: vec![],
                    epoch: Some(e()),
                },
                Update::State(ConnectionState::Live)
            ]
        );
    }

    #[tokio::test]
    async fn recv_wakes_on_publish_and_ends_on_close() {
        let fanout = Arc::new(Fanout::default());
        let mut sub = fanout.subscribe(vec![], Some(e()), ConnectionState::Live);
        drain(&mut sub);
        let publisher = fanout.clone();
        let task = tokio::spawn(async move {
            publisher.publish_lot(&lot("a", 1), &e(), None);
            publisher.close();
        });
        assert!(matches!(sub.recv().await, Some(Update::LotChanged { .. })));
        task.await.unwrap();
        assert_eq!(sub.recv().await, None);
    }

    #[test]
    fn dropped_subscriptions_are_pruned() {
        let fanout = Fanout::default();
        let sub = fanout.subscribe(vec![], Some(e()), ConnectionState::Live);
        drop(sub);
        let _other = fanout.subscribe(vec![], Some(e()), ConnectionState::Live);
        assert_eq!(fanout.queues().len(), 1);
    }
}
