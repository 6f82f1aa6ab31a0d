//! The replicator: reads the primary's operation log, watches it for new entries,
//! parses each entry's operation and executes it on the replica.
//!
//! It runs on its own OS thread with its own connections (the replica for writing, the
//! primary read-only). Each batch of entries is applied in one replica transaction that
//! also records `applied_seq`, so after a crash the replica resumes exactly where its
//! last commit left it: nothing lost, nothing applied twice.

use std::sync::Arc;
use std::time::Duration;

use lotsync::protocol::Seq;
use rusqlite::{Connection, params};

use super::StoreError;
use super::oplog::{Entry, Op};
use super::schema::{self, parse_time};
use crate::chaos::Chaos;
use crate::notices::Notices;

/// Most entries applied in one replica transaction.
pub const MAX_APPLY: usize = 512;

/// How long the thread sleeps between checks when it has nothing it may do.
const IDLE: Duration = Duration::from_millis(100);

/// Make the replica follow the primary's epoch. A replica that follows another epoch,
/// is ahead of the primary, or is behind the retained log is rebuilt from the primary's
/// rows (one consistent read) with `applied = head`. Returns the applied sequence.
pub fn bootstrap(
    replica: &Connection,
    primary: &Connection,
    epoch: &str,
) -> Result<Seq, StoreError> {
    let read = primary.unchecked_transaction()?;
    let head: Option<i64> = read.query_row("SELECT max(seq) FROM oplog", [], |r| r.get(0))?;
    let oldest: Option<i64> = read.query_row("SELECT min(seq) FROM oplog", [], |r| r.get(0))?;
    let (head, oldest) = (head.unwrap_or(0) as Seq, oldest.unwrap_or(0) as Seq);
    let followed = schema::meta_get(replica, "epoch")?;
    let applied: i64 = replica.query_row(
        "SELECT applied_seq FROM replication_state WHERE id = 0",
        [],
        |r| r.get(0),
    )?;
    let applied = applied as Seq;
    let reachable = applied == head || (applied < head && applied + 1 >= oldest);
    if followed.as_deref() == Some(epoch) && reachable {
        return Ok(applied);
    }
    tracing::info!(head, applied, "rebuilding the replica from the primary");
    let lots: Vec<String> = read
        .prepare("SELECT data FROM lots")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let bids: Vec<(i64, String, String, i64, String)> = read
        .prepare("SELECT seq, lot_id, bidder, amount, at FROM bids")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    drop(read);
    let tx = replica.unchecked_transaction()?;
    tx.execute_batch("DELETE FROM lots; DELETE FROM bids;")?;
    for data in lots {
        schema::write_lot(&tx, &schema::decode_lot(&data)?)?;
    }
    for (seq, lot_id, bidder, amount, at) in bids {
        tx.execute(
            "INSERT INTO bids (seq, lot_id, bidder, amount, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![seq, lot_id, bidder, amount, at],
        )?;
    }
    tx.execute(
        "UPDATE replication_state SET applied_seq = ?1 WHERE id = 0",
        [head as i64],
    )?;
    schema::meta_set(&tx, "epoch", epoch)?;
    tx.commit()?;
    Ok(head)
}

/// The replicator thread's state.
pub struct Replicator {
    replica: Connection,
    log: Connection,
    notices: Arc<Notices>,
    chaos: Arc<Chaos>,
    applied: Seq,
}

impl Replicator {
    /// A replicator continuing from `applied`.
    pub fn new(
        replica: Connection,
        log: Connection,
        notices: Arc<Notices>,
        chaos: Arc<Chaos>,
        applied: Seq,
    ) -> Self {
        Replicator {
            replica,
            log,
            notices,
            chaos,
            applied,
        }
    }

    /// Sleep for `d` unless the store stops first; false when stopped.
    fn nap(&self, d: Duration) -> bool {
        self.notices.wait_beyond(Seq::MAX, d).is_some()
    }

    /// Apply the log until the store stops.
    pub fn run(mut self) {
        loop {
            let Some(head) = self.notices.wait_beyond(self.applied, IDLE) else {
                return;
            };
            if head <= self.applied {
                continue;
            }
            if self.chaos.replicator_paused() {
                if !self.nap(Duration::from_millis(20)) {
                    return;
                }
                continue;
            }
            let lag = self.chaos.replica_lag();
            let limit = if lag.is_some() { 1 } else { MAX_APPLY };
            let result = self.read_entries(limit).and_then(|entries| {
                if let Some(lag) = lag
                    && !self.nap(lag)
                {
                    return Ok(None);
                }
                self.apply(&entries).map(Some)
            });
            match result {
                Ok(Some(Some(applied))) => {
                    self.applied = applied;
                    self.notices.set_applied(applied);
                }
                Ok(Some(None)) => {}
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, applied = self.applied, "replication failed; retrying");
                    if !self.nap(IDLE) {
                        return;
                    }
                }
            }
        }
    }

    /// Read up to `limit` entries after the applied position.
    fn read_entries(&self, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut stmt = self.log.prepare_cached(
            "SELECT seq, lot_id, op, at FROM oplog WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![self.applied as i64, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut entries = Vec::new();
        for row in rows {
            let (seq, lot_id, op, at) = row?;
            entries.push(Entry {
                seq: seq as Seq,
                lot_id,
                op: Op::decode(&op)?,
                at: parse_time(&at)?,
            });
        }
        Ok(entries)
    }

    /// Execute entries on the replica and record the new applied position, in one
    /// transaction. Returns the new position, or `None` when there was nothing to do.
    fn apply(&mut self, entries: &[Entry]) -> Result<Option<Seq>, StoreError> {
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(None);
        };
        let first = self.applied + 1;
        let tx = self.replica.transaction()?;
        for (expected, entry) in (first..).zip(entries) {
            if entry.seq != expected {
                return Err(StoreError::Corrupt(format!(
                    "log gap: expected {expected}, found {}",
                    entry.seq
                )));
            }
            schema::execute_op(&tx, entry.seq, &entry.lot_id, &entry.op, entry.at)?;
        }
        tx.execute(
            "UPDATE replication_state SET applied_seq = ?1 WHERE id = 0",
            [last as i64],
        )?;
        tx.commit()?;
        Ok(Some(last))
    }
}
