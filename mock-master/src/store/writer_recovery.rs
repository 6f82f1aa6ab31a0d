//! How the writer comes back from a failed batch.
//!
//! A failed batch leaves one question open: did the database commit it? A COMMIT
//! whose answer was lost with the connection may have happened or not. So before
//! anything else the writer asks the database for its epoch and its head (reconnecting
//! with capped, jittered backoff while the primary is unreachable, and refusing the
//! commands that arrive meanwhile with "unavailable"):
//!
//! - the head is where it was: nothing was written; the batch's callers are told the
//!   store is unavailable (503), and may safely ask again;
//! - the head moved by exactly the batch's operations: the commit happened; the batch
//!   is published and answered as if nothing had failed;
//! - the head moved otherwise: the log is the truth; its new entries are published
//!   (the notice stream never skips a sequence) and the callers are told "unavailable";
//! - the head went back, or the epoch changed: the history this writer continues is
//!   gone (a restored or replaced database). Every write is refused until the master
//!   restarts and takes the database's history as it now is.
//!
//! Either way the next sequence is the database's head plus one: none is used twice.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use lotsync::protocol::{Notice, Seq};

use super::StoreError;
use super::backoff::Backoff;
use super::health::Part;
use super::primary::{Command, Failed, Writer, load_entries};
use super::schema;

/// What the database said after a failure.
enum Confirmed {
    /// Its head, and the log entries after the head the writer had before the batch.
    Head(Seq, Vec<Notice>),
    /// It holds another history than the one this writer continues.
    LostHistory(String),
    /// The store stopped while waiting for the database.
    Stopped,
}

impl Writer {
    /// After a failed batch: find out what the primary holds, answer the batch's
    /// callers accordingly and continue from the database's head. Returns false when
    /// the store stopped meanwhile.
    pub(super) fn recover(
        &mut self,
        head_before: Seq,
        failed: Failed,
        rx: &Receiver<Command>,
    ) -> bool {
        let Failed {
            error,
            done,
            rest,
            notices,
        } = failed;
        let transient = error.is_transient();
        if transient {
            tracing::warn!(%error, head_before, "a batch failed on the primary; asking it what it holds");
        } else {
            tracing::error!(%error, head_before, "commit failed; asking the primary what it holds");
        }
        let unavailable = || StoreError::Unavailable(Part::Writer);
        for command in rest {
            command.refuse(unavailable());
        }
        match self.confirm(head_before, transient, rx) {
            Confirmed::Head(head, found)
                if !notices.is_empty() && same_entries(&found, &notices) =>
            {
                tracing::warn!(
                    head,
                    "the failed batch was committed after all; answering it"
                );
                self.monitor.set_up(Part::Writer);
                self.committed(notices, done);
                true
            }
            Confirmed::Head(head, found) => {
                if !found.is_empty() {
                    tracing::warn!(
                        head_before,
                        head,
                        "the primary holds operations this writer did not confirm; publishing them"
                    );
                    self.notices.publish(found);
                }
                self.head = head;
                for d in done {
                    d.fail(if transient {
                        unavailable()
                    } else {
                        StoreError::Corrupt(format!("commit failed: {error}"))
                    });
                }
                true
            }
            Confirmed::LostHistory(why) => {
                tracing::error!(
                    why,
                    "the primary no longer holds this master's history; refusing every write until the master restarts"
                );
                self.lost_history = true;
                self.monitor.set_down(Part::Writer);
                for d in done {
                    d.fail(unavailable());
                }
                true
            }
            Confirmed::Stopped => {
                for d in done {
                    d.fail(StoreError::Closed);
                }
                false
            }
        }
    }

