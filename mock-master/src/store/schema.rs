//! Table definitions (the migrations run at start) and the row helpers both databases
//! share.
//!
//! The primary and the replica hold lots and bids in the same shape, so the code that
//! reads a lot or executes an [`Op`] is written once and runs against either, on any
//! engine: the SQL here is the same for all of them, and the dialect fills in what
//! differs (types, upsert syntax).

use chrono::{DateTime, SecondsFormat, Utc};
use lotsync::protocol::{AdminLot, Bid, IncrementBand, Lot, RECENT_BIDS, Seq};

use super::StoreError;
use super::engine::{Conn, args};
use super::oplog::Op;

/// Tables common to both databases: lots (JSON data plus the columns the closer
/// queries), bids, and `meta` (the epoch the database belongs to).
const LOT_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS lots (
        id {key} PRIMARY KEY,
        data {text} NOT NULL,
        seq {int} NOT NULL,
        status {key} NOT NULL,
        starts_at_ms {int} NOT NULL,
        ends_at_ms {int} NOT NULL
    ){opts}",
    "CREATE TABLE IF NOT EXISTS bids (
        seq {int} PRIMARY KEY,
        lot_id {key} NOT NULL,
        bidder {key} NOT NULL,
        amount {int} NOT NULL,
        at {key} NOT NULL,
        proxy {int} NOT NULL DEFAULT 0
    ){opts}",
    "CREATE INDEX IF NOT EXISTS bids_by_lot ON bids (lot_id, seq)",
    "CREATE TABLE IF NOT EXISTS meta (\"key\" {key} PRIMARY KEY, value {text} NOT NULL){opts}",
];

/// Primary-only tables: the operation log, remembered idempotent bids, bidders'
/// confidential maximums (never replicated: the replica serves terminals), the audit
/// trail of every bid and maximum, accepted or refused, and lane settings.
const PRIMARY_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS oplog (
        seq {int} PRIMARY KEY,
        lot_id {key} NOT NULL,
        kind {key} NOT NULL,
        op {text} NOT NULL,
        at {key} NOT NULL
    ){opts}",
    "CREATE TABLE IF NOT EXISTS idempotency (
        bidder {key} NOT NULL,
        \"key\" {key} NOT NULL,
        request_hash {text} NOT NULL,
        response {text} NOT NULL,
        created_ms {int} NOT NULL DEFAULT 0,
        PRIMARY KEY (bidder, \"key\")
    ){opts}",
    "CREATE TABLE IF NOT EXISTS maxima (
        lot_id {key} NOT NULL,
        bidder {key} NOT NULL,
        max_amount {int} NOT NULL,
        set_order {int} NOT NULL,
        PRIMARY KEY (lot_id, bidder)
    ){opts}",
    "CREATE TABLE IF NOT EXISTS audit (
        id {int} PRIMARY KEY,
        lot_id {key} NOT NULL,
        at_us {int} NOT NULL,
        bidder {key} NOT NULL,
        action {key} NOT NULL,
        origin {key} NOT NULL,
        accepted {int} NOT NULL,
        amount {int} NOT NULL,
        max_amount {int} NOT NULL,
        seq {int} NOT NULL,
        reason {text} NOT NULL
    ){opts}",
    "CREATE TABLE IF NOT EXISTS lanes (
        lane {key} PRIMARY KEY,
        sequential {int} NOT NULL,
        gap_ms {int} NOT NULL
    ){opts}",
];

/// Primary-only indexes, created once the columns they cover exist.
const PRIMARY_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency (created_ms)",
    "CREATE INDEX IF NOT EXISTS audit_by_lot ON audit (lot_id, id)",
];

/// Replica-only table: how far the log has been applied.
const REPLICA_TABLES: &[&str] = &["CREATE TABLE IF NOT EXISTS replication_state (
        id {int} PRIMARY KEY CHECK (id = 0),
        applied_seq {int} NOT NULL
    ){opts}"];

/// Which database a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The first database: lots, bids, the log, idempotency keys.
    Primary,
    /// The second database: lots, bids, the applied position.
    Replica,
}

/// Create the role's tables if they are missing (idempotent; run at every start).
pub fn migrate(conn: &mut dyn Conn, role: Role) -> Result<(), StoreError> {
    let dialect = conn.dialect();
    let own = match role {
        Role::Primary => PRIMARY_TABLES,
        Role::Replica => REPLICA_TABLES,
    };
    for template in LOT_TABLES.iter().chain(own) {
        conn.batch(&dialect.ddl(template))?;
    }
    add_column(conn, "bids", "proxy", "{int} NOT NULL DEFAULT 0")?;
    if role == Role::Replica {
        let sql = dialect.insert_ignore("replication_state", &["id", "applied_seq"]);
        conn.execute(&sql, args![0i64, 0i64])?;
    }
    if role == Role::Primary {
        add_idempotency_age(conn)?;
        for index in PRIMARY_INDEXES {
            conn.batch(index)?;
        }
    }
    Ok(())
}

