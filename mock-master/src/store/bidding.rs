//! The bid command inside the writer's transaction: idempotency, the lot's state, the
//! proxy engine ([`super::auction::proxy`]), one log operation per bid placed, the
//! bidder's maximum (primary only) and the audit trail.

use chrono::Utc;
use lotsync::protocol::{
    AuditAction, AuditOrigin, Bid, BidReceipt, BidRequest, LotStatus, MaxStatus, Money,
};

use super::auction::proxy::{self, Action, MaxBid, Refusal, Standing};
use super::audit::{self, Record};
use super::commands::Ctx;
use super::engine::{Conn, args};
use super::oplog::Op;
use super::schema;
use super::{BidOutcome, StoreError};

impl Ctx<'_> {
    /// Place a bid and/or set a maximum as `bidder`.
    pub(super) fn bid(
        &mut self,
        bidder: &str,
        lot_id: &str,
        request: BidRequest,
        key: Option<&str>,
    ) -> Result<BidOutcome, StoreError> {
        let request_hash = request_hash(lot_id, &request);
        if let Some(key) = key
            && let Some(replay) = self.replay(bidder, lot_id, key, &request, &request_hash)?
        {
            return Ok(replay);
        }
        let stored = schema::load_lot(self.conn, lot_id)?
            .ok_or_else(|| StoreError::NotFound(lot_id.to_owned()))?;
        let lot = &stored.lot;
        let now = Utc::now();
        if lot.status != LotStatus::Open || now >= lot.ends_at {
            let status = if lot.status == LotStatus::Open {
                LotStatus::Closed
            } else {
                lot.status
            };
            return Err(StoreError::LotNotOpen { status });
        }
        let maxima = load_maxima(self.conn, lot_id)?;
        let order = next_order(self.conn)?;
        let ladder = lot.ladder();
        let standing = Standing {
            starting_price: lot.starting_price,
            ladder: &ladder,
            price: lot.current_price,
            bid_count: lot.bid_count,
            leader: lot.leading_bidder.clone(),
        };
        let action = match request.max_amount {
            Some(max) => Action::Max {
                bidder: bidder.to_owned(),
                max,
                amount: request.amount,
            },
            None => Action::Bid {
                bidder: bidder.to_owned(),
                amount: request.amount.unwrap_or_default(),
            },
        };
        let resolution = proxy::resolve(&standing, &maxima, &action, order).map_err(
            |Refusal::TooLow { field, min }| StoreError::BidTooLow {
                min_next_bid: min,
                field,
            },
        )?;
        let window = chrono::Duration::from_std(self.anti_snipe).unwrap_or_default();
        let ends_at = if !window.is_zero() && lot.ends_at - now < window {
            now + window
        } else {
            lot.ends_at
        };
        if let Some(max) = &resolution.max {
            store_max(self.conn, lot_id, max)?;
            audit::write(
                self.conn,
                &Record {
                    lot_id,
                    at: self.at,
                    bidder,
                    action: AuditAction::Max,
                    origin: AuditOrigin::Direct,
                    accepted: true,
                    amount: None,
                    max_amount: Some(max.amount),
                    seq: None,
                    reason: None,
                },
            )?;
        }
        let mut own: Option<Bid> = None;
        let mut last_seq = lot.seq;
        for (count, placed) in (lot.bid_count + 1..).zip(&resolution.bids) {
            let bid = Bid {
                lot_id: lot_id.to_owned(),
                bidder: placed.bidder.clone(),
                amount: placed.amount,
                seq: *self.head + 1,
                at: self.at,
                proxy: placed.proxy,
            };
            let op = Op::Bid {
                bid: bid.clone(),
                current_price: placed.amount,
                bid_count: count,
                leading_bidder: Some(placed.bidder.clone()),
                ends_at,
            };
            self.append(lot_id, &op)?;
            last_seq = bid.seq;
            audit::write(
                self.conn,
                &Record {
                    lot_id,
                    at: self.at,
                    bidder: &placed.bidder,
                    action: AuditAction::Bid,
                    origin: if placed.proxy {
                        AuditOrigin::Proxy
                    } else {
                        AuditOrigin::Direct
                    },
                    accepted: true,
                    amount: Some(placed.amount),
                    max_amount: None,
                    seq: Some(bid.seq),
                    reason: None,
                },
            )?;
            if placed.bidder == bidder {
                own = Some(bid);
            }
        }
        let placed = own.is_some();
        let own = own.unwrap_or_else(|| Bid {
            // A maximum changed while leading: no bid, the standing one is the answer.
            lot_id: lot_id.to_owned(),
            bidder: bidder.to_owned(),
            amount: lot.current_price,
            seq: lot.seq,
            at: self.at,
            proxy: false,
        });
        let max_amount = match &resolution.max {
            Some(max) => Some(max.amount),
            None => maxima.iter().find(|m| m.bidder == bidder).map(|m| m.amount),
        };
        let receipt = BidReceipt {
            bid: own,
            placed,
            max_amount,
            leading: resolution.leader.as_deref() == Some(bidder),
            current_price: resolution.price,
            lot_seq: last_seq,
        };
        if let Some(key) = key {
            let response = serde_json::to_string(&receipt).expect("a receipt always serialises");
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
            bid: receipt.bid.clone(),
            receipt,
            replayed: false,
        })
    }

    /// The first answer to a request with this idempotency key, if it is a retry (the
    /// replay is audited); a key past its retention is forgotten.
    fn replay(
        &mut self,
        bidder: &str,
        lot_id: &str,
        key: &str,
        request: &BidRequest,
        request_hash: &str,
    ) -> Result<Option<BidOutcome>, StoreError> {
        let seen = self.conn.query_opt(
            "SELECT request_hash, response, created_ms FROM idempotency \
             WHERE bidder = ? AND \"key\" = ?",
            args![bidder, key],
        )?;
        let Some(row) = seen else {
            return Ok(None);
        };
        if row.int(2)? < self.idempotency_cutoff() {
            // Past the retention the key is forgotten: this is a new request.
            self.conn.execute(
                "DELETE FROM idempotency WHERE bidder = ? AND \"key\" = ?",
                args![bidder, key],
            )?;
            return Ok(None);
        }
        let (hash, response) = (row.text(0)?, row.text(1)?);
        if hash != request_hash {
            return Err(StoreError::IdempotencyConflict);
        }
        let mut receipt: BidReceipt = serde_json::from_str(&response)
            .map_err(|e| StoreError::Corrupt(format!("bad idempotency row: {e}")))?;
        if receipt.lot_seq == 0 {
            // Remembered before receipts: the bid led when it was placed.
            receipt.leading = true;
            receipt.current_price = receipt.bid.amount;
            receipt.lot_seq = receipt.bid.seq;
        }
        audit::write(
            self.conn,
            &Record {
                lot_id,
                at: self.at,
                bidder,
                action: if request.max_amount.is_some() {
                    AuditAction::Max
                } else {
                    AuditAction::Bid
                },
                origin: AuditOrigin::Replay,
                accepted: false,
                amount: request.amount,
                max_amount: request.max_amount,
                seq: None,
                reason: Some("idempotent replay: answered again, nothing placed".into()),
            },
        )?;
        Ok(Some(BidOutcome {
            bid: receipt.bid.clone(),
            receipt,
            replayed: true,
        }))
    }
}