    /// Read the primary's epoch, head and the entries after `head_before`, on the
    /// current connection first unless it is known broken, then on new ones with
    /// backoff until the database answers or the store stops.
    fn confirm(&mut self, head_before: Seq, reconnect: bool, rx: &Receiver<Command>) -> Confirmed {
        let mut backoff = Backoff::new();
        let mut reconnect = reconnect;
        loop {
            if self.monitor.stopping() {
                return Confirmed::Stopped;
            }
            let attempt = (|| {
                if reconnect {
                    self.conn = self.connection.connect()?;
                }
                let epoch = schema::meta_get(&mut *self.conn, "epoch")?;
                let (_, head) = schema::log_bounds(&mut *self.conn)?;
                let found = if head > head_before {
                    load_entries(&mut *self.conn, head_before, head)?
                } else {
                    Vec::new()
                };
                Ok::<_, StoreError>((epoch, head, found))
            })();
            match attempt {
                Ok((epoch, head, found)) => {
                    if let Some(outage) = self.monitor.set_up(Part::Writer) {
                        tracing::info!(
                            outage_ms = outage.as_millis() as u64,
                            attempts = backoff.failures(),
                            head,
                            "the writer has the primary again"
                        );
                    }
                    if epoch.as_deref() != Some(self.connection.epoch.as_str()) {
                        return Confirmed::LostHistory(format!(
                            "the primary's epoch is {epoch:?}, not {:?}",
                            self.connection.epoch
                        ));
                    }
                    if head < head_before {
                        return Confirmed::LostHistory(format!(
                            "the primary's head went back from {head_before} to {head}"
                        ));
                    }
                    return Confirmed::Head(head, found);
                }
                Err(e) => {
                    if self.monitor.set_down(Part::Writer) {
                        tracing::error!(error = %e, "the writer lost the primary; reconnecting with backoff");
                    } else {
                        tracing::debug!(error = %e, attempts = backoff.failures(), "the primary is still unreachable");
                    }
                    reconnect = true;
                    if !self.wait_refusing(backoff.next_wait(), rx) {
                        return Confirmed::Stopped;
                    }
                }
            }
        }
    }

