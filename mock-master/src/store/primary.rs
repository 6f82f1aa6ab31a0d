//! The single writer: the only code that writes the primary database.
//!
//! A dedicated OS thread owns the connection. It takes every command waiting in its
//! channel (up to [`MAX_BATCH`]) and runs them in one transaction, so one fsync covers
//! the whole batch (group commit). Each command runs inside its own savepoint and is
//! validated against the rows as they are inside the transaction; a rejected command
//! rolls back only itself and takes no sequence number, so the log stays gap-free.
//! After the commit the batch's notices go to the ring, `head` moves, and every caller
//! gets its answer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lotsync::protocol::{Bid, Lot, LotInput, LotStatus, Money, Notice, OpKind, Seq};
use tokio::sync::{mpsc, oneshot};

use super::engine::{Conn, args};
use super::log_tail::LogTail;
use super::oplog::Op;
use super::schema::{self, fmt_time, parse_time};
use super::{BidOutcome, StoreError};
use crate::metrics::Metrics;

/// Most commands committed in one transaction.
pub const MAX_BATCH: usize = 256;

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
        reply: Reply<(Lot, bool)>,
    },
    /// Change a lot's status only.
    Status {
        /// Lot id.
        id: String,
        /// New status.
        status: LotStatus,
        /// The lot after the write.
        reply: Reply<Lot>,
    },
    /// Place a bid.
    Bid {
        /// Authenticated bidder.
        bidder: String,
        /// Lot id.
        lot_id: String,
        /// Amount in minor units.
        amount: Money,
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
    /// Stop the thread.
    Shutdown,
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
    let rows = conn.query(
        "SELECT seq, lot_id, kind, at FROM oplog WHERE seq > ? ORDER BY seq",
        args![from as i64],
    )?;
    let tail = rows
        .iter()
        .map(|r| {
            Ok(Notice {
                seq: r.int(0)? as Seq,
                lot_id: r.text(1)?,
                kind: parse_kind(&r.text(2)?)?,
                at: parse_time(&r.text(3)?)?,
                lot: None,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((head, tail))
}

fn parse_kind(kind: &str) -> Result<OpKind, StoreError> {
    [OpKind::Upsert, OpKind::Status, OpKind::Bid]
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or_else(|| StoreError::Corrupt(format!("bad oplog kind {kind:?}")))
}

/// The writer thread's state.
pub struct Writer {
    conn: Box<dyn Conn>,
    notices: std::sync::Arc<LogTail>,
    metrics: std::sync::Arc<Metrics>,
    /// Last sequence committed (or, inside a batch, appended).
    head: Seq,
    retention: usize,
    anti_snipe: Duration,
    /// Oldest sequence still in the `oplog` table, to know when pruning is due.
    oldest_in_db: Seq,
}

/// What one command produced inside the batch, answered after the commit.
enum Done {
    Put(Reply<(Lot, bool)>, Result<(Lot, bool), StoreError>),
    Status(Reply<Lot>, Result<Lot, StoreError>),
    Bid(Reply<BidOutcome>, Result<BidOutcome, StoreError>),
    Due(Reply<usize>, Result<usize, StoreError>),
}

impl Writer {
    /// A writer continuing the log at `head`.
    pub fn new(
        conn: Box<dyn Conn>,
        notices: std::sync::Arc<LogTail>,
        metrics: std::sync::Arc<Metrics>,
        head: Seq,
        retention: usize,
        anti_snipe: Duration,
    ) -> Writer {
        let oldest_in_db = notices.oldest();
        Writer {
            conn,
            notices,
            metrics,
            head,
            retention,
            anti_snipe,
            oldest_in_db,
        }
    }

    /// Serve commands until told to stop or every sender is gone.
    pub fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let Some(first) = rx.blocking_recv() else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let stop = batch.iter().any(|c| matches!(c, Command::Shutdown));
            self.commit_batch(std::mem::take(&mut batch));
            if stop {
                tracing::debug!("writer stopped");
                return;
            }
        }
    }

    fn commit_batch(&mut self, batch: Vec<Command>) {
        let head_before = self.head;
        let mut notices = Vec::new();
        let mut done = Vec::with_capacity(batch.len());
        match self.run_batch(batch, &mut notices, &mut done) {
            Ok(()) => {
                self.metrics.batch_committed(done.len());
                for n in &notices {
                    self.metrics.write(n.kind);
                }
                for d in &done {
                    if let Some(reason) = d.rejection() {
                        self.metrics.bid_rejected(reason);
                    }
                }
                self.notices.publish(notices);
                for d in done {
                    d.answer();
                }
                self.prune();
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the batch is rolled back");
                self.head = head_before;
                for d in done {
                    d.fail(&e);
                }
            }
        }
    }

    /// Execute a batch in one transaction, one savepoint per command; on any database
    /// error the whole transaction is rolled back.
    fn run_batch(
        &mut self,
        batch: Vec<Command>,
        notices: &mut Vec<Notice>,
        done: &mut Vec<Done>,
    ) -> Result<(), StoreError> {
        self.conn.begin_write()?;
        let result = self.run_commands(batch, notices, done);
        let result = result.and_then(|()| self.conn.commit());
        if result.is_err() {
            let _ = self.conn.rollback();
        }
        result
    }

    fn run_commands(
        &mut self,
        batch: Vec<Command>,
        notices: &mut Vec<Notice>,
        done: &mut Vec<Done>,
    ) -> Result<(), StoreError> {
        // Microseconds: the precision times are stored with, so primary and replica agree.
        let at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        for command in batch {
            if let Command::Shutdown = command {
                continue;
            }
            let sp_head = self.head;
            let sp_len = notices.len();
            self.conn.batch("SAVEPOINT command")?;
            let outcome = Ctx {
                conn: &mut *self.conn,
                head: &mut self.head,
                notices,
                at,
                anti_snipe: self.anti_snipe,
            }
            .execute(command);
            let ok = outcome.ok();
            done.push(outcome);
            if ok {
                self.conn.batch("RELEASE SAVEPOINT command")?;
            } else {
                // A rejected command leaves nothing behind and takes no sequence.
                self.head = sp_head;
                notices.truncate(sp_len);
                self.conn.batch("ROLLBACK TO SAVEPOINT command")?;
                self.conn.batch("RELEASE SAVEPOINT command")?;
            }
        }
        Ok(())
    }

    /// Drop log entries older than the retention, never past the replica's position.
    fn prune(&mut self) {
        let keep_from = self.head.saturating_sub(self.retention as Seq) + 1;
        let limit = keep_from.min(self.notices.applied() + 1);
        // Prune in steps of a tenth of the retention so it is not done every commit.
        if limit <= self.oldest_in_db + (self.retention as Seq / 10).max(1) {
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
}

impl Done {
    /// For a rejected bid, the error code it is counted under.
    fn rejection(&self) -> Option<&'static str> {
        match self {
            Done::Bid(_, Err(e)) => Some(e.code()),
            _ => None,
        }
    }

    fn ok(&self) -> bool {
        match self {
            Done::Put(_, r) => r.is_ok(),
            Done::Status(_, r) => r.is_ok(),
            Done::Bid(_, r) => r.is_ok(),
            Done::Due(_, r) => r.is_ok(),
        }
    }

    fn answer(self) {
        match self {
            Done::Put(tx, r) => drop(tx.send(r)),
            Done::Status(tx, r) => drop(tx.send(r)),
            Done::Bid(tx, r) => drop(tx.send(r)),
            Done::Due(tx, r) => drop(tx.send(r)),
        }
    }

    fn fail(self, e: &StoreError) {
        let err = || StoreError::Corrupt(format!("commit failed: {e}"));
        match self {
            Done::Put(tx, _) => drop(tx.send(Err(err()))),
            Done::Status(tx, _) => drop(tx.send(Err(err()))),
            Done::Bid(tx, _) => drop(tx.send(Err(err()))),
            Done::Due(tx, _) => drop(tx.send(Err(err()))),
        }
    }
}

/// One command's view of the open transaction.
struct Ctx<'a> {
    conn: &'a mut dyn Conn,
    head: &'a mut Seq,
    notices: &'a mut Vec<Notice>,
    at: DateTime<Utc>,
    anti_snipe: Duration,
}

impl Ctx<'_> {
    fn execute(&mut self, command: Command) -> Done {
        match command {
            Command::Put { id, input, reply } => Done::Put(reply, self.put(&id, input)),
            Command::Status { id, status, reply } => Done::Status(reply, self.status(&id, status)),
            Command::Bid {
                bidder,
                lot_id,
                amount,
                key,
                reply,
            } => Done::Bid(reply, self.bid(&bidder, &lot_id, amount, key.as_deref())),
            Command::Due { now, reply } => Done::Due(reply, self.due(now)),
            Command::Shutdown => unreachable!("filtered out before execution"),
        }
    }

    /// Append an operation to the log with the next sequence and execute it.
    fn append(&mut self, lot_id: &str, op: &Op) -> Result<Lot, StoreError> {
        let seq = *self.head + 1;
        self.conn.execute(
            "INSERT INTO oplog (seq, lot_id, kind, op, at) VALUES (?, ?, ?, ?, ?)",
            args![
                seq as i64,
                lot_id,
                op.kind().as_str(),
                op.encode(),
                fmt_time(self.at)
            ],
        )?;
        let lot = schema::execute_op(self.conn, seq, lot_id, op, self.at)?;
        *self.head = seq;
        self.notices.push(Notice {
            seq,
            lot_id: lot_id.to_owned(),
            kind: op.kind(),
            at: self.at,
            lot: None,
        });
        Ok(lot)
    }

    fn with_bids(&mut self, mut lot: Lot) -> Result<Lot, StoreError> {
        lot.recent_bids = schema::recent_bids(self.conn, &lot.id)?;
        Ok(lot)
    }

    /// Read the id, check whether it exists, then replace or add.
    fn put(&mut self, id: &str, input: LotInput) -> Result<(Lot, bool), StoreError> {
        input.validate()?;
        let current = schema::load_lot(self.conn, id)?;
        let created = current.is_none();
        let lot = match current {
            Some(current) => {
                let status = input.status.unwrap_or(current.status);
                if status != current.status && !current.status.can_become(status) {
                    return Err(StoreError::InvalidTransition {
                        from: current.status,
                        to: status,
                    });
                }
                let current_price = if current.bid_count == 0 {
                    input.starting_price
                } else {
                    current.current_price
                };
                Lot {
                    current_price,
                    bid_count: current.bid_count,
                    leading_bidder: current.leading_bidder,
                    status,
                    ..lot_from_input(id, input)
                }
            }
            None => lot_from_input(id, input),
        };
        let lot = self.append(id, &Op::Upsert { lot: Box::new(lot) })?;
        Ok((self.with_bids(lot)?, created))
    }

    /// Change only the status, if the lifecycle allows it.
    fn status(&mut self, id: &str, status: LotStatus) -> Result<Lot, StoreError> {
        let current =
            schema::load_lot(self.conn, id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        if !current.status.can_become(status) {
            return Err(StoreError::InvalidTransition {
                from: current.status,
                to: status,
            });
        }
        let lot = self.append(
            id,
            &Op::Status {
                status,
                ends_at: None,
            },
        )?;
        self.with_bids(lot)
    }

    fn bid(
        &mut self,
        bidder: &str,
        lot_id: &str,
        amount: Money,
        key: Option<&str>,
    ) -> Result<BidOutcome, StoreError> {
        let request_hash = format!("{lot_id}\n{amount}");
        if let Some(key) = key {
            let seen = self.conn.query_opt(
                "SELECT request_hash, response FROM idempotency WHERE bidder = ? AND \"key\" = ?",
                args![bidder, key],
            )?;
            if let Some(row) = seen {
                let (hash, response) = (row.text(0)?, row.text(1)?);
                if hash != request_hash {
                    return Err(StoreError::IdempotencyConflict);
                }
                let bid: Bid = serde_json::from_str(&response)
                    .map_err(|e| StoreError::Corrupt(format!("bad idempotency row: {e}")))?;
                return Ok(BidOutcome {
                    bid,
                    replayed: true,
                });
            }
        }
        let lot = schema::load_lot(self.conn, lot_id)?
            .ok_or_else(|| StoreError::NotFound(lot_id.to_owned()))?;
        let now = Utc::now();
        if lot.status != LotStatus::Open || now >= lot.ends_at {
            let status = if lot.status == LotStatus::Open {
                LotStatus::Closed
            } else {
                lot.status
            };
            return Err(StoreError::LotNotOpen { status });
        }
        let min_next_bid = lot.min_next_bid();
        if amount < min_next_bid {
            return Err(StoreError::BidTooLow { min_next_bid });
        }
        let window = chrono::Duration::from_std(self.anti_snipe).unwrap_or_default();
        let ends_at = if !window.is_zero() && lot.ends_at - now < window {
            now + window
        } else {
            lot.ends_at
        };
        let bid = Bid {
            lot_id: lot_id.to_owned(),
            bidder: bidder.to_owned(),
            amount,
            seq: *self.head + 1,
            at: self.at,
        };
        let op = Op::Bid {
            bid: bid.clone(),
            current_price: amount,
            bid_count: lot.bid_count + 1,
            leading_bidder: Some(bidder.to_owned()),
            ends_at,
        };
        self.append(lot_id, &op)?;
        if let Some(key) = key {
            let response = serde_json::to_string(&bid).expect("a Bid always serialises");
            self.conn.execute(
                "INSERT INTO idempotency (bidder, \"key\", request_hash, response) VALUES (?, ?, ?, ?)",
                args![bidder, key, request_hash, response],
            )?;
        }
        Ok(BidOutcome {
            bid,
            replayed: false,
        })
    }

    /// Open lots whose start has come; close, then settle, lots whose end has passed.
    fn due(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now_ms = now.timestamp_millis();
        let due: Vec<(String, String)> = self
            .conn
            .query(
                "SELECT id, status FROM lots WHERE (status = 'open' AND ends_at_ms <= ?)
                 OR (status = 'scheduled' AND starts_at_ms <= ?) ORDER BY ends_at_ms, id",
                args![now_ms, now_ms],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect::<Result<_, StoreError>>()?;
        let mut written = 0;
        for (id, status) in due {
            if status == "scheduled" {
                self.append(
                    &id,
                    &Op::Status {
                        status: LotStatus::Open,
                        ends_at: None,
                    },
                )?;
                written += 1;
                continue;
            }
            let closed = self.append(
                &id,
                &Op::Status {
                    status: LotStatus::Closed,
                    ends_at: None,
                },
            )?;
            let settled = if closed.reserve_met() {
                LotStatus::Sold
            } else {
                LotStatus::Passed
            };
            self.append(
                &id,
                &Op::Status {
                    status: settled,
                    ends_at: None,
                },
            )?;
            written += 2;
        }
        Ok(written)
    }
}

/// A new lot's stored form: no bids yet, price at the starting price.
fn lot_from_input(id: &str, input: LotInput) -> Lot {
    Lot {
        id: id.to_owned(),
        title: input.title,
        attributes: input.attributes,
        currency: input.currency,
        starting_price: input.starting_price,
        increment: input.increment,
        reserve_price: input.reserve_price,
        current_price: input.starting_price,
        bid_count: 0,
        leading_bidder: None,
        status: input.status.unwrap_or(LotStatus::Scheduled),
        starts_at: input.starts_at,
        ends_at: input.ends_at,
        seq: 0,
        updated_at: input.starts_at,
        recent_bids: Vec::new(),
    }
}
