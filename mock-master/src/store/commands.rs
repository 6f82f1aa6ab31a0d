//! What each command does inside the writer's open transaction: read the lot id, check
//! whether the primary has it, then replace it, change only its status, or add it,
//! appending the operation to the log with the next sequence.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lotsync::protocol::{Bid, Lot, LotInput, LotStatus, Money, Notice, Seq};

use super::engine::{Conn, args};
use super::oplog::Op;
use super::primary::{Command, Done};
use super::schema::{self, fmt_time};
use super::{BidOutcome, StoreError};

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
                "SELECT request_hash, response, created_ms FROM idempotency \
                 WHERE bidder = ? AND \"key\" = ?",
                args![bidder, key],
            )?;
            match seen {
                Some(row) if row.int(2)? < self.idempotency_cutoff() => {
                    // Past the retention the key is forgotten: this is a new request.
                    self.conn.execute(
                        "DELETE FROM idempotency WHERE bidder = ? AND \"key\" = ?",
                        args![bidder, key],
                    )?;
                }
                Some(row) => {
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
                None => {}
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
                "INSERT INTO idempotency (bidder, \"key\", request_hash, response, created_ms) \
                 VALUES (?, ?, ?, ?, ?)",
                args![
                    bidder,
                    key,
                    request_hash,
                    response,
                    self.at.timestamp_millis()
                ],
            )?;
        }
        Ok(BidOutcome {
            bid,
            replayed: false,
        })
    }

    /// Idempotency keys created before this time (milliseconds) are forgotten.
    fn idempotency_cutoff(&self) -> i64 {
        idempotency_cutoff(self.at, self.idempotency_retention)
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

/// The creation time (milliseconds) before which an idempotency key is forgotten.
pub(super) fn idempotency_cutoff(now: DateTime<Utc>, retention: Duration) -> i64 {
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    now.timestamp_millis().saturating_sub(retention)
}