    /// Wait `wait`, refusing every command that arrives meanwhile. Returns false when
    /// the store stops.
    fn wait_refusing(&self, wait: Duration, rx: &Receiver<Command>) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.monitor.stopping() {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match rx.recv_timeout(left) {
                Ok(command) => {
                    if !command.refuse(StoreError::Unavailable(Part::Writer)) {
                        return false; // Shutdown
                    }
                }
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }
}

/// Whether the entries read from the log are exactly the batch's operations.
fn same_entries(found: &[Notice], appended: &[Notice]) -> bool {
    found.len() == appended.len()
        && found
            .iter()
            .zip(appended)
            .all(|(f, a)| f.seq == a.seq && f.lot_id == a.lot_id && f.kind == a.kind)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{SyncSender, sync_channel};
    use std::sync::{Arc, Mutex};

    use chrono::Utc;
    use lotsync::protocol::{LotInput, LotStatus};
    use tokio::sync::oneshot;

    use super::*;
    use crate::metrics::Metrics;
    use crate::store::engine::{
        Access, Conn, DbUrl, Dialect, Durability, Row, Value, args, connect,
    };
    use crate::store::health::Monitor;
    use crate::store::log_tail::LogTail;
    use crate::store::primary::{Connection, WriterOptions, ensure_epoch};
    use crate::store::schema::{Role, migrate};

    /// How the next COMMIT fails: after it happened, or instead of it. Either way the
    /// writer only sees a lost connection.
    #[derive(Debug, Clone, Copy)]
    enum Lose {
        AnswerOfCommit,
        Commit,
    }

    /// A connection whose next COMMIT fails as told.
    struct Flaky {
        inner: Box<dyn Conn>,
        next: Arc<Mutex<Option<Lose>>>,
    }

    fn lost() -> StoreError {
        StoreError::Io(std::io::ErrorKind::ConnectionReset.into())
    }

    impl Conn for Flaky {
        fn dialect(&self) -> Dialect {
            self.inner.dialect()
        }
        fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
            self.inner.execute(sql, params)
        }
        fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
            self.inner.query(sql, params)
        }
        fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
            if sql == "COMMIT"
                && let Some(lose) = self.next.lock().unwrap().take()
            {
                if let Lose::AnswerOfCommit = lose {
                    self.inner.batch(sql)?;
                }
                return Err(lost());
            }
            self.inner.batch(sql)
        }
    }

    struct Harness {
        url: DbUrl,
        tail: Arc<LogTail>,
        next: Arc<Mutex<Option<Lose>>>,
        tx: SyncSender<Command>,
        thread: Option<std::thread::JoinHandle<()>>,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn start() -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let url = DbUrl::Sqlite(dir.path().join("primary.db"));
            let mut conn = connect(&url, Access::Write(Durability::Off)).unwrap();
            migrate(&mut *conn, Role::Primary).unwrap();
            let epoch = ensure_epoch(&mut *conn).unwrap();
            let tail = Arc::new(LogTail::new(epoch.clone(), 100, vec![], 0, 0));
            let next = Arc::new(Mutex::new(None));
            let writer = Writer::new(
                Box::new(Flaky {
                    inner: conn,
                    next: next.clone(),
                }),
                Connection {
                    url: url.clone(),
                    durability: Durability::Off,
                    epoch,
                },
                tail.clone(),
                Arc::new(Metrics::default()),
                Arc::new(Monitor::default()),
                0,
                WriterOptions {
                    retention: 100,
                    anti_snipe: Duration::ZERO,
                    idempotency_retention: Duration::from_secs(3600),
                },
            );
            let (tx, rx) = sync_channel(16);
            let thread = std::thread::spawn(move || writer.run(rx));
            Harness {
                url,
                tail,
                next,
                tx,
                thread: Some(thread),
                _dir: dir,
            }
        }

        fn lose_next(&self, lose: Lose) {
            *self.next.lock().unwrap() = Some(lose);
        }

        fn put(&self, id: &str) -> Result<Seq, StoreError> {
            let now = Utc::now();
            let input = LotInput {
                title: id.into(),
                attributes: Default::default(),
                currency: "EUR".into(),
                starting_price: 1000,
                increment: 100.into(),
                reserve_price: None,
                status: Some(LotStatus::Open),
                starts_at: now - chrono::Duration::minutes(1),
                ends_at: now + chrono::Duration::hours(1),
                lane: None,
                run_order: None,
            };
            let (reply, answer) = oneshot::channel();
            let id = id.to_owned();
            self.tx.send(Command::Put { id, input, reply }).unwrap();
            answer.blocking_recv().unwrap().map(|(lot, _)| lot.lot.seq)
        }

        fn bid(&self, lot: &str, amount: i64, key: &str) -> Result<(Seq, bool), StoreError> {
            let (reply, answer) = oneshot::channel();
            self.tx
                .send(Command::Bid {
                    bidder: "alice".into(),
                    lot_id: lot.into(),
                    request: lotsync::protocol::BidRequest::amount(amount),
                    key: Some(key.into()),
                    reply,
                })
                .unwrap();
            answer
                .blocking_recv()
                .unwrap()
                .map(|o| (o.receipt.bid.seq, o.replayed))
        }

        /// The log as the database holds it: (seq, lot).
        fn log(&self) -> Vec<(Seq, String)> {
            let mut conn = connect(&self.url, Access::Read).unwrap();
            conn.query("SELECT seq, lot_id FROM oplog ORDER BY seq", args![])
                .unwrap()
                .iter()
                .map(|r| (r.int(0).unwrap() as Seq, r.text(1).unwrap()))
                .collect()
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = self.tx.send(Command::Shutdown);
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
        }
    }

    // The writer reconnects after the failure, so each harness loses one commit.

    #[test]
    fn a_commit_whose_answer_was_lost_is_answered_as_committed() {
        let h = Harness::start();
        assert_eq!(h.put("a").unwrap(), 1);
        h.lose_next(Lose::AnswerOfCommit);
        // The writer reconnects, finds its batch in the log and answers it.
        assert_eq!(h.put("b").unwrap(), 2);
        assert_eq!(h.tail.head(), 2);
        assert_eq!(h.put("c").unwrap(), 3, "no sequence used twice");
        let seqs: Vec<Seq> = h.tail.after(0, 10).unwrap().iter().map(|n| n.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3], "every notice published once");
        assert_eq!(
            h.log(),
            vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]
        );

        // An idempotent bid whose commit answer was lost is placed once.
        let h = Harness::start();
        assert_eq!(h.put("a").unwrap(), 1);
        h.lose_next(Lose::AnswerOfCommit);
        assert_eq!(h.bid("a", 1000, "k1").unwrap(), (2, false));
        assert_eq!(h.bid("a", 1000, "k1").unwrap(), (2, true));
        assert_eq!(h.log(), vec![(1, "a".into()), (2, "a".into())]);
    }

    #[test]
    fn a_commit_that_did_not_happen_is_unavailable_and_leaves_nothing() {
        let h = Harness::start();
        assert_eq!(h.put("a").unwrap(), 1);
        h.lose_next(Lose::Commit);
        assert!(matches!(
            h.put("b"),
            Err(StoreError::Unavailable(Part::Writer))
        ));
        assert_eq!(h.tail.head(), 1, "nothing published");
        assert_eq!(h.log(), vec![(1, "a".into())], "nothing half-applied");
        // Asked again, the write gets the next sequence: no gap, no reuse.
        assert_eq!(h.put("b").unwrap(), 2);
        assert_eq!(h.log(), vec![(1, "a".into()), (2, "b".into())]);

        let h = Harness::start();
        assert_eq!(h.put("a").unwrap(), 1);
        h.lose_next(Lose::Commit);
        assert!(matches!(
            h.bid("a", 1000, "k1"),
            Err(StoreError::Unavailable(Part::Writer))
        ));
        assert_eq!(
            h.bid("a", 1000, "k1").unwrap(),
            (2, false),
            "the key was not kept"
        );
        assert_eq!(h.log(), vec![(1, "a".into()), (2, "a".into())]);
    }
}
