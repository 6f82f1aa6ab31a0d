//! The single writer: the only code that writes the primary database.
//!
//! A dedicated OS thread owns the connection. It takes every command waiting in its
//! channel (up to [`MAX_BATCH`]) and runs them in one transaction, so one fsync covers
//! the whole batch (group commit). Each command runs inside its own savepoint and is
//! validated against the rows as they are inside the transaction; a rejected command
//! rolls back only itself and takes no sequence number, so the log stays gap-free.
//! After the commit the batch's notices go to the ring, `head` moves, and every caller
//! gets its answer.
//!
//! The queue in front of the writer is bounded: a full queue refuses at once (503)
//! instead of holding requests in memory. When a batch fails, the writer asks the
//! database what it holds before doing anything else (see [`super::writer_recovery`]),
//! reconnecting with backoff while the primary is unreachable.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lotsync::protocol::{
    AdminLot, BidRequest, Lane, LaneSettings, LotInput, LotStatus, Notice, OpKind, Seq,
};
use tokio::sync::oneshot;

use super::audit;
use super::commands::{Ctx, idempotency_cutoff};
use super::engine::{Access, Conn, DbUrl, Durability, args};
use super::health::{Monitor, Part};
use super::log_tail::LogTail;
use super::schema::{self, parse_time};
use super::{BidOutcome, StoreError};
use crate::metrics::Metrics;

/// Most commands committed in one transaction.
pub const MAX_BATCH: usize = 256;

/// Longest pause between two sweeps of expired idempotency keys.
const IDEMPOTENCY_SWEEP_MAX: Duration = Duration::from_secs(60);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A request to the writer.
pub enum Command {
    /// Create or replace a lot.
    Put {
        /// Lot id.
        id: String,
        /// New data.
        input: LotInput,
        /// The lot after the write and whether it was created.
        reply: Reply<(AdminLot, bool)>,
    },
    /// Change a lot's status only.
    Status {
        /// Lot id.
        id: String,
        /// New status.
        status: LotStatus,
        /// The lot after the write.
        reply: Reply<AdminLot>,
    },
    /// Place a bid.
    Bid {
        /// Authenticated bidder.
        bidder: String,
        /// Lot id.
        lot_id: String,
        /// The bid and/or maximum.
        request: BidRequest,
        /// Idempotency key, if the client sent one.
        key: Option<String>,
        /// The bid.
        reply: Reply<BidOutcome>,
    },
    /// Open and close lots whose time has come.
    Due {
        /// The time to compare against.
        now: DateTime<Utc>,
        /// Number of operations written.
        reply: Reply<usize>,
    },
    /// Create or change a lane's settings.
    Lane {
        /// The lane.
        lane: String,
        /// Its settings.
        settings: LaneSettings,
        /// The lane as stored.
        reply: Reply<Lane>,
    },
    /// Stop the thread.
    Shutdown,
}

impl Command {
    /// Answer with an error without running the command. Returns false for
    /// [`Command::Shutdown`], which has no one to answer.
    pub fn refuse(self, error: StoreError) -> bool {
        match self {
            Command::Put { reply, .. } => drop(reply.send(Err(error))),
            Command::Status { reply, .. } => drop(reply.send(Err(error))),
            Command::Bid { reply, .. } => drop(reply.send(Err(error))),
            Command::Due { reply, .. } => drop(reply.send(Err(error))),
            Command::Lane { reply, .. } => drop(reply.send(Err(error))),
            Command::Shutdown => return false,
        }
        true
    }
}

/// Read the epoch from `meta`, creating a random one for a new database.
pub fn ensure_epoch(conn: &mut dyn Conn) -> Result<String, StoreError> {
    if let Some(epoch) = schema::meta_get(conn, "epoch")? {
        return Ok(epoch);
    }
    let epoch = format!("{:032x}", rand::random::<u128>());
    schema::meta_set(conn, "epoch", &epoch)?;
    Ok(epoch)
}

/// The log's head and its last `retention` entries as notices.
pub fn load_tail(conn: &mut dyn Conn, retention: usize) -> Result<(Seq, Vec<Notice>), StoreError> {
    let (_, head) = schema::log_bounds(conn)?;
    let from = head.saturating_sub(retention as Seq);
    Ok((head, load_entries(conn, from, head)?))
}

