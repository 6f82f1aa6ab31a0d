//! The master's storage: a primary database written by one thread, an operation log
//! inside it, and a replica database the replicator keeps up to date. Each of the two
//! is SQLite (the default: files under the data directory), PostgreSQL or MariaDB, in
//! any combination; the logic above [`engine`] is the same for all.
//!
//! - [`primary`]: the single writer. Commands arrive over a bounded channel; each batch
//!   runs in one transaction (group commit), each command in its own savepoint, and
//!   every successful operation is appended to the log with the next gap-free sequence.
//!   [`commands`] holds what each command does; [`writer_recovery`] how the writer comes
//!   back from a failed batch without reusing a sequence or applying anything twice.
//! - [`oplog`]: the operations and their encoding.
//! - [`auction`]: the bidding rules as pure functions (proxy bids); [`bidding`] runs
//!   them inside the writer's transaction; [`audit`]: the trail of every bid and
//!   maximum, refused ones included; [`lanes`]: run lists and sequential lanes.
//! - [`replicator`]: tails the log and executes each entry on the replica, recording the
//!   applied position in the same transaction.
//! - [`replica`]: a bounded pool of read connections on the replica, used to answer
//!   fetches.
//! - [`health`]: what is up and what is down ([`Store::health`]); [`backoff`]: the
//!   capped, jittered waits between reconnection attempts; [`error`]: [`StoreError`].
//! - [`schema`]: migrations and the row helpers both databases share.
//! - [`engine`]: the connection trait, the SQL dialects and one driver per engine.

pub mod auction;
pub mod audit;
pub mod backoff;
pub mod bidding;
pub mod commands;
pub mod engine;
pub mod error;
pub mod health;
pub mod lanes;
pub mod log_tail;
pub mod oplog;
pub mod primary;
pub mod replica;
pub mod replicator;
pub mod schema;
pub mod writer_recovery;

use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lotsync::protocol::{
    AdminLot, AuditEntry, Bid, BidReceipt, BidRequest, Lane, LaneSettings, Lot, LotInput,
    LotStatus, MaxStatus, Notice, Seq,
};
use tokio::sync::oneshot;

use crate::chaos::Chaos;
use crate::metrics::Metrics;
use engine::{Access, DbUrl, Durability};
use health::Monitor;
use log_tail::LogTail;
use primary::Command;
use replica::Readers;
use schema::Role;

pub use error::StoreError;
pub use health::{Health, Part};

/// Where the SQLite databases live (`primary.db` and `replica.db`), unless a database
/// server is named for that role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Files under this directory, created if missing; fsync on commit.
    Dir(std::path::PathBuf),
    /// A throwaway temporary directory, deleted at shutdown; no fsync.
    InMemory,
}

/// Settings the store needs.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where the SQLite databases live.
    pub storage: Storage,
    /// The first database, instead of `primary.db` under `storage`.
    pub primary: Option<DbUrl>,
    /// The second database, instead of `replica.db` under `storage`.
    pub replica: Option<DbUrl>,
    /// Log entries kept (in the database and in memory).
    pub log_retention: usize,
    /// Window before the end in which a bid extends the lot (zero: off).
    pub anti_snipe: Duration,
    /// How long an idempotency key is remembered: a retry within this time gets the
    /// first answer, a key older than this is forgotten (and deleted).
    pub idempotency_retention: Duration,
    /// Commands that may wait for the writer; more are refused as busy (503).
    pub writer_queue: usize,
    /// Read connections open at most on the replica (and, separately, on the primary).
    pub read_connections: usize,
    /// Replication lag past which [`Store::health`] reports replication as stalled.
    pub replication_stall: Duration,
}

impl StoreOptions {
    /// Default [`StoreOptions::idempotency_retention`]: one day.
    pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);
    /// Default [`StoreOptions::writer_queue`].
    pub const WRITER_QUEUE: usize = 4096;
    /// Default [`StoreOptions::replication_stall`].
    pub const REPLICATION_STALL: Duration = Duration::from_secs(10);
}

/// Result of a bid: the receipt and whether it was a replay of an earlier identical
/// request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BidOutcome {
    /// The caller's latest bid (the receipt's).
    pub bid: Bid,
    /// The caller's bid and where they stand.
    pub receipt: BidReceipt,
    /// True when an idempotency key matched an earlier identical bid; nothing was written.
    pub replayed: bool,
}