/// What an idempotency key is bound to. A plain bid hashes as it always did, so keys
/// remembered before maximums still match their retries.
fn request_hash(lot_id: &str, request: &BidRequest) -> String {
    match (request.amount, request.max_amount) {
        (Some(amount), None) => format!("{lot_id}\n{amount}"),
        (amount, Some(max)) => format!(
            "{lot_id}\n{}\nmax {max}",
            amount.map(|a| a.to_string()).unwrap_or_default()
        ),
        (None, None) => format!("{lot_id}\n"),
    }
}

/// Every maximum on a lot.
fn load_maxima(conn: &mut dyn Conn, lot_id: &str) -> Result<Vec<MaxBid>, StoreError> {
    conn.query(
        "SELECT bidder, max_amount, set_order FROM maxima WHERE lot_id = ?",
        args![lot_id],
    )?
    .iter()
    .map(|r| {
        Ok(MaxBid {
            bidder: r.text(0)?,
            amount: r.int(1)?,
            order: r.int(2)?.max(0) as u64,
        })
    })
    .collect()
}

/// The next position in the order maximums are set in.
fn next_order(conn: &mut dyn Conn) -> Result<u64, StoreError> {
    let last = conn
        .query_one("SELECT max(set_order) FROM maxima", &[])?
        .opt_int(0)?
        .unwrap_or(0);
    Ok(last.max(0) as u64 + 1)
}

fn store_max(conn: &mut dyn Conn, lot_id: &str, max: &MaxBid) -> Result<(), StoreError> {
    let sql = conn.dialect().upsert(
        "maxima",
        &["lot_id", "bidder", "max_amount", "set_order"],
        &["lot_id", "bidder"],
    );
    conn.execute(
        &sql,
        args![lot_id, &max.bidder, max.amount, max.order as i64],
    )?;
    Ok(())
}

/// A bidder's own maximum on a lot and where they stand, read from the primary.
pub fn max_status(
    conn: &mut dyn Conn,
    lot_id: &str,
    bidder: &str,
) -> Result<Option<MaxStatus>, StoreError> {
    let Some(stored) = schema::load_lot(conn, lot_id)? else {
        return Ok(None);
    };
    let lot = stored.lot;
    let max_amount: Option<Money> = conn
        .query_opt(
            "SELECT max_amount FROM maxima WHERE lot_id = ? AND bidder = ?",
            args![lot_id, bidder],
        )?
        .map(|r| r.int(0))
        .transpose()?;
    Ok(Some(MaxStatus {
        lot_id: lot_id.to_owned(),
        bidder: bidder.to_owned(),
        max_amount,
        leading: lot.leading_bidder.as_deref() == Some(bidder),
        current_price: lot.current_price,
        min_next_bid: lot.min_next_bid(),
        seq: lot.seq,
    }))
}