/// The log entries after `after` up to `to`, as notices.
pub fn load_entries(conn: &mut dyn Conn, after: Seq, to: Seq) -> Result<Vec<Notice>, StoreError> {
    let rows = conn.query(
        "SELECT seq, lot_id, kind, at FROM oplog WHERE seq > ? AND seq <= ? ORDER BY seq",
        args![after as i64, to as i64],
    )?;
    rows.iter()
        .map(|r| {
            Ok(Notice {
                seq: r.int(0)? as Seq,
                lot_id: r.text(1)?,
                kind: parse_kind(&r.text(2)?)?,
                at: parse_time(&r.text(3)?)?,
                lot: None,
            })
        })
        .collect()
}

fn parse_kind(kind: &str) -> Result<OpKind, StoreError> {
    [OpKind::Upsert, OpKind::Status, OpKind::Bid]
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or_else(|| StoreError::Corrupt(format!("bad oplog kind {kind:?}")))
}

/// How to reach the primary again, and whose history it holds.
pub struct Connection {
    /// The primary's URL.
    pub url: DbUrl,
    /// Commit durability of the writer's connection.
    pub durability: Durability,
    /// The epoch the primary holds; another one after a reconnect means the history
    /// this writer continues is gone.
    pub epoch: String,
}

impl Connection {
    /// A new write connection to the primary.
    pub(super) fn connect(&self) -> Result<Box<dyn Conn>, StoreError> {
        super::engine::connect(&self.url, Access::Write(self.durability))
    }
}

/// The writer's settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Log entries kept in the `oplog` table.
    pub retention: usize,
    /// Anti-sniping window.
    pub anti_snipe: Duration,
    /// How long idempotency keys are remembered.
    pub idempotency_retention: Duration,
}

/// The writer thread's state.
pub struct Writer {
    pub(super) conn: Box<dyn Conn>,
    pub(super) connection: Connection,
    pub(super) notices: Arc<LogTail>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) monitor: Arc<Monitor>,
    /// Last sequence committed (or, inside a batch, appended).
    pub(super) head: Seq,
    options: WriterOptions,
    /// Oldest sequence still in the `oplog` table, to know when pruning is due.
    oldest_in_db: Seq,
    /// When expired idempotency keys were last deleted.
    idempotency_swept: Option<Instant>,
    /// The primary no longer holds the history this writer continues: every write is
    /// refused until the master restarts.
    pub(super) lost_history: bool,
}

/// What one command produced inside the batch, answered after the commit.
pub(super) enum Done {
    Put(
        Reply<(AdminLot, bool)>,
        Result<(AdminLot, bool), StoreError>,
    ),
    Status(Reply<AdminLot>, Result<AdminLot, StoreError>),
    Bid(Reply<BidOutcome>, Result<BidOutcome, StoreError>),
    Due(Reply<usize>, Result<usize, StoreError>),
    Lane(Reply<Lane>, Result<Lane, StoreError>),
}

/// A batch that failed: the error, and what was not answered yet.
pub(super) struct Failed {
    pub(super) error: StoreError,
    /// Commands that ran (their outcomes stand if the commit turns out to have happened).
    pub(super) done: Vec<Done>,
    /// Commands that never ran.
    pub(super) rest: Vec<Command>,
    /// The notices of the operations the batch appended.
    pub(super) notices: Vec<Notice>,
}

impl Writer {
    /// A writer continuing the log at `head`.
    pub fn new(
        conn: Box<dyn Conn>,
        connection: Connection,
        notices: Arc<LogTail>,
        metrics: Arc<Metrics>,
        monitor: Arc<Monitor>,
        head: Seq,
        options: WriterOptions,
    ) -> Writer {
        let oldest_in_db = notices.oldest();
        Writer {
            conn,
            connection,
            notices,
            metrics,
            monitor,
            head,
            options,
            oldest_in_db,
            // The store swept at open, before the writer started.
            idempotency_swept: Some(Instant::now()),
            lost_history: false,
        }
    }

