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
