//! The replicator: reads the primary's operation log, watches it for new entries,
//! parses each entry's operation and executes it on the replica.
//!
//! It runs on its own OS thread with its own connections (the replica for writing, the
//! primary read-only). Each batch of entries is applied in one replica transaction that
//! also records `applied_seq`, so after a crash the replica resumes exactly where its
//! last commit left it: nothing lost, nothing applied twice. After a failure (a server
//! restarted, a connection killed) it reconnects with backoff and reads `applied_seq`
//! again before going on, for the same reason.

use std::sync::Arc;
use std::time::Duration;

use lotsync::protocol::Seq;

use super::StoreError;
use super::backoff::Backoff;
use super::engine::{Access, Conn, DbUrl, Durability, args, connect};
use super::health::{Monitor, Part};
use super::log_tail::LogTail;
use super::oplog::{Entry, Op};
use super::schema::{self, Role, parse_time};
use crate::chaos::Chaos;

/// Most entries applied in one replica transaction.
pub const MAX_APPLY: usize = 512;

/// How long the thread sleeps between checks when it has nothing it may do.
const IDLE: Duration = Duration::from_millis(100);

/// Make the replica follow the primary's epoch. A replica that follows another epoch,
/// is ahead of the primary, or is behind the retained log is rebuilt from the primary's
/// rows (one consistent read) with `applied = head`. Returns the applied sequence.
pub fn bootstrap(
    replica: &mut dyn Conn,
    primary: &mut dyn Conn,
    epoch: &str,
) -> Result<Seq, StoreError> {
    let (oldest, head) = schema::in_snapshot(primary, schema::log_bounds)?;
    let followed = schema::meta_get(replica, "epoch")?;
    let applied = schema::applied_seq(replica)?;
    let reachable = applied == head || (applied < head && applied + 1 >= oldest);
    if followed.as_deref() == Some(epoch) && reachable {
        return Ok(applied);
    }
    tracing::info!(head, applied, "rebuilding the replica from the primary");
    let (head, lots, bids) = schema::in_snapshot(primary, |conn| {
        let (_, head) = schema::log_bounds(conn)?;
        let lots = conn
            .query("SELECT data FROM lots", &[])?
            .iter()
            .map(|r| schema::decode_lot(&r.text(0)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((head, lots, schema::load_all_bids(conn)?))
    })?;
    replica.begin_write()?;
    let rebuilt = (|| {
        replica.execute("DELETE FROM lots", &[])?;
        replica.execute("DELETE FROM bids", &[])?;
        for lot in &lots {
            schema::write_lot(replica, lot)?;
        }
        for bid in &bids {
            schema::write_bid(replica, bid)?;
        }
        schema::set_applied_seq(replica, head)?;
        schema::meta_set(replica, "epoch", epoch)?;
        replica.commit()
    })();
    if rebuilt.is_err() {
        let _ = replica.rollback();
    }
    rebuilt?;
    Ok(head)
}

/// Where the replicator's two databases are, to reconnect to them.
pub struct Endpoints {
    /// The replica, written by the replicator.
    pub replica: DbUrl,
    /// The primary, whose log the replicator reads.
    pub primary: DbUrl,
    /// Commit durability on the replica.
    pub durability: Durability,
    /// The history the replica follows.
    pub epoch: String,
}

/// The replicator thread's state.
pub struct Replicator {
    /// The replica, written only by this thread.
    replica: Box<dyn Conn>,
    /// The primary, read for the log.
    log: Box<dyn Conn>,
    endpoints: Endpoints,
    notices: Arc<LogTail>,
    chaos: Arc<Chaos>,
    monitor: Arc<Monitor>,
    applied: Seq,
}

impl Replicator {
    /// A replicator continuing from `applied`.
    pub fn new(
        (replica, log): (Box<dyn Conn>, Box<dyn Conn>),
        endpoints: Endpoints,
        notices: Arc<LogTail>,
        chaos: Arc<Chaos>,
        monitor: Arc<Monitor>,
        applied: Seq,
    ) -> Self {
        Replicator {
            replica,
            log,
            endpoints,
            notices,
            chaos,
            monitor,
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
                    tracing::error!(error = %e, applied = self.applied, "replication failed; reconnecting");
                    if !self.reconnect() {
                        return;
                    }
                }
            }
        }
    }

    /// After a failure: new connections to both databases (with backoff while either is
    /// unreachable), then the applied position as the replica records it. A commit
    /// whose answer was lost is thereby counted exactly once; a replica that lost or
    /// changed its history is rebuilt. Returns false when the store stops first.
    fn reconnect(&mut self) -> bool {
        let mut backoff = Backoff::new();
        loop {
            if !self.nap(backoff.next_wait()) {
                return false;
            }
            match self.try_reconnect() {
                Ok(applied) => {
                    let outage = self.monitor.set_up(Part::Replicator);
                    tracing::info!(
                        applied,
                        was = self.applied,
                        outage_ms = outage.map_or(0, |d| d.as_millis() as u64),
                        "the replicator has both databases again"
                    );
                    self.applied = applied;
                    self.notices.set_applied(applied);
                    return true;
                }
                Err(e) => {
                    if self.monitor.set_down(Part::Replicator) {
                        tracing::error!(error = %e, "the replicator cannot reach its databases; retrying with backoff");
                    } else {
                        tracing::debug!(error = %e, attempts = backoff.failures(), "the replicator's databases are still unreachable");
                    }
                }
            }
        }
    }

    fn try_reconnect(&mut self) -> Result<Seq, StoreError> {
        let e = &self.endpoints;
        let mut replica = connect(&e.replica, Access::Write(e.durability))?;
        let mut log = connect(&e.primary, Access::Read)?;
        schema::migrate(&mut *replica, Role::Replica)?;
        let applied = bootstrap(&mut *replica, &mut *log, &e.epoch)?;
        self.replica = replica;
        self.log = log;
        Ok(applied)
    }

    /// Read up to `limit` entries after the applied position.
    fn read_entries(&mut self, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let rows = self.log.query(
            "SELECT seq, lot_id, op, at FROM oplog WHERE seq > ? ORDER BY seq LIMIT ?",
            args![self.applied as i64, limit as i64],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Entry {
                    seq: r.int(0)? as Seq,
                    lot_id: r.text(1)?,
                    op: Op::decode(&r.text(2)?)?,
                    at: parse_time(&r.text(3)?)?,
                })
            })
            .collect()
    }

    /// Execute entries on the replica and record the new applied position, in one
    /// transaction. Returns the new position, or `None` when there was nothing to do.
    fn apply(&mut self, entries: &[Entry]) -> Result<Option<Seq>, StoreError> {
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(None);
        };
        let first = self.applied + 1;
        let replica = &mut *self.replica;
        replica.begin_write()?;
        let applied = (|| {
            for (expected, entry) in (first..).zip(entries) {
                if entry.seq != expected {
                    return Err(StoreError::Corrupt(format!(
                        "log gap: expected {expected}, found {}",
                        entry.seq
                    )));
                }
                schema::execute_op(replica, entry.seq, &entry.lot_id, &entry.op, entry.at)?;
            }
            // Same transaction as the rows: a crash keeps both or neither.
            schema::set_applied_seq(replica, last)?;
            replica.commit()
        })();
        if applied.is_err() {
            let _ = replica.rollback();
        }
        applied.map(|()| Some(last))
    }
}
