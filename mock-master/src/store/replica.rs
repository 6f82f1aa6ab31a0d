//! Reads: every fetch is answered from the replica, never from the primary.
//!
//! A bounded pool of read connections is used from blocking tasks; each read runs in one
//! snapshot transaction, so the applied sequence it reports and the rows it returns are
//! one consistent view. The same pool type reads the primary for tests, the demo and
//! health probes. While a database is unreachable, new connections are attempted with
//! capped, jittered backoff and reads in between are refused as unavailable at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lotsync::protocol::{Lot, Seq};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;
use super::backoff::Backoff;
use super::engine::{Access, Conn, DbUrl, connect, off_runtime};
use super::health::{Monitor, Part};
use super::schema;

/// Connections a pool opens at most, unless told otherwise.
pub const DEFAULT_CONNECTIONS: usize = 16;

/// Longest a read waits for a free connection before it is refused as busy.
const ACQUIRE_WAIT: Duration = Duration::from_secs(5);

/// Read access to one database through a bounded pool of connections.
#[derive(Clone)]
pub struct Readers {
    inner: Arc<Pool>,
}

struct Pool {
    url: DbUrl,
    /// Which database this is, for errors and the health monitor.
    part: Part,
    monitor: Arc<Monitor>,
    /// One permit per connection that may be open; a read holds one throughout.
    permits: Arc<Semaphore>,
    /// Idle connections; a std mutex because it is only held to push or pop.
    idle: Mutex<Vec<Box<dyn Conn>>>,
    /// Connections open now (idle or in use), and the most ever open at once.
    open: AtomicUsize,
    peak: AtomicUsize,
    /// While the database is unreachable: no new attempt before `retry_at`.
    down: Mutex<Down>,
}

#[derive(Default)]
struct Down {
    backoff: Backoff,
    retry_at: Option<Instant>,
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
    /// Readers for the database at `url` (the `part` of the store), opening at most
    /// `connections` connections at once.
    pub fn new(url: DbUrl, part: Part, monitor: Arc<Monitor>, connections: usize) -> Readers {
        let connections = connections.max(1);
        Readers {
            inner: Arc::new(Pool {
                url,
                part,
                monitor,
                permits: Arc::new(Semaphore::new(connections)),
                idle: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                down: Mutex::new(Down::default()),
            }),
        }
    }

