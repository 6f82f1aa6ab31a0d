//! The audit trail: every bid and maximum on a lot, accepted or refused, with the
//! server's time in microseconds, kept in the primary next to the operation log (in the
//! same transaction as what it records) and never pruned.
//!
//! Absent amounts, sequences and reasons are stored as 0 and "" (amounts and sequences
//! are never 0), so no engine has to bind a typed NULL.

use chrono::{DateTime, Utc};
use lotsync::protocol::{AuditAction, AuditEntry, AuditOrigin, BidRequest, Money, Seq};

use super::StoreError;
use super::engine::{Conn, args};

/// One entry to record.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The lot.
    pub lot_id: &'a str,
    /// When the master decided.
    pub at: DateTime<Utc>,
    /// Whose action.
    pub bidder: &'a str,
    /// Bid or maximum.
    pub action: AuditAction,
    /// Direct, proxy or replay.
    pub origin: AuditOrigin,
    /// Accepted or not.
    pub accepted: bool,
    /// The bid's amount.
    pub amount: Option<Money>,
    /// The maximum asked for.
    pub max_amount: Option<Money>,
    /// The operation's sequence (accepted bids).
    pub seq: Option<Seq>,
    /// Why it was refused.
    pub reason: Option<String>,
}

/// Append an entry (ids increase in the order entries are written).
pub fn write(conn: &mut dyn Conn, r: &Record<'_>) -> Result<(), StoreError> {
    let last = conn
        .query_one("SELECT max(id) FROM audit", &[])?
        .opt_int(0)?
        .unwrap_or(0);
    conn.execute(
        "INSERT INTO audit (id, lot_id, at_us, bidder, action, origin, accepted, amount, \
         max_amount, seq, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![
            last + 1,
            r.lot_id,
            r.at.timestamp_micros(),
            r.bidder,
            r.action.as_str(),
            r.origin.as_str(),
            i64::from(r.accepted),
            r.amount.unwrap_or(0),
            r.max_amount.unwrap_or(0),
            r.seq.map_or(0, |s| s as i64),
            r.reason.clone().unwrap_or_default()
        ],
    )?;
    Ok(())
}

/// Record a request the bidding rules refused (after its own changes were rolled back).
pub fn refused(
    conn: &mut dyn Conn,
    lot_id: &str,
    bidder: &str,
    request: &BidRequest,
    error: &StoreError,
) -> Result<(), StoreError> {
    let action = if request.max_amount.is_some() {
        AuditAction::Max
    } else {
        AuditAction::Bid
    };
    write(
        conn,
        &Record {
            lot_id,
            at: Utc::now(),
            bidder,
            action,
            origin: AuditOrigin::Direct,
            accepted: false,
            amount: request.amount,
            max_amount: request.max_amount,
            seq: None,
            reason: Some(format!("{}: {error}", error.code())),
        },
    )
}

/// Most entries one read returns.
pub const MAX_READ: usize = 100_000;

/// A lot's entries in order (at most [`MAX_READ`], from `after_id` on).
pub fn read(
    conn: &mut dyn Conn,
    lot_id: &str,
    after_id: u64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = conn.query(
        "SELECT id, at_us, bidder, action, origin, accepted, amount, max_amount, seq, reason \
         FROM audit WHERE lot_id = ? AND id > ? ORDER BY id LIMIT ?",
        args![lot_id, after_id as i64, MAX_READ as i64],
    )?;
    rows.iter()
        .map(|r| {
            let at_us = r.int(1)?;
            let action = match r.text(3)?.as_str() {
                "max" => AuditAction::Max,
                _ => AuditAction::Bid,
            };
            let origin = match r.text(4)?.as_str() {
                "proxy" => AuditOrigin::Proxy,
                "replay" => AuditOrigin::Replay,
                _ => AuditOrigin::Direct,
            };
            Ok(AuditEntry {
                id: r.int(0)? as u64,
                lot_id: lot_id.to_owned(),
                at: DateTime::from_timestamp_micros(at_us)
                    .ok_or_else(|| StoreError::Corrupt(format!("bad audit time {at_us}")))?,
                at_us,
                bidder: r.text(2)?,
                action,
                origin,
                accepted: r.int(5)? != 0,
                amount: Some(r.int(6)?).filter(|v| *v != 0),
                max_amount: Some(r.int(7)?).filter(|v| *v != 0),
                seq: Some(r.int(8)?).filter(|v| *v != 0).map(|s| s as Seq),
                reason: Some(r.text(9)?).filter(|t| !t.is_empty()),
            })
        })
        .collect()
}