/// The storage engine: a cheap handle to the writer thread, the replicator thread and
/// the replica readers.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Commands to the writer thread; the only way anything reaches the primary.
    writer: SyncSender<Command>,
    /// What is up and down; the stop flag of the threads.
    monitor: Arc<Monitor>,
    /// Lag past which replication counts as stalled.
    replication_stall: Duration,
    /// Answers fetches.
    reader: Readers,
    /// Reads the primary for tests and the demo driver.
    primary_reader: Readers,
    epoch: String,
    notices: Arc<LogTail>,
    /// Background threads, joined at shutdown so the databases are closed cleanly.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Keeps an in-memory master's directory alive until the store is dropped.
    _temp: Option<tempfile::TempDir>,
}

impl Store {
    /// Open (or create) the databases and run their migrations, bring the replica in
    /// line with the primary's epoch, load the notice ring from the log, and start the
    /// writer and replicator.
    pub fn open(
        options: &StoreOptions,
        chaos: Arc<Chaos>,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        // Connecting to PostgreSQL starts a small runtime, which may not happen on a
        // thread that runs async code; do the blocking part on a thread of its own.
        engine::off_runtime(|| Store::open_blocking(options, chaos, metrics))
    }

    fn open_blocking(
        options: &StoreOptions,
        chaos: Arc<Chaos>,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        let needs_dir = options.primary.is_none() || options.replica.is_none();
        let (dir, temp, durability) = match &options.storage {
            Storage::Dir(dir) => {
                if needs_dir {
                    std::fs::create_dir_all(dir)?;
                }
                (dir.clone(), None, Durability::Full)
            }
            Storage::InMemory if needs_dir => {
                let shm = Path::new("/dev/shm");
                let temp = if shm.is_dir() {
                    tempfile::Builder::new()
                        .prefix("lotsync-")
                        .tempdir_in(shm)?
                } else {
                    tempfile::Builder::new().prefix("lotsync-").tempdir()?
                };
                (temp.path().to_owned(), Some(temp), Durability::Off)
            }
            Storage::InMemory => (Default::default(), None, Durability::Off),
        };
        let primary_url =
            (options.primary.clone()).unwrap_or_else(|| DbUrl::Sqlite(dir.join("primary.db")));
        let replica_url =
            (options.replica.clone()).unwrap_or_else(|| DbUrl::Sqlite(dir.join("replica.db")));
        if primary_url == replica_url {
            return Err(StoreError::BadUrl(format!(
                "the primary and the replica are the same database ({primary_url})"
            )));
        }
        let retention = options.log_retention.max(1);

        let mut writer_conn = engine::connect(&primary_url, Access::Write(durability))?;
        schema::migrate(&mut *writer_conn, Role::Primary)?;
        let epoch = primary::ensure_epoch(&mut *writer_conn)?;
        let (head, ring) = primary::load_tail(&mut *writer_conn, retention)?;
        primary::sweep_expired_keys(&mut *writer_conn, options.idempotency_retention)?;
        let mut replica_conn = engine::connect(&replica_url, Access::Write(durability))?;
        schema::migrate(&mut *replica_conn, Role::Replica)?;
        let mut log_conn = engine::connect(&primary_url, Access::Read)?;
        let applied = replicator::bootstrap(&mut *replica_conn, &mut *log_conn, &epoch)?;
        let notices = Arc::new(LogTail::new(epoch.clone(), retention, ring, head, applied));
        let monitor = Arc::new(Monitor::default());

        // Bounded: a writer that cannot keep up (or cannot reach the primary) makes
        // callers wait in a queue of known size, then refuses them, never more memory.
        let (tx, rx) = std::sync::mpsc::sync_channel(options.writer_queue.max(1));
        let writer = primary::Writer::new(
            writer_conn,
            primary::Connection {
                url: primary_url.clone(),
                durability,
                epoch: epoch.clone(),
            },
            notices.clone(),
            metrics,
            monitor.clone(),
            head,
            primary::WriterOptions {
                retention,
                anti_snipe: options.anti_snipe,
                idempotency_retention: options.idempotency_retention,
            },
        );
        let writer_thread = std::thread::Builder::new()
            .name("lotsync-writer".into())
            .spawn(move || writer.run(rx))?;
        let replicator = replicator::Replicator::new(
            (replica_conn, log_conn),
            replicator::Endpoints {
                replica: replica_url.clone(),
                primary: primary_url.clone(),
                durability,
                epoch: epoch.clone(),
            },
            notices.clone(),
            chaos,
            monitor.clone(),
            applied,
        );
        let replicator_thread = std::thread::Builder::new()
            .name("lotsync-replicator".into())
            .spawn(move || replicator.run())?;
        tracing::info!(primary = %primary_url, replica = %replica_url, %epoch, head, applied, "store open");

        Ok(Store {
            inner: Arc::new(Inner {
                writer: tx,
                reader: Readers::new(
                    replica_url,
                    Part::Replica,
                    monitor.clone(),
                    options.read_connections,
                ),
                primary_reader: Readers::new(
                    primary_url,
                    Part::Primary,
                    monitor.clone(),
                    options.read_connections,
                ),
                monitor,
                replication_stall: options.replication_stall,
                epoch,
                notices,
                threads: Mutex::new(vec![writer_thread, replicator_thread]),
                _temp: temp,
            }),
        })
    }