/// Add a column to a table from an older version, unless it has it already.
fn add_column(
    conn: &mut dyn Conn,
    table: &str,
    column: &str,
    definition: &str,
) -> Result<(), StoreError> {
    if conn
        .query(&format!("SELECT {column} FROM {table} WHERE 1 = 0"), &[])
        .is_ok()
    {
        return Ok(());
    }
    let add = format!("ALTER TABLE {table} ADD COLUMN {column} {definition}");
    conn.batch(&conn.dialect().ddl(&add))?;
    Ok(())
}

/// Databases from before idempotency keys expired have no `created_ms`: add it, and
/// count the keys they hold as created now, so a retry in flight is still honoured.
fn add_idempotency_age(conn: &mut dyn Conn) -> Result<(), StoreError> {
    if conn
        .query("SELECT created_ms FROM idempotency WHERE 1 = 0", &[])
        .is_ok()
    {
        return Ok(());
    }
    let add = "ALTER TABLE idempotency ADD COLUMN created_ms {int} NOT NULL DEFAULT 0";
    conn.batch(&conn.dialect().ddl(add))?;
    conn.execute(
        "UPDATE idempotency SET created_ms = ?",
        args![chrono::Utc::now().timestamp_millis()],
    )?;
    Ok(())
}

/// Read a `meta` value.
pub fn meta_get(conn: &mut dyn Conn, key: &str) -> Result<Option<String>, StoreError> {
    conn.query_opt("SELECT value FROM meta WHERE \"key\" = ?", args![key])?
        .map(|r| r.text(0))
        .transpose()
}

/// Write a `meta` value.
pub fn meta_set(conn: &mut dyn Conn, key: &str, value: &str) -> Result<(), StoreError> {
    let sql = conn
        .dialect()
        .upsert("meta", &["\"key\"", "value"], &["\"key\""]);
    conn.execute(&sql, args![key, value])?;
    Ok(())
}

/// The replica's applied position.
pub fn applied_seq(conn: &mut dyn Conn) -> Result<Seq, StoreError> {
    let row = conn.query_one(
        "SELECT applied_seq FROM replication_state WHERE id = 0",
        &[],
    )?;
    Ok(row.int(0)? as Seq)
}

/// Record the replica's applied position.
pub fn set_applied_seq(conn: &mut dyn Conn, seq: Seq) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE replication_state SET applied_seq = ? WHERE id = 0",
        args![seq as i64],
    )?;
    Ok(())
}

/// The log's oldest and newest sequence (zero when empty).
pub fn log_bounds(conn: &mut dyn Conn) -> Result<(Seq, Seq), StoreError> {
    let row = conn.query_one("SELECT min(seq), max(seq) FROM oplog", &[])?;
    Ok((
        row.opt_int(0)?.unwrap_or(0) as Seq,
        row.opt_int(1)?.unwrap_or(0) as Seq,
    ))
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

/// A lot's stored data (the admin's view, reserve included), without recent bids.
pub fn load_lot(conn: &mut dyn Conn, id: &str) -> Result<Option<AdminLot>, StoreError> {
    conn.query_opt("SELECT data FROM lots WHERE id = ?", args![id])?
        .map(|r| decode_lot(&r.text(0)?))
        .transpose()
}

/// Parse a `lots.data` column.
///
/// Rows written before ladders and confidential reserves hold `increment` alone and no
/// `reserve_met`: the ladder becomes one band and everything terminals see of the
/// reserve is recomputed here, so old rows read exactly like new ones.
pub fn decode_lot(data: &str) -> Result<AdminLot, StoreError> {
    let mut lot: AdminLot =
        serde_json::from_str(data).map_err(|e| StoreError::Corrupt(format!("bad lot row: {e}")))?;
    if lot.lot.increment_ladder.is_empty() {
        lot.lot.increment_ladder = vec![IncrementBand {
            from: 0,
            step: lot.lot.increment,
        }];
    }
    lot.refresh();
    Ok(lot)
}

const LOT_COLUMNS: &[&str] = &["id", "data", "seq", "status", "starts_at_ms", "ends_at_ms"];

/// Store a lot row (its data without recent bids, plus the queried columns).
pub fn write_lot(conn: &mut dyn Conn, stored: &AdminLot) -> Result<(), StoreError> {
    let data = serde_json::to_string(stored).expect("a Lot always serialises");
    let lot = &stored.lot;
    let sql = conn.dialect().upsert("lots", LOT_COLUMNS, &["id"]);
    conn.execute(
        &sql,
        args![
            &lot.id,
            data,
            lot.seq as i64,
            lot.status.as_str(),
            lot.starts_at.timestamp_millis(),
            lot.ends_at.timestamp_millis()
        ],
    )?;
    Ok(())
}

/// Store an accepted bid.
pub fn write_bid(conn: &mut dyn Conn, bid: &Bid) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO bids (seq, lot_id, bidder, amount, at, proxy) VALUES (?, ?, ?, ?, ?, ?)",
        args![
            bid.seq as i64,
            &bid.lot_id,
            &bid.bidder,
            bid.amount,
            fmt_time(bid.at),
            i64::from(bid.proxy)
        ],
    )?;
    Ok(())
}

