//! Table definitions, connection settings and the row helpers both databases share.
//!
//! The primary and the replica hold lots and bids in the same shape, so the code that
//! reads a lot or executes an [`Op`] is written once and run against either.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use lotsync::protocol::{Bid, Lot, RECENT_BIDS, Seq};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::StoreError;
use super::oplog::Op;

/// Tables common to both databases: lots (JSON data plus the columns the closer
/// queries) and bids.
const LOT_TABLES: &str = "
CREATE TABLE IF NOT EXISTS lots (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    starts_at_ms INTEGER NOT NULL,
    ends_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bids (
    seq INTEGER PRIMARY KEY,
    lot_id TEXT NOT NULL,
    bidder TEXT NOT NULL,
    amount INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bids_by_lot ON bids (lot_id, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// Primary-only tables: the operation log and remembered idempotent bids.
const PRIMARY_TABLES: &str = "
CREATE TABLE IF NOT EXISTS oplog (
    seq INTEGER PRIMARY KEY,
    lot_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    op TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    bidder TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    PRIMARY KEY (bidder, key)
);
";

/// Replica-only table: how far the log has been applied.
const REPLICA_TABLES: &str = "
CREATE TABLE IF NOT EXISTS replication_state (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    applied_seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO replication_state (id, applied_seq) VALUES (0, 0);
";

/// How durable a database's commits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: an acknowledged write survives a power cut.
    Full,
    /// No fsync: for throwaway in-memory masters.
    Off,
}

fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Off => "OFF",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Open (creating if needed) the primary database.
pub fn open_primary(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    configure(&conn, durability)?;
    conn.execute_batch(LOT_TABLES)?;
    conn.execute_batch(PRIMARY_TABLES)?;
    Ok(conn)
}

/// Open (creating if needed) the replica database for writing.
pub fn open_replica(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    configure(&conn, durability)?;
    conn.execute_batch(LOT_TABLES)?;
    conn.execute_batch(REPLICA_TABLES)?;
    Ok(conn)
}

/// Open a read-only connection (for fetches, or the replicator reading the log).
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Read a `meta` value.
pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Write a `meta` value.
pub fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}

/// Render a time the way every table stores it.
pub fn fmt_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parse a stored time.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad time {text:?}: {e}")))
}

/// A lot's stored data, without recent bids.
pub fn load_lot(conn: &Connection, id: &str) -> Result<Option<Lot>, StoreError> {
    let data: Option<String> = conn
        .prepare_cached("SELECT data FROM lots WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    data.map(|d| decode_lot(&d)).transpose()
}

/// Parse a `lots.data` column.
pub fn decode_lot(data: &str) -> Result<Lot, StoreError> {
    serde_json::from_str(data).map_err(|e| StoreError::Corrupt(format!("bad lot row: {e}")))
}

/// Store a lot row (its data without recent bids, plus the queried columns).
pub fn write_lot(conn: &Connection, lot: &Lot) -> Result<(), StoreError> {
    let data = serde_json::to_string(lot).expect("a Lot always serialises");
    conn.prepare_cached(
        "INSERT INTO lots (id, data, seq, status, starts_at_ms, ends_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET data = ?2, seq = ?3, status = ?4, starts_at_ms = ?5, ends_at_ms = ?6",
    )?
    .execute(params![
        lot.id,
        data,
        lot.seq as i64,
        lot.status.as_str(),
        lot.starts_at.timestamp_millis(),
        lot.ends_at.timestamp_millis()
    ])?;
    Ok(())
}

/// Store an accepted bid.
pub fn write_bid(conn: &Connection, bid: &Bid) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO bids (seq, lot_id, bidder, amount, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        bid.seq as i64,
        bid.lot_id,
        bid.bidder,
        bid.amount,
        fmt_time(bid.at)
    ])?;
    Ok(())
}

/// The lot's most recent bids, newest first.
pub fn recent_bids(conn: &Connection, lot_id: &str) -> Result<Vec<Bid>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, bidder, amount, at FROM bids WHERE lot_id = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![lot_id, RECENT_BIDS as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut bids = Vec::new();
    for row in rows {
        let (seq, bidder, amount, at) = row?;
        bids.push(Bid {
            lot_id: lot_id.to_owned(),
            bidder,
            amount,
            seq: seq as Seq,
            at: parse_time(&at)?,
        });
    }
    Ok(bids)
}

/// A lot with its recent bids filled in.
pub fn load_full_lot(conn: &Connection, id: &str) -> Result<Option<Lot>, StoreError> {
    let Some(mut lot) = load_lot(conn, id)? else {
        return Ok(None);
    };
    lot.recent_bids = recent_bids(conn, id)?;
    Ok(Some(lot))
}

/// Every lot, ordered by id, with recent bids.
pub fn load_all_lots(conn: &Connection) -> Result<Vec<Lot>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT data FROM lots ORDER BY id")?;
    let datas: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut lots = Vec::with_capacity(datas.len());
    for data in datas {
        let mut lot = decode_lot(&data)?;
        lot.recent_bids = recent_bids(conn, &lot.id)?;
        lots.push(lot);
    }
    Ok(lots)
}

/// Execute one operation on a database's lots and bids: the "parse, then execute"
/// step both the primary's writer and the replicator use. Returns the lot after it.
pub fn execute_op(
    conn: &Connection,
    seq: Seq,
    lot_id: &str,
    op: &Op,
    at: DateTime<Utc>,
) -> Result<Lot, StoreError> {
    let before = match op {
        Op::Upsert { .. } => None,
        _ => load_lot(conn, lot_id)?,
    };
    let lot = op.apply(before, lot_id, seq, at)?;
    write_lot(conn, &lot)?;
    if let Op::Bid { bid, .. } = op {
        write_bid(conn, bid)?;
    }
    Ok(lot)
}