    /// Identity of this history.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// The notice ring and the head/applied watches.
    pub fn log_tail(&self) -> &Arc<LogTail> {
        &self.inner.notices
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        // While the writer is reconnecting, refuse at once rather than queue.
        if self.inner.monitor.is_down(Part::Writer) {
            return Err(StoreError::Unavailable(Part::Writer));
        }
        let (tx, rx) = oneshot::channel();
        self.inner.writer.try_send(make(tx)).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy("writer queue"),
            TrySendError::Disconnected(_) => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// What is up and what is down now: the writer's and the replicator's own view of
    /// their connections, a probe of each database (waiting at most `probe_timeout` for
    /// a connection and as long for the answer),
    /// and whether replication is stalled (the oldest operation the replica has not
    /// applied is older than the store's threshold).
    pub async fn health(&self, probe_timeout: Duration) -> Health {
        let probe = |readers: &Readers| {
            let readers = readers.clone();
            async move { readers.probe(probe_timeout).await }
        };
        let (primary, replica) =
            tokio::join!(probe(&self.inner.primary_reader), probe(&self.inner.reader));
        let tail = &self.inner.notices;
        let (head, applied) = (tail.head(), tail.applied());
        let replication_lag = if applied < head {
            // An entry no longer in memory is older than anything the ring holds.
            tail.at_of(applied + 1).map_or(Duration::MAX, |at| {
                (Utc::now() - at).to_std().unwrap_or_default()
            })
        } else {
            Duration::ZERO
        };
        let monitor = &self.inner.monitor;
        Health {
            primary,
            replica,
            writer: !monitor.is_down(Part::Writer),
            replicator: !monitor.is_down(Part::Replicator),
            replication_lag,
            replication_stalled: replication_lag > self.inner.replication_stall,
        }
    }

    /// The most read connections the replica's pool ever had open at once.
    pub fn peak_read_connections(&self) -> usize {
        self.inner.reader.peak_connections()
    }

    /// Create or replace a lot. Returns the lot as stored and whether it was created.
    pub async fn put_lot(&self, id: &str, input: LotInput) -> Result<(AdminLot, bool), StoreError> {
        lotsync::protocol::validate_lot_id(id)?;
        input.validate()?;
        let id = id.to_owned();
        self.send(|reply| Command::Put { id, input, reply }).await
    }

    /// Change only a lot's status.
    pub async fn set_status(&self, id: &str, status: LotStatus) -> Result<AdminLot, StoreError> {
        lotsync::protocol::validate_lot_id(id)?;
        let id = id.to_owned();
        self.send(|reply| Command::Status { id, status, reply })
            .await
    }

    /// Place a bid of `amount` as `bidder`, honouring an optional idempotency key.
    pub async fn place_bid(
        &self,
        bidder: &str,
        lot_id: &str,
        amount: lotsync::protocol::Money,
        key: Option<String>,
    ) -> Result<BidOutcome, StoreError> {
        self.bid(bidder, lot_id, BidRequest::amount(amount), key)
            .await
    }

    /// Place a bid and/or set a maximum as `bidder`, honouring an optional idempotency
    /// key.
    pub async fn bid(
        &self,
        bidder: &str,
        lot_id: &str,
        request: BidRequest,
        key: Option<String>,
    ) -> Result<BidOutcome, StoreError> {
        lotsync::protocol::validate_lot_id(lot_id)?;
        request.validate()?;
        let (bidder, lot_id) = (bidder.to_owned(), lot_id.to_owned());
        self.send(|reply| Command::Bid {
            bidder,
            lot_id,
            request,
            key,
            reply,
        })
        .await
    }

    /// Create or change a lane's settings.
    pub async fn set_lane(&self, lane: &str, settings: LaneSettings) -> Result<Lane, StoreError> {
        lotsync::protocol::validate_lane(lane)?;
        settings.validate()?;
        let lane = lane.to_owned();
        self.send(|reply| Command::Lane {
            lane,
            settings,
            reply,
        })
        .await
    }

    /// Every lane with settings.
    pub async fn lanes(&self) -> Result<Vec<Lane>, StoreError> {
        self.inner.primary_reader.read(lanes::list).await
    }

    /// A lot's audit trail from the primary, after entry `after_id` (`None` when the
    /// lot does not exist and has no entry).
    pub async fn audit(
        &self,
        lot_id: &str,
        after_id: u64,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError> {
        lotsync::protocol::validate_lot_id(lot_id)?;
        let id = lot_id.to_owned();
        self.inner
            .primary_reader
            .read(move |conn| {
                let entries = audit::read(conn, &id, after_id)?;
                if entries.is_empty() && schema::load_lot(conn, &id)?.is_none() {
                    return Ok(None);
                }
                Ok(Some(entries))
            })
            .await
    }

    /// `bidder`'s own maximum on a lot and where they stand (`None`: no such lot).
    pub async fn max_status(
        &self,
        lot_id: &str,
        bidder: &str,
    ) -> Result<Option<MaxStatus>, StoreError> {
        lotsync::protocol::validate_lot_id(lot_id)?;
        let (id, bidder) = (lot_id.to_owned(), bidder.to_owned());
        self.inner
            .primary_reader
            .read(move |conn| bidding::max_status(conn, &id, &bidder))
            .await
    }

    /// A lot as the admin sees it (reserve included), from the primary.
    pub async fn admin_lot(&self, id: &str) -> Result<Option<AdminLot>, StoreError> {
        lotsync::protocol::validate_lot_id(id)?;
        let id = id.to_owned();
        self.inner
            .primary_reader
            .read(move |conn| schema::load_full_admin_lot(conn, &id))
            .await
    }

    /// Every lot as the admin sees it, from the primary.
    pub async fn admin_lots(&self) -> Result<Vec<AdminLot>, StoreError> {
        self.inner
            .primary_reader
            .read(schema::load_all_admin_lots)
            .await
    }

    /// Open scheduled lots whose start has come and close (then settle) open lots whose
    /// end has passed. Returns how many operations were written.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.send(|reply| Command::Due { now, reply }).await
    }

    /// One lot from the replica with the replica's applied sequence at the read.
    pub async fn replica_lot(&self, id: &str) -> Result<(Seq, Option<Lot>), StoreError> {
        let id = id.to_owned();
        self.inner
            .reader
            .read(move |conn| replica::lot(conn, &id))
            .await
    }

    /// Lots from the replica in one read: all of them (`None`) or the given ids.
    /// Returns the applied sequence, the lots found (by id) and the ids missing.
    pub async fn replica_lots(
        &self,
        ids: Option<Vec<String>>,
    ) -> Result<(Seq, Vec<Lot>, Vec<String>), StoreError> {
        self.inner
            .reader
            .read(move |conn| replica::lots(conn, ids.as_deref()))
            .await
    }

    /// Every lot as the primary holds it (for tests and the demo driver).
    pub async fn primary_lots(&self) -> Result<Vec<Lot>, StoreError> {
        self.inner.primary_reader.read(schema::load_all_lots).await
    }

    /// Log entries after `after` (at most `limit`), from the in-memory ring.
    pub fn changes(
        &self,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Notice>, lotsync::serve::Truncated> {
        self.inner.notices.after(after, limit)
    }

    /// Log entries after `after`, at most `limit`, in order: from the in-memory ring when
    /// it reaches back, else from the primary's log (where pruned entries are missing).
    pub async fn log_entries(&self, after: Seq, limit: usize) -> Result<Vec<Notice>, StoreError> {
        if let Ok(entries) = self.inner.notices.after(after, limit) {
            return Ok(entries);
        }
        let to = after.saturating_add(limit as Seq);
        self.inner
            .primary_reader
            .read(move |conn| primary::load_entries(conn, after, to))
            .await
    }

    /// The oldest and newest entry in the primary's log (0 when it is empty).
    pub async fn log_bounds(&self) -> Result<(Seq, Seq), StoreError> {
        self.inner.primary_reader.read(schema::log_bounds).await
    }

    /// Stop the writer and the replicator and wait for them; idempotent.
    pub async fn shutdown(&self) {
        // A full queue cannot take the message: the flag stops the writer after its
        // batch, or at once while it waits to reconnect.
        self.inner.monitor.stop();
        let _ = self.inner.writer.try_send(Command::Shutdown);
        self.inner.notices.stop();
        let threads: Vec<_> =
            std::mem::take(&mut *self.inner.threads.lock().expect("threads lock"));
        let readers = [self.inner.reader.clone(), self.inner.primary_reader.clone()];
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
            for r in readers {
                r.close();
            }
        })
        .await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort when the owner never called shutdown: stop the threads so the
        // temporary directory can go.
        self.monitor.stop();
        let _ = self.writer.try_send(Command::Shutdown);
        self.notices.stop();
        for thread in std::mem::take(self.threads.get_mut().expect("threads lock")) {
            let _ = thread.join();
        }
    }
}
