//! The operation log's entries: what each committed write did, in a form the
//! replicator can parse and execute again on the replica.
//!
//! An [`Op`] is stored as JSON in `oplog.op`. [`Op::apply`] is the one function that
//! turns "the lot before" into "the lot after"; the primary and the replica both use
//! it, so the two databases cannot interpret an operation differently.

use chrono::{DateTime, Utc};
use lotsync::protocol::{AdminLot, Bid, Ladder, LotStatus, Money, OpKind, Seq};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// One operation on one lot, as recorded in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// The lot's whole data after a create or replace (without `recent_bids`). Entries
    /// from before confidential reserves hold the same fields, the reserve among them.
    Upsert {
        /// The lot as stored after the operation.
        lot: Box<AdminLot>,
    },
    /// Only the status changed (and, for some changes, the times).
    Status {
        /// The new status.
        status: LotStatus,
        /// New start time (a lane's next lot rescheduled after the previous one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        starts_at: Option<DateTime<Utc>>,
        /// New end time, when the change moved it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends_at: Option<DateTime<Utc>>,
    },
    /// A bid was accepted (placed by the bidder, or by the master from their maximum);
    /// the price columns it changed.
    Bid {
        /// The accepted bid.
        bid: Bid,
        /// Price after the bid.
        current_price: Money,
        /// Bid count after the bid.
        bid_count: u32,
        /// Leader after the bid.
        leading_bidder: Option<String>,
        /// End time after the bid (anti-sniping may move it).
        ends_at: DateTime<Utc>,
    },
}

impl Op {
    /// A status change that moves no time.
    pub fn status(status: LotStatus) -> Op {
        Op::Status {
            status,
            starts_at: None,
            ends_at: None,
        }
    }

    /// The kind carried by notices.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Upsert { .. } => OpKind::Upsert,
            Op::Status { .. } => OpKind::Status,
            Op::Bid { .. } => OpKind::Bid,
        }
    }

    /// Encode for the `oplog.op` column.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("an Op always serialises")
    }

    /// Parse an `oplog.op` column.
    pub fn decode(text: &str) -> Result<Op, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("bad oplog entry: {e}")))
    }

    /// The lot after this operation, given the lot before it (without recent bids).
    ///
    /// `seq` and `at` become the lot's version and `updated_at`.
    pub fn apply(
        &self,
        before: Option<AdminLot>,
        lot_id: &str,
        seq: Seq,
        at: DateTime<Utc>,
    ) -> Result<AdminLot, StoreError> {
        let mut stored = match (self, before) {
            (Op::Upsert { lot }, _) => (**lot).clone(),
            (_, Some(lot)) => lot,
            (_, None) => {
                return Err(StoreError::Corrupt(format!(
                    "operation {seq} changes lot {lot_id:?}, which does not exist"
                )));
            }
        };
        let lot = &mut stored.lot;
        match self {
            Op::Upsert { .. } => {}
            Op::Status {
                status,
                starts_at,
                ends_at,
            } => {
                lot.status = *status;
                if let Some(starts_at) = starts_at {
                    lot.starts_at = *starts_at;
                }
                if let Some(ends_at) = ends_at {
                    lot.ends_at = *ends_at;
                }
            }
            Op::Bid {
                current_price,
                bid_count,
                leading_bidder,
                ends_at,
                ..
            } => {
                lot.current_price = *current_price;
                lot.bid_count = *bid_count;
                lot.leading_bidder.clone_from(leading_bidder);
                lot.ends_at = *ends_at;
            }
        }
        lot.id = lot_id.to_owned();
        lot.seq = seq;
        lot.updated_at = at;
        lot.recent_bids.clear();
        if lot.increment_ladder.is_empty() {
            lot.increment_ladder = Ladder::fixed(lot.increment).bands().to_vec();
        }
        stored.refresh();
        Ok(stored)
    }
}

/// A log entry as read back from `oplog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log.
    pub seq: Seq,
    /// Lot the operation changed.
    pub lot_id: String,
    /// The operation.
    pub op: Op,
    /// Commit time.
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_apply() {
        let before = AdminLot {
            lot: lotsync::protocol::Lot::example("a"),
            reserve_price: Some(150_000),
        };
        let at = before.lot.updated_at + chrono::Duration::seconds(5);
        let bid = Bid {
            lot_id: "a".into(),
            bidder: "alice".into(),
            amount: 200_000,
            seq: 9,
            at,
            proxy: true,
        };
        let op = Op::Bid {
            bid,
            current_price: 200_000,
            bid_count: 1,
            leading_bidder: Some("alice".into()),
            ends_at: before.lot.ends_at,
        };
        let decoded = Op::decode(&op.encode()).unwrap();
        assert_eq!(decoded, op);
        let after = decoded.apply(Some(before.clone()), "a", 9, at).unwrap().lot;
        assert_eq!(
            (after.current_price, after.bid_count, after.seq),
            (200_000, 1, 9)
        );
        assert_eq!(after.leading_bidder.as_deref(), Some("alice"));
        assert_eq!(after.reserve_met, Some(true), "recomputed from the reserve");

        let status = Op::Status {
            status: LotStatus::Closed,
            starts_at: None,
            ends_at: None,
        };
        let closed = status
            .apply(
                Some(AdminLot {
                    lot: after,
                    reserve_price: None,
                }),
                "a",
                10,
                at,
            )
            .unwrap()
            .lot;
        assert_eq!(
            (closed.status, closed.seq, closed.ends_at),
            (LotStatus::Closed, 10, before.lot.ends_at)
        );
        assert_eq!(closed.reserve_met, None, "no reserve: absent");
        assert!(status.apply(None, "b", 11, at).is_err());
        assert!(Op::decode("{\"type\":\"nope\"}").is_err());
    }
}