/// The lot's most recent bids, newest first.
pub fn recent_bids(conn: &mut dyn Conn, lot_id: &str) -> Result<Vec<Bid>, StoreError> {
    let rows = conn.query(
        "SELECT seq, bidder, amount, at, proxy FROM bids WHERE lot_id = ? ORDER BY seq DESC LIMIT ?",
        args![lot_id, RECENT_BIDS as i64],
    )?;
    rows.iter()
        .map(|r| {
            Ok(Bid {
                lot_id: lot_id.to_owned(),
                bidder: r.text(1)?,
                amount: r.int(2)?,
                seq: r.int(0)? as Seq,
                at: parse_time(&r.text(3)?)?,
                proxy: r.int(4)? != 0,
            })
        })
        .collect()
}

/// A lot as the admin sees it, with its recent bids filled in.
pub fn load_full_admin_lot(conn: &mut dyn Conn, id: &str) -> Result<Option<AdminLot>, StoreError> {
    let Some(mut lot) = load_lot(conn, id)? else {
        return Ok(None);
    };
    lot.lot.recent_bids = recent_bids(conn, id)?;
    Ok(Some(lot))
}

/// A lot as terminals see it (no reserve price), with its recent bids filled in.
pub fn load_full_lot(conn: &mut dyn Conn, id: &str) -> Result<Option<Lot>, StoreError> {
    Ok(load_full_admin_lot(conn, id)?.map(|l| l.lot))
}

/// Every lot as the admin sees it, ordered by id, with recent bids.
pub fn load_all_admin_lots(conn: &mut dyn Conn) -> Result<Vec<AdminLot>, StoreError> {
    let rows = conn.query("SELECT data FROM lots ORDER BY id", &[])?;
    let mut lots = Vec::with_capacity(rows.len());
    for row in rows {
        let mut lot = decode_lot(&row.text(0)?)?;
        lot.lot.recent_bids = recent_bids(conn, &lot.lot.id)?;
        lots.push(lot);
    }
    Ok(lots)
}

/// Every lot as terminals see it (no reserve price), ordered by id, with recent bids.
pub fn load_all_lots(conn: &mut dyn Conn) -> Result<Vec<Lot>, StoreError> {
    Ok(load_all_admin_lots(conn)?
        .into_iter()
        .map(|l| l.lot)
        .collect())
}

/// Every stored bid, in sequence order (for rebuilding a replica).
pub fn load_all_bids(conn: &mut dyn Conn) -> Result<Vec<Bid>, StoreError> {
    let rows = conn.query(
        "SELECT seq, lot_id, bidder, amount, at, proxy FROM bids ORDER BY seq",
        &[],
    )?;
    rows.iter()
        .map(|r| {
            Ok(Bid {
                seq: r.int(0)? as Seq,
                lot_id: r.text(1)?,
                bidder: r.text(2)?,
                amount: r.int(3)?,
                at: parse_time(&r.text(4)?)?,
                proxy: r.int(5)? != 0,
            })
        })
        .collect()
}

/// Execute one operation on a database's lots and bids: the "parse, then execute"
/// step both the primary's writer and the replicator use. Returns the lot after it.
pub fn execute_op(
    conn: &mut dyn Conn,
    seq: Seq,
    lot_id: &str,
    op: &Op,
    at: DateTime<Utc>,
) -> Result<AdminLot, StoreError> {
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

/// Run `read` inside one read-only snapshot transaction.
pub fn in_snapshot<T>(
    conn: &mut dyn Conn,
    read: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.begin_read()?;
    match read(conn) {
        Ok(value) => {
            conn.commit()?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.rollback();
            Err(e)
        }
    }
}

/// The dialect-specific SQL is exercised by every store test on every engine; this
/// only checks the templates are filled in completely.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::Dialect;

    #[test]
    fn every_template_is_filled_in() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            for t in LOT_TABLES
                .iter()
                .chain(PRIMARY_TABLES)
                .chain(REPLICA_TABLES)
            {
                assert!(!dialect.ddl(t).contains('{'), "{dialect:?}: {t}");
            }
        }
    }
}
