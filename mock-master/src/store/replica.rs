//! Reads: every fetch is answered from the replica, never from the primary.
//!
//! A small pool of read connections is used from blocking tasks; each read runs in one
//! snapshot transaction, so the applied sequence it reports and the rows it returns are
//! one consistent view. The same pool type reads the primary for tests and the demo.

use std::sync::{Arc, Mutex};

use lotsync::protocol::{Lot, Seq};

use super::StoreError;
use super::engine::{Access, Conn, DbUrl, connect, off_runtime};
use super::schema;

/// Idle connections kept for reuse.
const POOL_SIZE: usize = 8;

/// Read access to one database through pooled connections.
#[derive(Clone)]
pub struct Readers {
    inner: Arc<Pool>,
}

struct Pool {
    url: DbUrl,
    /// Idle connections; a std mutex because it is only held to push or pop.
    idle: Mutex<Vec<Box<dyn Conn>>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A PostgreSQL connection may not be dropped inside the async runtime.
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !idle.is_empty() {
            off_runtime(move || drop(idle));
        }
    }
}

impl Readers {
    /// Readers for the database at `url`.
    pub fn new(url: DbUrl) -> Readers {
        Readers {
            inner: Arc::new(Pool {
                url,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Run `read` in one snapshot transaction on a pooled connection, in a blocking task.
    pub async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(read))
            .await
            .map_err(|e| StoreError::Corrupt(format!("reader panicked: {e}")))?
    }

    /// [`Readers::read`] on the calling thread, which must be allowed to block.
    pub fn read_blocking<T>(
        &self,
        read: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pool = &self.inner;
        let pooled = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => connect(&pool.url, Access::Read)?,
        };
        let result = schema::in_snapshot(&mut *conn, read);
        // A connection that failed may be broken; only healthy ones go back.
        if result.is_ok() {
            let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < POOL_SIZE {
                idle.push(conn);
            }
        }
        result
    }

    /// Close the idle connections (on the calling thread, which must allow blocking).
    pub fn close(&self) {
        let idle = std::mem::take(&mut *self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()));
        drop(idle);
    }
}

/// One lot and the applied sequence, read in the caller's snapshot.
pub fn lot(conn: &mut dyn Conn, id: &str) -> Result<(Seq, Option<Lot>), StoreError> {
    let seq = schema::applied_seq(conn)?;
    let lot = schema::load_full_lot(conn, id)?;
    Ok((seq, lot))
}

/// All lots (`ids` = `None`) or the given ones, with the ids not found, read in the
/// caller's snapshot. Lots come back ordered by id.
pub fn lots(
    conn: &mut dyn Conn,
    ids: Option<&[String]>,
) -> Result<(Seq, Vec<Lot>, Vec<String>), StoreError> {
    let seq = schema::applied_seq(conn)?;
    let Some(ids) = ids else {
        return Ok((seq, schema::load_all_lots(conn)?, Vec::new()));
    };
    let mut wanted: Vec<&String> = ids.iter().collect();
    wanted.sort();
    wanted.dedup();
    let mut lots = Vec::new();
    let mut missing = Vec::new();
    for id in wanted {
        match schema::load_full_lot(conn, id)? {
            Some(lot) => lots.push(lot),
            None => missing.push(id.clone()),
        }
    }
    Ok((seq, lots, missing))
}
