//! What each command does inside the writer's open transaction: read the lot id, check
//! whether the primary has it, then replace it, change only its status, or add it,
//! appending the operation to the log with the next sequence.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lotsync::protocol::{AdminLot, Lot, LotInput, LotStatus, Notice, Seq};

use super::engine::{Conn, args};
use super::oplog::Op;
use super::primary::{Command, Done};
use super::schema::{self, fmt_time};
use super::{StoreError, lanes};

/// One command's view of the open transaction.
pub(super) struct Ctx<'a> {
    /// The writer's connection, inside the batch's transaction and this command's
    /// savepoint.
    pub(super) conn: &'a mut dyn Conn,
    /// Last sequence appended.
    pub(super) head: &'a mut Seq,
    /// Notices of the operations appended in this batch.
    pub(super) notices: &'a mut Vec<Notice>,
    /// The batch's commit time.
    pub(super) at: DateTime<Utc>,
    /// Anti-sniping window.
    pub(super) anti_snipe: Duration,
    /// How long an idempotency key is remembered.
    pub(super) idempotency_retention: Duration,
}

impl Ctx<'_> {
    /// Run one command; its outcome is answered after the commit.
    pub(super) fn execute(&mut self, command: Command) -> Done {
        match command {
            Command::Put { id, input, reply } => Done::Put(reply, self.put(&id, input)),
            Command::Status { id, status, reply } => Done::Status(reply, self.status(&id, status)),
            Command::Bid {
                bidder,
                lot_id,
                request,
                key,
                reply,
            } => Done::Bid(reply, self.bid(&bidder, &lot_id, request, key.as_deref())),
            Command::Due { now, reply } => Done::Due(reply, self.due(now)),
            Command::Lane {
                lane,
                settings,
                reply,
            } => Done::Lane(reply, lanes::set(self.conn, &lane, settings)),
            Command::Shutdown => unreachable!("filtered out before execution"),
        }
    }

    /// Append an operation to the log with the next sequence and execute it.
    pub(super) fn append(&mut self, lot_id: &str, op: &Op) -> Result<AdminLot, StoreError> {
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

    fn with_bids(&mut self, mut lot: AdminLot) -> Result<AdminLot, StoreError> {
        lot.lot.recent_bids = schema::recent_bids(self.conn, &lot.lot.id)?;
        Ok(lot)
    }

    /// Read the id, check whether it exists, then replace or add.
    fn put(&mut self, id: &str, input: LotInput) -> Result<(AdminLot, bool), StoreError> {
        input.validate()?;
        let current = schema::load_lot(self.conn, id)?;
        let created = current.is_none();
        let lot = match current {
            Some(AdminLot { lot: current, .. }) => {
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
                let mut lot = lot_from_input(id, input);
                lot.lot = Lot {
                    current_price,
                    bid_count: current.bid_count,
                    leading_bidder: current.leading_bidder,
                    status,
                    ..lot.lot
                };
                lot
            }
            None => lot_from_input(id, input),
        };
        let lot = self.append(id, &Op::Upsert { lot: Box::new(lot) })?;
        Ok((self.with_bids(lot)?, created))
    }

    /// Change only the status, if the lifecycle allows it.
    fn status(&mut self, id: &str, status: LotStatus) -> Result<AdminLot, StoreError> {
        let current = schema::load_lot(self.conn, id)?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?
            .lot;
        if !current.status.can_become(status) {
            return Err(StoreError::InvalidTransition {
                from: current.status,
                to: status,
            });
        }
        let lot = self.append(id, &Op::status(status))?;
        if status.is_final() {
            lanes::after_settle(self, &lot.lot)?;
        }
        self.with_bids(lot)
    }

    /// Idempotency keys created before this time (milliseconds) are forgotten.
    pub(super) fn idempotency_cutoff(&self) -> i64 {
        idempotency_cutoff(self.at, self.idempotency_retention)
    }

    /// Open lots whose start has come; close, then settle, lots whose end has passed.
    /// A lot in a sequential lane opens only once every lot before it in the run list
    /// has settled; when one settles, the next is scheduled after the lane's gap.
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
                let Some(lot) = schema::load_lot(self.conn, &id)? else {
                    continue;
                };
                // A lane may have opened it already in this pass.
                if lot.lot.status != LotStatus::Scheduled || !lanes::may_open(self.conn, &lot.lot)?
                {
                    continue;
                }
                self.append(&id, &Op::status(LotStatus::Open))?;
                written += 1;
                continue;
            }
            let closed = self.append(&id, &Op::status(LotStatus::Closed))?;
            let settled = if closed.sells() {
                LotStatus::Sold
            } else {
                LotStatus::Passed
            };
            let settled = self.append(&id, &Op::status(settled))?;
            written += 2 + lanes::after_settle(self, &settled.lot)?;
        }
        Ok(written)
    }
}

/// A new lot's stored form: no bids yet, price at the starting price.
fn lot_from_input(id: &str, input: LotInput) -> AdminLot {
    let ladder = input.increment.bands().to_vec();
    let mut lot = AdminLot {
        lot: Lot {
            id: id.to_owned(),
            title: input.title,
            attributes: input.attributes,
            currency: input.currency,
            starting_price: input.starting_price,
            increment: input.increment.step_at(input.starting_price),
            increment_ladder: ladder,
            reserve_met: None,
            current_price: input.starting_price,
            bid_count: 0,
            leading_bidder: None,
            status: input.status.unwrap_or(LotStatus::Scheduled),
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            lane: input.lane,
            run_order: input.run_order,
            seq: 0,
            updated_at: input.starts_at,
            recent_bids: Vec::new(),
        },
        reserve_price: input.reserve_price,
    };
    lot.refresh();
    lot
}

/// The creation time (milliseconds) before which an idempotency key is forgotten.
pub(super) fn idempotency_cutoff(now: DateTime<Utc>, retention: Duration) -> i64 {
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    now.timestamp_millis().saturating_sub(retention)
}
