//! The master's storage: a primary database written by one thread, an operation log
//! inside it, and a replica database the replicator keeps up to date. Each of the two
//! is SQLite (the default: files under the data directory), PostgreSQL or MariaDB, in
//! any combination; the logic above [`engine`] is the same for all.
//!
//! - [`primary`]: the single writer. Commands arrive over a channel; each batch runs in
//!   one transaction (group commit), each command in its own savepoint, and every
//!   successful operation is appended to the log with the next gap-free sequence.
//! - [`oplog`]: the operations and their encoding.
//! - [`replicator`]: tails the log and executes each entry on the replica, recording the
//!   applied position in the same transaction.
//! - [`replica`]: pooled read connections on the replica, used to answer fetches.
//! - [`schema`]: migrations and the row helpers both databases share.
//! - [`engine`]: the connection trait, the SQL dialects and one driver per engine.

pub mod engine;
pub mod log_tail;
pub mod oplog;
pub mod primary;
pub mod replica;
pub mod replicator;
pub mod schema;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use lotsync::protocol::{Bid, FieldError, Lot, LotInput, LotStatus, Money, Notice, Seq};
use tokio::sync::{mpsc, oneshot};

use crate::chaos::Chaos;
use crate::metrics::Metrics;
use engine::{Access, DbUrl, Durability};
use log_tail::LogTail;
use primary::Command;
use replica::Readers;
use schema::Role;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No lot has this id.
    #[error("no lot {0:?}")]
    NotFound(String),
    /// The lot does not take bids now.
    #[error("lot is not open (status {status})")]
    LotNotOpen {
        /// The lot's current status.
        status: LotStatus,
    },
    /// The bid is below the minimum next bid.
    #[error("bid too low: at least {min_next_bid}")]
    BidTooLow {
        /// Smallest acceptable amount now.
        min_next_bid: Money,
    },
    /// The status change is not allowed.
    #[error("cannot change status from {from} to {to}")]
    InvalidTransition {
        /// Current status.
        from: LotStatus,
        /// Requested status.
        to: LotStatus,
    },
    /// The idempotency key was used before with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// A field of the input is invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The store is shutting down.
    #[error("the store is shut down")]
    Closed,
    /// Stored data could not be understood.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (or could not be reached).
    #[error("PostgreSQL error: {0}")]
    Postgres(#[from] postgres::Error),
    /// MariaDB failed (or could not be reached).
    #[error("MariaDB error: {0}")]
    MySql(#[from] mysql::Error),
    /// A database URL is not usable.
    #[error("bad database URL: {0}")]
    BadUrl(String),
    /// A file operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// The wire error code this failure is reported as.
    pub fn code(&self) -> &'static str {
        use lotsync::protocol::codes;
        match self {
            StoreError::NotFound(_) => codes::NOT_FOUND,
            StoreError::LotNotOpen { .. } => codes::LOT_NOT_OPEN,
            StoreError::BidTooLow { .. } => codes::BID_TOO_LOW,
            StoreError::InvalidTransition { .. } => codes::INVALID_TRANSITION,
            StoreError::IdempotencyConflict => codes::IDEMPOTENCY_CONFLICT,
            StoreError::Invalid(_) => codes::INVALID_FIELD,
            StoreError::Closed
            | StoreError::Corrupt(_)
            | StoreError::Sqlite(_)
            | StoreError::Postgres(_)
            | StoreError::MySql(_)
            | StoreError::BadUrl(_)
            | StoreError::Io(_) => codes::INTERNAL,
        }
    }
}

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
    pub anti_snipe: std::time::Duration,
}

/// Result of a bid: the bid and whether it was a replay of an earlier identical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BidOutcome {
    /// The accepted bid.
    pub bid: Bid,
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
    writer: mpsc::UnboundedSender<Command>,
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
        let mut replica_conn = engine::connect(&replica_url, Access::Write(durability))?;
        schema::migrate(&mut *replica_conn, Role::Replica)?;
        let mut log_conn = engine::connect(&primary_url, Access::Read)?;
        let applied = replicator::bootstrap(&mut *replica_conn, &mut *log_conn, &epoch)?;
        let notices = Arc::new(LogTail::new(epoch.clone(), retention, ring, head, applied));

        let (tx, rx) = mpsc::unbounded_channel();
        let writer = primary::Writer::new(
            writer_conn,
            notices.clone(),
            metrics,
            head,
            retention,
            options.anti_snipe,
        );
        let writer_thread = std::thread::Builder::new()
            .name("lotsync-writer".into())
            .spawn(move || writer.run(rx))?;
        let replicator =
            replicator::Replicator::new(replica_conn, log_conn, notices.clone(), chaos, applied);
        let replicator_thread = std::thread::Builder::new()
            .name("lotsync-replicator".into())
            .spawn(move || replicator.run())?;
        tracing::info!(primary = %primary_url, replica = %replica_url, %epoch, head, applied, "store open");

        Ok(Store {
            inner: Arc::new(Inner {
                writer: tx,
                reader: Readers::new(replica_url),
                primary_reader: Readers::new(primary_url),
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
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .send(make(tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Create or replace a lot. Returns the lot as stored and whether it was created.
    pub async fn put_lot(&self, id: &str, input: LotInput) -> Result<(Lot, bool), StoreError> {
        lotsync::protocol::validate_lot_id(id)?;
        input.validate()?;
        let id = id.to_owned();
        self.send(|reply| Command::Put { id, input, reply }).await
    }

    /// Change only a lot's status.
    pub async fn set_status(&self, id: &str, status: LotStatus) -> Result<Lot, StoreError> {
        lotsync::protocol::validate_lot_id(id)?;
        let id = id.to_owned();
        self.send(|reply| Command::Status { id, status, reply })
            .await
    }

    /// Place a bid as `bidder`, honouring an optional idempotency key.
    pub async fn place_bid(
        &self,
        bidder: &str,
        lot_id: &str,
        amount: Money,
        key: Option<String>,
    ) -> Result<BidOutcome, StoreError> {
        lotsync::protocol::validate_lot_id(lot_id)?;
        lotsync::protocol::validate_money("amount", amount)?;
        let (bidder, lot_id) = (bidder.to_owned(), lot_id.to_owned());
        self.send(|reply| Command::Bid {
            bidder,
            lot_id,
            amount,
            key,
            reply,
        })
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

    /// Stop the writer and the replicator and wait for them; idempotent.
    pub async fn shutdown(&self) {
        let _ = self.inner.writer.send(Command::Shutdown);
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
        let _ = self.writer.send(Command::Shutdown);
        self.notices.stop();
        for thread in std::mem::take(self.threads.get_mut().expect("threads lock")) {
            let _ = thread.join();
        }
    }
}
