//! The operation log's tail kept in memory: a [`NoticeLog`] (the ring the terminal API
//! serves notices, resumes and `/v1/changes` from, with its `head` and `ready` watches)
//! plus the wake-up of the replicator thread.
//!
//! The writer publishes each committed batch into the ring *before* `head` moves, so a
//! stream woken by `head` always finds the entries it was woken for. `ready` is the
//! replica's applied position: fetches wait on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lotsync::protocol::{Notice, Seq};
use lotsync::serve::{NoticeLog, Truncated};
use tokio::sync::watch;

/// What the replicator thread waits on.
struct Wake {
    head: Seq,
    stopped: bool,
}

/// The in-memory tail of the log and the watches derived from it.
pub struct LogTail {
    epoch: String,
    log: Arc<NoticeLog>,
    wake: Mutex<Wake>,
    /// Wakes the replicator thread when `head` moves (or at shutdown).
    wakeup: Condvar,
    /// Last entry a follower outside the store (the JetStream publisher) has taken;
    /// the writer prunes nothing after it. `Seq::MAX` while there is none.
    hold: AtomicU64,
}

impl LogTail {
    /// A tail holding at most `capacity` entries, starting from the log's last entries.
    pub fn new(
        epoch: String,
        capacity: usize,
        tail: Vec<Notice>,
        head: Seq,
        applied: Seq,
    ) -> LogTail {
        let base = tail.first().map_or(head, |n| n.seq - 1);
        let log = NoticeLog::new(epoch.clone(), capacity, base);
        if let Err(seq) = log.publish(tail) {
            tracing::warn!(seq, "the stored log tail has a gap; serving from after it");
            log.reset(&epoch, head);
        }
        log.set_ready(applied);
        LogTail {
            epoch,
            log: Arc::new(log),
            wake: Mutex::new(Wake {
                head,
                stopped: false,
            }),
            wakeup: Condvar::new(),
            hold: AtomicU64::new(Seq::MAX),
        }
    }

    /// Keep every log entry after `seq` in the primary until it moves on (the
    /// JetStream publisher holds the entries it has not published yet).
    pub fn hold_from(&self, seq: Seq) {
        self.hold.store(seq, Ordering::Release);
    }

    /// Entries after this one must not be pruned: the lower of the replica's position
    /// and what [`LogTail::hold_from`] holds, though a hold never reaches back before
    /// `oldest_held` (so an unreachable NATS cannot grow the log without bound).
    pub fn prune_floor(&self, oldest_held: Seq) -> Seq {
        let hold = self.hold.load(Ordering::Acquire).max(oldest_held);
        self.applied().min(hold)
    }

    /// The ring and watches the terminal API serves from.
    pub fn log(&self) -> &Arc<NoticeLog> {
        &self.log
    }

    /// Identity of this history.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Last sequence committed.
    pub fn head(&self) -> Seq {
        self.log.head()
    }

    /// Last sequence applied to the replica.
    pub fn applied(&self) -> Seq {
        self.log.ready()
    }

    /// Watch `head`.
    pub fn watch_head(&self) -> watch::Receiver<Seq> {
        self.log.watch_head()
    }

    /// Watch `applied`.
    pub fn watch_applied(&self) -> watch::Receiver<Seq> {
        self.log.watch_ready()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wake> {
        // Single-field updates only: a poisoned lock is still consistent.
        self.wake.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record newly committed entries (in order, continuing the sequence) and move `head`.
    pub fn publish(&self, committed: Vec<Notice>) {
        let Some(last) = committed.last().map(|n| n.seq) else {
            return;
        };
        if let Err(seq) = self.log.publish(committed) {
            // The writer hands out sequences one by one: this cannot happen unless the
            // log was changed behind the master's back. Resume points before it reset.
            tracing::error!(seq, "committed entries do not continue the log");
            self.log.reset(&self.epoch, last);
        }
        self.lock().head = last;
        self.wakeup.notify_all();
    }

    /// Record the replica's new applied position.
    pub fn set_applied(&self, applied: Seq) {
        self.log.set_ready(applied);
    }

    /// Oldest retained sequence, 0 when nothing is retained.
    pub fn oldest(&self) -> Seq {
        self.log.oldest()
    }

    /// Entries after `after`, at most `limit`. Fails when `after` is older than the
    /// retained history or beyond `head` (a position from another history).
    pub fn after(&self, after: Seq, limit: usize) -> Result<Vec<Notice>, Truncated> {
        self.log.after(after, limit).map(|(_, notices)| notices)
    }

    /// Commit time of a retained entry.
    pub fn at_of(&self, seq: Seq) -> Option<DateTime<Utc>> {
        self.log.at_of(seq)
    }

    /// Block (a thread, not a task) until `head` passes `applied`, the timeout elapses,
    /// or the store stops. Returns `None` once stopped, else the head.
    pub fn wait_beyond(&self, applied: Seq, timeout: Duration) -> Option<Seq> {
        let wake = self.lock();
        let (wake, _) = self
            .wakeup
            .wait_timeout_while(wake, timeout, |w| w.head <= applied && !w.stopped)
            .unwrap_or_else(|e| e.into_inner());
        (!wake.stopped).then_some(wake.head)
    }

    /// Wake the replicator thread (after a chaos change, say).
    pub fn wake(&self) {
        self.wakeup.notify_all();
    }

    /// Tell the replicator thread to stop.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.wakeup.notify_all();
    }
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
            lot: None,
        }
    }

    #[test]
    fn serves_the_stored_tail_and_what_is_published() {
        let tail = LogTail::new("e".into(), 3, (4..=5).map(notice).collect(), 5, 5);
        assert_eq!((tail.oldest(), tail.head(), tail.applied()), (4, 5, 5));
        tail.publish((6..=7).map(notice).collect());
        let seqs: Vec<Seq> = tail.after(4, 10).unwrap().iter().map(|n| n.seq).collect();
        assert_eq!(seqs, vec![5, 6, 7]);
        assert!(tail.after(3, 10).is_err(), "capacity 3 keeps 5..=7");
        assert!(tail.at_of(6).is_some());
    }

    #[test]
    fn waiting_returns_on_publish_and_stop() {
        let tail = Arc::new(LogTail::new("e".into(), 10, vec![], 0, 0));
        assert_eq!(tail.wait_beyond(0, Duration::from_millis(1)), Some(0));
        let waiter = {
            let tail = tail.clone();
            std::thread::spawn(move || tail.wait_beyond(0, Duration::from_secs(10)))
        };
        tail.publish(vec![notice(1)]);
        assert_eq!(waiter.join().unwrap(), Some(1));
        tail.stop();
        assert_eq!(tail.wait_beyond(1, Duration::from_secs(10)), None);
    }
}
