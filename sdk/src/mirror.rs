//! The local mirror of every lot, version-checked so a display never goes back in time.
//!
//! Like the LaunchDarkly SDK's store: `resync` replaces the whole set from a snapshot,
//! `apply` takes one lot only if its version is newer than the one held. Every change
//! is handed to the fan-out while the write lock is held, so displays see changes in
//! the order the mirror made them even when fetches complete out of order.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::fanout::{Fanout, Subscription};
use crate::protocol::{Lot, Seq};
use crate::state::ConnectionState;

#[derive(Debug, Default)]
struct MirrorState {
    lots: BTreeMap<String, Arc<Lot>>,
    epoch: Option<Arc<str>>,
    /// Highest sequence the mirror is known to reflect: the snapshot's, raised by
    /// every newer lot applied.
    seq: Seq,
    state: Option<ConnectionState>,
    /// After a history rewound under the same epoch: versions up to here may be the
    /// abandoned history's, so copies kept elsewhere (memcached) are not trusted.
    rewound_upto: Seq,
}

#[derive(Debug)]
pub(crate) struct MirrorShared {
    state: RwLock<MirrorState>,
    pub fanout: Fanout,
    /// Counts changes, so a relay can wait for the lots its notices are waiting on.
    changes: watch::Sender<u64>,
}

impl Default for MirrorShared {
    fn default() -> Self {
        MirrorShared {
            state: RwLock::default(),
            fanout: Fanout::default(),
            changes: watch::Sender::new(0),
        }
    }
}

/// What [`Mirror::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The lot was new to the mirror.
    Inserted,
    /// The lot replaced an older version.
    Updated { previous: Seq },
    /// The mirror already held this version or a newer one: nothing changed.
    NotNewer { held: Seq },
    /// The lot was read from another history than the mirror's (a fetch or cache
    /// read that began before an epoch change): nothing changed.
    OtherEpoch,
}

/// Read access to the mirror of every lot. Cheap to clone.
///
/// ```no_run
/// # async fn demo(client: lotsync::Client) {
/// let mirror = client.mirror();
/// if let Some(lot) = mirror.get("lot-17") {
///     println!("{} at {} (version {})", lot.title, lot.current_price, lot.seq);
/// }
/// println!("{} lots as of sequence {}", mirror.len(), mirror.seq());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    shared: Arc<MirrorShared>,
}

impl Mirror {
    pub(crate) fn shared(&self) -> &MirrorShared {
        &self.shared
    }