    /// Run `read` in one snapshot transaction on a pooled connection, in a blocking
    /// task. Waits for a free connection (refused as busy after a while); refused at
    /// once as unavailable while the database is known unreachable. A read that fails
    /// on a connection the server has since closed is run again once on a new one.
    pub async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .acquire(ACQUIRE_WAIT)
            .await
            .ok_or(StoreError::Busy("pool of read connections"))?;
        self.read_holding(permit, read).await
    }

    /// A permit to hold a connection, if one frees up within `wait`.
    async fn acquire(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let permits = self.inner.permits.clone();
        tokio::time::timeout(wait, permits.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// [`Readers::read`] with a permit already held.
    async fn read_holding<T, F>(
        &self,
        permit: OwnedSemaphorePermit,
        read: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            this.read_blocking(read)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("reader panicked: {e}")))?
    }

    /// The body of [`Readers::read`], on a thread allowed to block, holding a permit.
    fn read_blocking<T>(
        &self,
        read: impl Fn(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pool = &self.inner;
        let pooled = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let fresh = pooled.is_none();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        match schema::in_snapshot(&mut *conn, &read) {
            Ok(value) => {
                self.put_back(conn);
                Ok(value)
            }
            Err(e) if e.is_transient() => {
                self.discard(conn);
                // The server probably closed every connection it had (a restart): the
                // idle ones are as stale as this one.
                let stale =
                    std::mem::take(&mut *pool.idle.lock().unwrap_or_else(|e| e.into_inner()));
                for conn in stale {
                    self.discard(conn);
                }
                if fresh {
                    return Err(self.unreachable(e));
                }
                let mut conn = self.connect()?;
                let result = schema::in_snapshot(&mut *conn, &read);
                match &result {
                    Ok(_) => self.put_back(conn),
                    Err(e) if e.is_transient() => {
                        self.discard(conn);
                        return Err(self.unreachable(result.err().expect("an error")));
                    }
                    // A connection that failed otherwise may be broken; it is not reused.
                    Err(_) => self.discard(conn),
                }
                result
            }
            Err(e) => {
                self.discard(conn);
                Err(e)
            }
        }
    }

    /// A new connection, unless the database failed recently and its next attempt is
    /// not due yet.
    fn connect(&self) -> Result<Box<dyn Conn>, StoreError> {
        let pool = &self.inner;
        {
            let down = pool.down.lock().unwrap_or_else(|e| e.into_inner());
            if down.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(StoreError::Unavailable(pool.part));
            }
        }
        match connect(&pool.url, Access::Read) {
            Ok(conn) => {
                let open = pool.open.fetch_add(1, Ordering::AcqRel) + 1;
                pool.peak.fetch_max(open, Ordering::AcqRel);
                let mut down = pool.down.lock().unwrap_or_else(|e| e.into_inner());
                down.backoff.reset();
                down.retry_at = None;
                if let Some(outage) = pool.monitor.set_up(pool.part) {
                    tracing::info!(part = %pool.part, outage_ms = outage.as_millis() as u64, "reads reach the database again");
                }
                Ok(conn)
            }
            Err(e) => Err(self.unreachable(e)),
        }
    }

    /// Note that the database could not be used; the next connection attempt waits out
    /// a backoff. Returns the error to answer with.
    fn unreachable(&self, error: StoreError) -> StoreError {
        let pool = &self.inner;
        if !error.is_transient() {
            return error;
        }
        let mut down = pool.down.lock().unwrap_or_else(|e| e.into_inner());
        let wait = down.backoff.next_wait();
        down.retry_at = Some(Instant::now() + wait);
        if pool.monitor.set_down(pool.part) {
            tracing::error!(part = %pool.part, %error, "reads cannot reach the database; retrying with backoff");
        }
        StoreError::Unavailable(pool.part)
    }

    fn put_back(&self, conn: Box<dyn Conn>) {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }

    fn discard(&self, conn: Box<dyn Conn>) {
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
        drop(conn);
    }

    /// Whether the database answers a trivial query within `timeout` (for health
    /// reports). When every connection stays busy that long, the pool's last word
    /// stands: a busy pool is not a database that is down.
    pub async fn probe(&self, timeout: Duration) -> bool {
        let Some(permit) = self.acquire(timeout).await else {
            return !self.inner.monitor.is_down(self.inner.part);
        };
        let query = self.read_holding(permit, |conn| conn.query("SELECT 1", &[]).map(drop));
        matches!(tokio::time::timeout(timeout, query).await, Ok(Ok(())))
    }

    /// The most connections this pool ever had open at once.
    pub fn peak_connections(&self) -> usize {
        self.inner.peak.load(Ordering::Acquire)
    }

    /// Close the idle connections (on the calling thread, which must allow blocking).
    pub fn close(&self) {
        let idle = std::mem::take(&mut *self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for conn in idle {
            self.discard(conn);
        }
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

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use super::*;
    use crate::store::engine::Durability;

    /// Reads inside their closure now, the most at once, and whether they may leave.
    #[derive(Default)]
    struct Inside {
        now: usize,
        most: usize,
        released: bool,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_beyond_the_pool_wait_for_a_connection() {
        const HANG: Duration = Duration::from_secs(30);
        let dir = tempfile::tempdir().unwrap();
        let url = DbUrl::Sqlite(dir.path().join("replica.db"));
        drop(connect(&url, Access::Write(Durability::Off)).unwrap());
        let readers = Readers::new(url, Part::Replica, Arc::new(Monitor::default()), 2);
        let inside = Arc::new((Mutex::new(Inside::default()), Condvar::new()));
        let reads: Vec<_> = (0..10)
            .map(|_| {
                let (readers, inside) = (readers.clone(), inside.clone());
                tokio::spawn(async move {
                    readers
                        .read(move |_conn| {
                            let (lock, changed) = &*inside;
                            let mut state = lock.lock().unwrap();
                            state.now += 1;
                            state.most = state.most.max(state.now);
                            changed.notify_all();
                            let (mut state, _) = changed
                                .wait_timeout_while(state, HANG, |s| !s.released)
                                .unwrap();
                            state.now -= 1;
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        let watcher = inside.clone();
        let most = tokio::task::spawn_blocking(move || {
            let (lock, changed) = &*watcher;
            let state = lock.lock().unwrap();
            let (state, _) = changed
                .wait_timeout_while(state, HANG, |s| s.now < 2)
                .unwrap();
            assert_eq!(state.now, 2, "two reads got a connection");
            // A third must not get in while both hold theirs: a bounded window is the
            // only way to observe that it does not happen.
            let (mut state, _) = changed
                .wait_timeout_while(state, Duration::from_millis(200), |s| s.now <= 2)
                .unwrap();
            let most = state.most;
            state.released = true;
            changed.notify_all();
            most
        })
        .await
        .unwrap();
        for read in reads {
            read.await.unwrap().unwrap();
        }
        assert_eq!(most, 2, "reads inside at once");
        assert!(
            readers.peak_connections() <= 2,
            "{}",
            readers.peak_connections()
        );
        readers.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_pool_is_not_a_database_that_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let url = DbUrl::Sqlite(dir.path().join("replica.db"));
        drop(connect(&url, Access::Write(Durability::Off)).unwrap());
        let readers = Readers::new(url, Part::Replica, Arc::new(Monitor::default()), 1);
        assert!(readers.probe(Duration::from_secs(30)).await);
        // The only connection is held by a read that waits for the test.
        let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let busy = {
            let readers = readers.clone();
            tokio::spawn(async move {
                readers
                    .read(move |_conn| {
                        held_tx.send(()).unwrap();
                        let _ = release_rx.lock().unwrap().recv();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || held_rx.recv().unwrap())
            .await
            .unwrap();
        assert!(
            readers.probe(Duration::from_millis(50)).await,
            "every connection busy, none failing: up"
        );
        release_tx.send(()).unwrap();
        busy.await.unwrap().unwrap();

        // Nothing listens on port 1: down, and said at once.
        let gone = DbUrl::Postgres("postgres://u@127.0.0.1:1/db".into());
        let monitor = Arc::new(Monitor::default());
        let readers = Readers::new(gone, Part::Replica, monitor.clone(), 1);
        assert!(!readers.probe(Duration::from_secs(30)).await);
        assert!(monitor.is_down(Part::Replica));
    }
}
