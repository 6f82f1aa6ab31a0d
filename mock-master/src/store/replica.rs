//! Reads from the replica: every fetch is answered here, never from the primary.
//!
//! A small pool of read-only connections is used from blocking tasks; each read runs in
//! one transaction, so the applied sequence it reports and the rows it returns are one
//! consistent snapshot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lotsync::protocol::{Lot, Seq};
use rusqlite::Connection;

use super::StoreError;
use super::schema;

/// Idle connections kept for reuse.
const POOL_SIZE: usize = 8;

/// Read-only access to the replica database.
#[derive(Clone)]
pub struct ReplicaReader {
    path: Arc<PathBuf>,
    /// Idle connections; a std mutex because it is only held to push or pop.
    pool: Arc<Mutex<Vec<Connection>>>,
}

impl ReplicaReader {
    /// Readers for the replica at `path`.
    pub fn new(path: PathBuf) -> ReplicaReader {
        ReplicaReader {
            path: Arc::new(path),
            pool: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Run `read` on a pooled connection in a blocking task.
    pub async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = this.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => schema::open_read_only(&this.path)?,
            };
            let result = read(&mut conn);
            let mut pool = this.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_SIZE {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("replica reader panicked: {e}")))?
    }
}

fn applied(conn: &Connection) -> Result<Seq, StoreError> {
    let applied: i64 = conn.query_row(
        "SELECT applied_seq FROM replication_state WHERE id = 0",
        [],
        |r| r.get(0),
    )?;
    Ok(applied as Seq)
}

/// One lot and the applied sequence, in one read transaction.
pub fn lot(conn: &mut Connection, id: &str) -> Result<(Seq, Option<Lot>), StoreError> {
    let tx = conn.transaction()?;
    let seq = applied(&tx)?;
    let lot = schema::load_full_lot(&tx, id)?;
    Ok((seq, lot))
}

/// All lots (`ids` = `None`) or the given ones, with the ids not found, in one read
/// transaction. Lots come back ordered by id.
pub fn lots(
    conn: &mut Connection,
    ids: Option<&[String]>,
) -> Result<(Seq, Vec<Lot>, Vec<String>), StoreError> {
    let tx = conn.transaction()?;
    let seq = applied(&tx)?;
    let Some(ids) = ids else {
        return Ok((seq, schema::load_all_lots(&tx)?, Vec::new()));
    };
    let mut wanted: Vec<&String> = ids.iter().collect();
    wanted.sort();
    wanted.dedup();
    let mut lots = Vec::new();
    let mut missing = Vec::new();
    for id in wanted {
        match schema::load_full_lot(&tx, id)? {
            Some(lot) => lots.push(lot),
            None => missing.push(id.clone()),
        }
    }
    Ok((seq, lots, missing))
}
