//! The notice log a terminal-API server serves from: a [`NoticeRing`] of one history
//! (its epoch), plus two watches that wake waiting streams and fetches.
//!
//! - `head`: the last notice in the ring. Streams wake on it.
//! - `ready`: the last sequence a fetch can be answered at. On the master it is the
//!   replica's applied position (it trails `head`); on a terminal server it equals
//!   `head`, because a notice enters its ring only once the mirror holds that version.
//!
//! The epoch lives under the same lock as the ring, so a reader never pairs one
//! history's sequence with another's identity.

use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::ring::{NoticeRing, Truncated};
use crate::protocol::{Notice, Seq};

struct Inner {
    epoch: String,
    ring: NoticeRing,
}

/// A history's recent notices and its `head`/`ready` positions. Share it in an `Arc`.
///
/// ```
/// use lotsync::serve::NoticeLog;
/// # use lotsync::protocol::{Notice, OpKind};
/// let log = NoticeLog::new("epoch-1", 1000, 0);
/// log.publish(vec![Notice { seq: 1, lot_id: "a".into(), kind: OpKind::Bid, at: chrono::Utc::now(), lot: None }]);
/// log.set_ready(1);
/// assert_eq!((log.head(), log.ready()), (1, 1));
/// assert_eq!(log.after(0, 10).unwrap().1.len(), 1);
/// ```
pub struct NoticeLog {
    inner: Mutex<Inner>,
    head: watch::Sender<Seq>,
    ready: watch::Sender<Seq>,
    /// Bumped on every reset, so waiters notice a history change even when the head
    /// happens to land on the same number.
    resets: watch::Sender<u64>,
}

impl std::fmt::Debug for NoticeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeLog")
            .field("epoch", &self.epoch())
            .field("head", &self.head())
            .field("ready", &self.ready())
            .finish()
    }
}

impl NoticeLog {
    /// An empty log of history `epoch` at `head`, retaining `capacity` notices.
    pub fn new(epoch: impl Into<String>, capacity: usize, head: Seq) -> NoticeLog {
        NoticeLog {
            inner: Mutex::new(Inner {
                epoch: epoch.into(),
                ring: NoticeRing::new(capacity, head),
            }),
            head: watch::Sender::new(head),
            ready: watch::Sender::new(head),
            resets: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change under this lock is a single step, so a poisoned lock is sound.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Identity of the history.
    pub fn epoch(&self) -> String {
        self.lock().epoch.clone()
    }

    /// Last sequence in the ring.
    pub fn head(&self) -> Seq {
        *self.head.borrow()
    }

    /// Last sequence a fetch can be answered at.
    pub fn ready(&self) -> Seq {
        *self.ready.borrow()
    }

    /// Oldest retained sequence (0 when nothing is retained).
    pub fn oldest(&self) -> Seq {
        self.lock().ring.oldest()
    }

    /// Watch `head`.
    pub fn watch_head(&self) -> watch::Receiver<Seq> {
        self.head.subscribe()
    }

    /// Watch `ready`.
    pub fn watch_ready(&self) -> watch::Receiver<Seq> {
        self.ready.subscribe()
    }

    /// Watch resets (new histories and jumps).
    pub fn watch_resets(&self) -> watch::Receiver<u64> {
        self.resets.subscribe()
    }

    /// Append notices that continue the sequence and move `head`. Returns the sequence
    /// of the first notice that did not follow (it and the rest are dropped).
    pub fn publish(&self, notices: Vec<Notice>) -> Result<(), Seq> {
        let (result, head) = {
            let mut inner = self.lock();
            let result = inner.ring.extend(notices);
            (result, inner.ring.head())
        };
        self.head
            .send_if_modified(|h| std::mem::replace(h, head) != head);
        result
    }

    /// Record that fetches can now be answered at `ready`.
    pub fn set_ready(&self, ready: Seq) {
        self.ready
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }

    /// Continue as history `epoch` at `head` with nothing retained: every resume point
    /// before it is answered with a reset. `ready` moves to `head` too.
    pub fn reset(&self, epoch: &str, head: Seq) {
        {
            let mut inner = self.lock();
            inner.epoch = epoch.to_owned();
            inner.ring.reset(head);
        }
        self.ready.send_replace(head);
        self.head.send_replace(head);
        self.resets.send_modify(|n| *n += 1);
    }

    /// The epoch and the retained notices after `after` (at most `limit`), read together.
    pub fn after(&self, after: Seq, limit: usize) -> Result<(String, Vec<Notice>), Truncated> {
        let inner = self.lock();
        let notices = inner.ring.after(after, limit)?;
        Ok((inner.epoch.clone(), notices))
    }

    /// The epoch and head, read together.
    pub fn position(&self) -> (String, Seq) {
        let inner = self.lock();
        (inner.epoch.clone(), inner.ring.head())
    }

    /// Commit time of a retained notice.
    pub fn at_of(&self, seq: Seq) -> Option<DateTime<Utc>> {
        self.lock().ring.at_of(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::OpKind;

    fn notice(seq: Seq) -> Notice {
        Notice {
            seq,
            lot_id: "a".into(),
            kind: OpKind::Bid,
            at: Utc::now(),
            lot: None,
        }
    }

    #[tokio::test]
    async fn publishing_wakes_head_watchers_and_reset_changes_history() {
        let log = NoticeLog::new("e1", 10, 0);
        let mut head = log.watch_head();
        let mut resets = log.watch_resets();
        log.publish(vec![notice(1), notice(2)]).unwrap();
        head.changed().await.unwrap();
        assert_eq!(*head.borrow_and_update(), 2);
        assert_eq!(log.ready(), 0, "ready moves only when told");
        assert_eq!(log.publish(vec![notice(4)]), Err(4));
        log.reset("e2", 7);
        resets.changed().await.unwrap();
        assert_eq!(log.position(), ("e2".to_owned(), 7));
        assert_eq!(log.ready(), 7);
        assert!(log.after(2, 10).is_err());
    }
}