    fn read(&self) -> RwLockReadGuard<'_, MirrorState> {
        // Writers never leave the map half-updated, so a poisoned lock is still sound.
        self.shared.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, MirrorState> {
        self.shared.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// One lot, if the mirror holds it.
    pub fn get(&self, id: &str) -> Option<Arc<Lot>> {
        self.read().lots.get(id).cloned()
    }

    /// Every lot, ordered by id.
    pub fn lots(&self) -> Vec<Arc<Lot>> {
        self.read().lots.values().cloned().collect()
    }

    /// Number of lots held.
    pub fn len(&self) -> usize {
        self.read().lots.len()
    }

    /// Whether the mirror holds no lot.
    pub fn is_empty(&self) -> bool {
        self.read().lots.is_empty()
    }

    /// The sequence the mirror is at: the snapshot's, or the newest version applied since.
    pub fn seq(&self) -> Seq {
        self.read().seq
    }

    /// Epoch of the master history the mirror follows (`None` before the first snapshot).
    pub fn epoch(&self) -> Option<String> {
        self.read().epoch.as_deref().map(str::to_owned)
    }

    /// Whether what the mirror holds may be old (the client is not live).
    pub fn is_stale(&self) -> bool {
        self.read().state.is_none_or(|s| s.is_stale())
    }

    /// Apply one lot read from history `epoch` if the mirror follows that history and
    /// the lot is newer than the held version. Both checks happen under one lock, so a
    /// read that began in an old epoch can never land in a new one.
    pub(crate) fn apply(&self, epoch: &str, lot: Lot) -> Applied {
        let mut state = self.write();
        let Some(held_epoch) = state.epoch.clone().filter(|held| &**held == epoch) else {
            return Applied::OtherEpoch;
        };
        let previous = state.lots.get(&lot.id).map(|held| held.seq);
        if let Some(held) = previous.filter(|held| *held >= lot.seq) {
            return Applied::NotNewer { held };
        }
        state.seq = state.seq.max(lot.seq);
        let lot = Arc::new(lot);
        state.lots.insert(lot.id.clone(), lot.clone());
        self.shared.fanout.publish_lot(&lot, &held_epoch, previous);
        drop(state);
        self.shared.changes.send_modify(|n| *n += 1);
        match previous {
            Some(previous) => Applied::Updated { previous },
            None => Applied::Inserted,
        }
    }

    /// Load a snapshot consistent as of `seq`. Within the same history a lot is only
    /// replaced by a newer version (fetches may have moved past the snapshot); a new
    /// epoch, or the same epoch `rewound` to an earlier head (a restored backup, a
    /// promoted standby that had not seen everything), replaces everything, since its
    /// versions are not comparable with the ones held. Returns whether the history
    /// changed.
    pub(crate) fn resync(&self, epoch: &str, seq: Seq, lots: Vec<Lot>, rewound: bool) -> bool {
        let mut state = self.write();
        let other_epoch = state.epoch.as_deref().is_some_and(|held| held != epoch);
        let epoch_changed = rewound || other_epoch;
        if other_epoch {
            state.rewound_upto = 0;
        } else if rewound {
            state.rewound_upto = state.rewound_upto.max(state.seq);
        }
        let mut fresh: BTreeMap<String, Arc<Lot>> = BTreeMap::new();
        for lot in lots {
            let keep_held = !epoch_changed
                && state
                    .lots
                    .get(&lot.id)
                    .is_some_and(|held| held.seq > lot.seq);
            let chosen = match state.lots.get(&lot.id) {
                Some(held) if keep_held => held.clone(),
                _ => Arc::new(lot),
            };
            fresh.insert(chosen.id.clone(), chosen);
        }
        state.seq = if epoch_changed {
            seq
        } else {
            fresh
                .values()
                .map(|l| l.seq)
                .fold(seq.max(state.seq), Seq::max)
        };
        state.lots = fresh;
        let epoch: Arc<str> = match state.epoch.take() {
            Some(held) if &*held == epoch => held,
            _ => Arc::from(epoch),
        };
        state.epoch = Some(epoch.clone());
        let all: Vec<Arc<Lot>> = state.lots.values().cloned().collect();
        self.shared
            .fanout
            .publish_resync(&all, &epoch, epoch_changed);
        drop(state);
        self.shared.changes.send_modify(|n| *n += 1);
        epoch_changed
    }

    /// Versions up to this one may belong to a history that was rewound under the
    /// current epoch (0 when none was): a cached copy at such a version is not trusted.
    pub(crate) fn rewound_upto(&self) -> Seq {
        self.read().rewound_upto
    }

    /// Wakes on every change of the mirror's lots.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn watch_changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Record and announce a connection state.
    pub(crate) fn set_state(&self, new: ConnectionState) {
        let mut state = self.write();
        if state.state == Some(new) {
            return;
        }
        state.state = Some(new);
        self.shared.fanout.publish_state(new);
    }

    /// Register a display: it gets the current lots first, atomically with respect to
    /// changes (the read lock keeps writers out while it registers).
    pub(crate) fn subscribe(&self) -> Subscription {
        let state = self.read();
        let lots = state.lots.values().cloned().collect();
        self.shared.fanout.subscribe(
            lots,
            state.epoch.clone(),
            state.state.unwrap_or(ConnectionState::Connecting),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::Update;

    fn lot(id: &str, seq: Seq, price: i64) -> Lot {
        let mut lot = Lot::example(id);
        lot.seq = seq;
        lot.current_price = price;
        lot
    }

    #[test]
    fn apply_is_version_checked() {
        // (held version, incoming version, expected outcome, expected version after)
        let table = [
            (None, 5, Applied::Inserted, 5),
            (Some(5), 6, Applied::Updated { previous: 5 }, 6),
            (Some(5), 5, Applied::NotNewer { held: 5 }, 5),
            (Some(9), 7, Applied::NotNewer { held: 9 }, 9),
            (
                Some(1),
                1_000_000,
                Applied::Updated { previous: 1 },
                1_000_000,
            ),
        ];
        for (held, incoming, expected, after) in table {
            let mirror = Mirror::default();
            mirror.resync("e1", 0, vec![], false);
            if let Some(held) = held {
                mirror.apply("e1", lot("a", held, 1));
            }
            assert_eq!(
                mirror.apply("e1", lot("a", incoming, 2)),
                expected,
                "{held:?} <- {incoming}"
            );
            assert_eq!(mirror.get("a").unwrap().seq, after);
        }
    }

    #[test]
    fn a_lot_of_another_epoch_is_never_applied() {
        let mirror = Mirror::default();
        assert_eq!(
            mirror.apply("e1", lot("a", 1, 1)),
            Applied::OtherEpoch,
            "no history yet"
        );
        mirror.resync("e2", 0, vec![], false);
        assert_eq!(mirror.apply("e1", lot("a", 9, 1)), Applied::OtherEpoch);
        assert!(mirror.get("a").is_none());
        assert_eq!(mirror.apply("e2", lot("a", 1, 1)), Applied::Inserted);
    }

    #[test]
    fn out_of_order_responses_never_regress() {
        let mirror = Mirror::default();
        mirror.resync("e1", 0, vec![], false);
        for seq in [3, 1, 7, 2, 7, 5, 8, 4] {
            mirror.apply("e1", lot("a", seq, seq as i64));
        }
        assert_eq!(mirror.get("a").unwrap().seq, 8);
        assert_eq!(mirror.get("a").unwrap().current_price, 8);
        assert_eq!(mirror.seq(), 8);
    }

    #[test]
    fn displays_see_only_forward_changes() {
        let mirror = Mirror::default();
        mirror.resync("e1", 0, vec![], false);
        let mut display = mirror.subscribe();
        for seq in [2, 1, 4, 3] {
            mirror.apply("e1", lot("a", seq, 0));
        }
        let versions: Vec<Seq> = std::iter::from_fn(|| display.try_recv())
            .filter_map(|u| match u {
                Update::LotChanged { lot, .. } => Some(lot.seq),
                _ => None,
            })
            .collect();
        // 2 then 4 (3 arrived after 4 and was dropped); the queue merged 2 into 4.
        assert_eq!(versions, vec![4]);
    }

    #[test]
    fn resync_in_the_same_epoch_keeps_newer_lots() {
        let mirror = Mirror::default();
        mirror.resync("e1", 10, vec![lot("a", 3, 1), lot("b", 4, 1)], false);
        mirror.apply("e1", lot("a", 12, 2));
        let changed = mirror.resync(
            "e1",
            11,
            vec![lot("a", 9, 3), lot("b", 11, 3), lot("c", 5, 3)],
            false,
        );
        assert!(!changed);
        assert_eq!(mirror.get("a").unwrap().seq, 12, "kept the newer lot");
        assert_eq!(mirror.get("b").unwrap().seq, 11);
        assert_eq!(mirror.get("c").unwrap().seq, 5);
        assert_eq!(mirror.seq(), 12);
    }

    #[test]
    fn resync_to_a_new_epoch_replaces_everything() {
        let mirror = Mirror::default();
        mirror.resync("e1", 100, vec![lot("a", 90, 1), lot("gone", 50, 1)], false);
        let changed = mirror.resync("e2", 3, vec![lot("a", 2, 7)], false);
        assert!(changed);
        assert_eq!(
            mirror.get("a").unwrap().seq,
            2,
            "versions of a new history restart"
        );
        assert!(mirror.get("gone").is_none());
        assert_eq!(mirror.seq(), 3);
        assert_eq!(mirror.epoch().as_deref(), Some("e2"));
    }

    #[test]
    fn a_rewound_history_replaces_what_it_does_not_have() {
        let mirror = Mirror::default();
        mirror.resync("e1", 10, vec![lot("a", 9, 1), lot("b", 4, 1)], false);
        mirror.apply("e1", lot("new", 10, 1));
        let mut display = mirror.subscribe();
        while display.try_recv().is_some() {}
        // The same epoch, restored to a backup taken at sequence 6: "a" at 9 and "new"
        // never happened there.
        let changed = mirror.resync("e1", 6, vec![lot("a", 5, 2), lot("b", 4, 1)], true);
        assert!(changed, "a rewound history is a changed history");
        assert_eq!(mirror.get("a").unwrap().seq, 5, "replaced, not kept");
        assert_eq!(mirror.get("a").unwrap().current_price, 2);
        assert!(mirror.get("new").is_none(), "what the history lost is gone");
        assert_eq!(mirror.seq(), 6);
        assert_eq!(
            mirror.rewound_upto(),
            10,
            "cached copies up to 10 are suspect"
        );
        assert!(matches!(
            display.try_recv(),
            Some(Update::Resynced { epoch_changed: true, ref epoch, .. }) if &**epoch == "e1"
        ));
        // And the new history's versions apply from there.
        assert_eq!(
            mirror.apply("e1", lot("a", 7, 3)),
            Applied::Updated { previous: 5 }
        );
    }

    #[test]
    fn updates_carry_the_epoch_of_their_lots() {
        let mirror = Mirror::default();
        let mut display = mirror.subscribe();
        assert_eq!(
            display.try_recv(),
            Some(Update::Snapshot {
                lots: vec![],
                epoch: None
            })
        );
        mirror.resync("e1", 1, vec![lot("a", 1, 1)], false);
        mirror.apply("e1", lot("a", 2, 2));
        let epochs: Vec<String> = std::iter::from_fn(|| display.try_recv())
            .filter_map(|update| match update {
                Update::Resynced { epoch, .. } | Update::LotChanged { epoch, .. } => {
                    Some(epoch.to_string())
                }
                _ => None,
            })
            .collect();
        assert_eq!(epochs, ["e1", "e1"]);
        mirror.resync("e2", 1, vec![lot("a", 1, 5)], false);
        let joined = mirror.subscribe().try_recv();
        assert!(
            matches!(joined, Some(Update::Snapshot { epoch: Some(ref e), .. }) if &**e == "e2"),
            "{joined:?}"
        );
    }

    #[test]
    fn staleness_follows_the_state() {
        let mirror = Mirror::default();
        assert!(mirror.is_stale());
        mirror.set_state(ConnectionState::Live);
        assert!(!mirror.is_stale());
        mirror.set_state(ConnectionState::Syncing);
        assert!(mirror.is_stale());
    }
}