    /// Serve commands until told to stop or every sender is gone.
    pub fn run(mut self, rx: Receiver<Command>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let Ok(first) = rx.recv() else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let stop =
                self.monitor.stopping() || batch.iter().any(|c| matches!(c, Command::Shutdown));
            if self.lost_history {
                for command in batch.drain(..) {
                    command.refuse(StoreError::Unavailable(Part::Writer));
                }
            } else if !self.commit_batch(std::mem::take(&mut batch), &rx) {
                return;
            }
            if stop || self.monitor.stopping() {
                tracing::debug!("writer stopped");
                return;
            }
        }
    }

    /// Run and answer one batch. Returns false when the store stopped meanwhile.
    fn commit_batch(&mut self, batch: Vec<Command>, rx: &Receiver<Command>) -> bool {
        let head_before = self.head;
        let mut notices = Vec::new();
        let mut done = Vec::with_capacity(batch.len());
        match self.run_batch(batch, &mut notices, &mut done) {
            Ok(()) => {
                self.committed(notices, done);
                true
            }
            Err((error, rest)) => {
                // Whatever the database did with the batch, this process's idea of the
                // head is unconfirmed until the database says what it holds.
                self.head = head_before;
                let failed = Failed {
                    error,
                    done,
                    rest,
                    notices,
                };
                self.recover(head_before, failed, rx)
            }
        }
    }

    /// Publish a committed batch's notices, answer its callers, prune.
    pub(super) fn committed(&mut self, notices: Vec<Notice>, done: Vec<Done>) {
        self.metrics.batch_committed(done.len());
        for n in &notices {
            self.metrics.write(n.kind);
        }
        for d in &done {
            if let Some(reason) = d.rejection() {
                self.metrics.bid_rejected(reason);
            }
        }
        if let Some(last) = notices.last() {
            self.head = last.seq;
        }
        self.notices.publish(notices);
        for d in done {
            d.answer();
        }
        self.prune();
        self.sweep_idempotency();
    }

    /// Execute a batch in one transaction, one savepoint per command; on any database
    /// error the whole transaction is rolled back and the commands that did not run are
    /// handed back.
    fn run_batch(
        &mut self,
        batch: Vec<Command>,
        notices: &mut Vec<Notice>,
        done: &mut Vec<Done>,
    ) -> Result<(), (StoreError, Vec<Command>)> {
        if let Err(e) = self.conn.begin_write() {
            return Err((e, batch));
        }
        let mut commands = batch.into_iter();
        let result = self
            .run_commands(&mut commands, notices, done)
            .and_then(|()| self.conn.commit());
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.conn.rollback();
                Err((e, commands.collect()))
            }
        }
    }

    fn run_commands(
        &mut self,
        commands: &mut std::vec::IntoIter<Command>,
        notices: &mut Vec<Notice>,
        done: &mut Vec<Done>,
    ) -> Result<(), StoreError> {
        // Microseconds: the precision times are stored with, so primary and replica agree.
        let at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        for command in commands.by_ref() {
            if let Command::Shutdown = command {
                continue;
            }
            let sp_head = self.head;
            let sp_len = notices.len();
            // A refused bid is audited after its own changes are rolled back.
            let bid = match &command {
                Command::Bid {
                    bidder,
                    lot_id,
                    request,
                    ..
                } => Some((bidder.clone(), lot_id.clone(), *request)),
                _ => None,
            };
            if let Err(e) = self.conn.batch("SAVEPOINT command") {
                // Not run: the caller is answered with the rest of the batch.
                let mut rest = vec![command];
                rest.extend(commands.by_ref());
                *commands = rest.into_iter();
                return Err(e);
            }
            let outcome = Ctx {
                conn: &mut *self.conn,
                head: &mut self.head,
                notices,
                at,
                anti_snipe: self.options.anti_snipe,
                idempotency_retention: self.options.idempotency_retention,
            }
            .execute(command);
            let mut outcome = outcome;
            let ok = outcome.ok();
            // A command that failed for a database reason fails the whole batch.
            let broken = outcome.take_transient_error();
            done.push(outcome);
            if let Some(e) = broken {
                return Err(e);
            }
            if ok {
                self.conn.batch("RELEASE SAVEPOINT command")?;
            } else {
                // A rejected command leaves nothing behind and takes no sequence.
                self.head = sp_head;
                notices.truncate(sp_len);
                self.conn.batch("ROLLBACK TO SAVEPOINT command")?;
                if let (Some((bidder, lot_id, request)), Some(error)) =
                    (bid, done.last().and_then(Done::refusal))
                    && !matches!(error, StoreError::NotFound(_))
                {
                    audit::refused(&mut *self.conn, &lot_id, &bidder, &request, error)?;
                }
                self.conn.batch("RELEASE SAVEPOINT command")?;
            }
        }
        Ok(())
    }

    /// Drop log entries older than the retention, never past the replica's position or
    /// an entry the JetStream publisher has not published.
    fn prune(&mut self) {
        let retention = self.options.retention;
        let keep_from = self.head.saturating_sub(retention as Seq) + 1;
        // Unpublished entries are kept, up to ten retentions' worth.
        let held_from = self.head.saturating_sub(retention as Seq * 10);
        let limit = keep_from.min(self.notices.prune_floor(held_from).saturating_add(1));
        // Prune in steps of a tenth of the retention so it is not done every commit.
        if limit <= self.oldest_in_db + (retention as Seq / 10).max(1) {
            return;
        }
        match self
            .conn
            .execute("DELETE FROM oplog WHERE seq < ?", args![limit as i64])
        {
            Ok(_) => self.oldest_in_db = limit,
            Err(e) => tracing::warn!(error = %e, "pruning the log failed"),
        }
    }

    /// Delete idempotency keys past their retention, at most every tenth of it (and at
    /// least every minute), so the table holds about one retention's worth of keys.
    fn sweep_idempotency(&mut self) {
        let retention = self.options.idempotency_retention;
        let every = (retention / 10).min(IDEMPOTENCY_SWEEP_MAX);
        if self
            .idempotency_swept
            .is_some_and(|at| at.elapsed() < every)
        {
            return;
        }
        self.idempotency_swept = Some(Instant::now());
        if let Err(e) = sweep_expired_keys(&mut *self.conn, retention) {
            tracing::warn!(error = %e, "deleting expired idempotency keys failed");
        }
    }
}

