//! Lanes and run lists: a lane runs its lots in `run_order`; a sequential lane has one
//! live lot at a time, the next one opening when the previous settles (after the lane's
//! gap). Settings live in the primary's `lanes` table; a lot names its lane.

use lotsync::protocol::{AdminLot, Lane, LaneSettings, Lot, LotStatus};

use super::StoreError;
use super::commands::Ctx;
use super::engine::{Conn, args};
use super::oplog::Op;
use super::schema;

/// Create or change a lane's settings.
pub fn set(conn: &mut dyn Conn, lane: &str, settings: LaneSettings) -> Result<Lane, StoreError> {
    lotsync::protocol::validate_lane(lane)?;
    settings.validate()?;
    let sql = conn
        .dialect()
        .upsert("lanes", &["lane", "sequential", "gap_ms"], &["lane"]);
    conn.execute(
        &sql,
        args![
            lane,
            i64::from(settings.sequential),
            settings.gap_ms.min(LaneSettings::MAX_GAP_MS) as i64
        ],
    )?;
    Ok(Lane {
        lane: lane.to_owned(),
        sequential: settings.sequential,
        gap_ms: settings.gap_ms,
    })
}

/// Every lane with settings, by name.
pub fn list(conn: &mut dyn Conn) -> Result<Vec<Lane>, StoreError> {
    conn.query(
        "SELECT lane, sequential, gap_ms FROM lanes ORDER BY lane",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(Lane {
            lane: r.text(0)?,
            sequential: r.int(1)? != 0,
            gap_ms: r.int(2)?.max(0) as u64,
        })
    })
    .collect()
}

fn settings(conn: &mut dyn Conn, lane: &str) -> Result<Option<LaneSettings>, StoreError> {
    conn.query_opt(
        "SELECT sequential, gap_ms FROM lanes WHERE lane = ?",
        args![lane],
    )?
    .map(|r| {
        Ok(LaneSettings {
            sequential: r.int(0)? != 0,
            gap_ms: r.int(1)?.max(0) as u64,
        })
    })
    .transpose()
}

/// The sequential lane `lot` runs in, if it runs in one.
fn sequential_lane(conn: &mut dyn Conn, lot: &Lot) -> Result<Option<LaneSettings>, StoreError> {
    let Some(lane) = &lot.lane else {
        return Ok(None);
    };
    Ok(settings(conn, lane)?.filter(|s| s.sequential))
}

/// The lots of `lane` that have not settled, in run order.
fn unsettled(conn: &mut dyn Conn, lane: &str) -> Result<Vec<AdminLot>, StoreError> {
    let rows = conn.query(
        "SELECT data FROM lots WHERE status IN ('scheduled', 'open', 'closed')",
        &[],
    )?;
    let mut lots = Vec::new();
    for row in rows {
        let lot = schema::decode_lot(&row.text(0)?)?;
        if lot.lot.lane.as_deref() == Some(lane) {
            lots.push(lot);
        }
    }
    lots.sort_by(|a, b| run_key(&a.lot).cmp(&run_key(&b.lot)));
    Ok(lots)
}

/// Position in a run list: by `run_order` (lots without one last), then by id.
fn run_key(lot: &Lot) -> (u32, &str) {
    (lot.run_order.unwrap_or(u32::MAX), &lot.id)
}

/// Whether a scheduled lot whose start has come may open: always, unless its lane is
/// sequential and a lot before it in the run list has not settled.
pub fn may_open(conn: &mut dyn Conn, lot: &Lot) -> Result<bool, StoreError> {
    if sequential_lane(conn, lot)?.is_none() {
        return Ok(true);
    }
    let lane = lot.lane.as_deref().unwrap_or_default();
    let before = unsettled(conn, lane)?
        .iter()
        .any(|other| run_key(&other.lot) < run_key(lot));
    Ok(!before)
}

/// After `settled` reached a final status: in a sequential lane, schedule the next lot
/// of the run list to open after the gap (keeping its planned start if that is later,
/// and its planned duration). Returns the operations written.
pub(super) fn after_settle(ctx: &mut Ctx<'_>, settled: &Lot) -> Result<usize, StoreError> {
    let Some(settings) = sequential_lane(ctx.conn, settled)? else {
        return Ok(0);
    };
    let lane = settled.lane.as_deref().unwrap_or_default();
    let waiting = unsettled(ctx.conn, lane)?;
    let Some(next) = waiting.first() else {
        return Ok(0);
    };
    if next.lot.status != LotStatus::Scheduled {
        return Ok(0);
    }
    let gap = chrono::Duration::milliseconds(settings.gap_ms as i64);
    let earliest = ctx.at + gap;
    if next.lot.starts_at >= earliest {
        return Ok(0);
    }
    let duration = next.lot.ends_at - next.lot.starts_at;
    let status = if settings.gap_ms == 0 {
        LotStatus::Open
    } else {
        LotStatus::Scheduled
    };
    ctx.append(
        &next.lot.id.clone(),
        &Op::Status {
            status,
            starts_at: Some(earliest),
            ends_at: Some(earliest + duration),
        },
    )?;
    Ok(1)
}