/// Delete the idempotency keys older than `retention`; returns how many.
pub fn sweep_expired_keys(conn: &mut dyn Conn, retention: Duration) -> Result<u64, StoreError> {
    let cutoff = idempotency_cutoff(Utc::now(), retention);
    let deleted = conn.execute(
        "DELETE FROM idempotency WHERE created_ms < ?",
        args![cutoff],
    )?;
    if deleted > 0 {
        tracing::debug!(keys = deleted, "expired idempotency keys deleted");
    }
    Ok(deleted)
}

impl Done {
    /// For a rejected bid, the error code it is counted under.
    fn rejection(&self) -> Option<&'static str> {
        self.refusal().map(StoreError::code)
    }

    /// For a rejected bid, why.
    fn refusal(&self) -> Option<&StoreError> {
        match self {
            Done::Bid(_, Err(e)) => Some(e),
            _ => None,
        }
    }

    fn result(&self) -> Result<(), &StoreError> {
        match self {
            Done::Put(_, r) => r.as_ref().map(drop),
            Done::Status(_, r) => r.as_ref().map(drop),
            Done::Bid(_, r) => r.as_ref().map(drop),
            Done::Due(_, r) => r.as_ref().map(drop),
            Done::Lane(_, r) => r.as_ref().map(drop),
        }
    }

    fn ok(&self) -> bool {
        self.result().is_ok()
    }

    /// A failure about reaching the database (not a rejection of the command): the
    /// transaction is likely gone with the connection. The error is taken out (the
    /// command's answer becomes "unavailable") and returned.
    fn take_transient_error(&mut self) -> Option<StoreError> {
        fn take<T>(r: &mut Result<T, StoreError>) -> Option<StoreError> {
            match r {
                Err(e) if e.is_transient() => {
                    std::mem::replace(r, Err(StoreError::Unavailable(Part::Writer))).err()
                }
                _ => None,
            }
        }
        match self {
            Done::Put(_, r) => take(r),
            Done::Status(_, r) => take(r),
            Done::Bid(_, r) => take(r),
            Done::Due(_, r) => take(r),
            Done::Lane(_, r) => take(r),
        }
    }

    pub(super) fn answer(self) {
        match self {
            Done::Put(tx, r) => drop(tx.send(r)),
            Done::Status(tx, r) => drop(tx.send(r)),
            Done::Bid(tx, r) => drop(tx.send(r)),
            Done::Due(tx, r) => drop(tx.send(r)),
            Done::Lane(tx, r) => drop(tx.send(r)),
        }
    }

    pub(super) fn fail(self, error: StoreError) {
        match self {
            Done::Put(tx, _) => drop(tx.send(Err(error))),
            Done::Status(tx, _) => drop(tx.send(Err(error))),
            Done::Bid(tx, _) => drop(tx.send(Err(error))),
            Done::Due(tx, _) => drop(tx.send(Err(error))),
            Done::Lane(tx, _) => drop(tx.send(Err(error))),
        }
    }
}
