//! [`StoreError`]: why a store operation failed, its wire code, and whether it is
//! about reaching a database (transient) or about the data.

use lotsync::protocol::{FieldError, LotStatus, Money};

use super::health::Part;

/// Wire code of a write or read refused because a database is unreachable (503).
pub const STORE_UNAVAILABLE: &str = lotsync::protocol::codes::STORE_UNAVAILABLE;

/// Seconds a client is asked to wait (Retry-After) when the store is unavailable or
/// busy: about the longest a reconnecting connection waits between attempts.
pub const RETRY_AFTER_SECS: u64 = 1;

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
    #[error("{field} too low: at least {min_next_bid}")]
    BidTooLow {
        /// Smallest acceptable amount now.
        min_next_bid: Money,
        /// `amount` or `max_amount`.
        field: &'static str,
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
    /// A part of the store cannot reach its database now. Nothing was written (or, for
    /// a write whose outcome was lost with the connection, nothing is acknowledged);
    /// asking again later is safe.
    #[error("{}", .0.unavailable())]
    Unavailable(Part),
    /// A bounded queue or pool is full; nothing was done. Ask again later.
    #[error("the store is busy: the {0} is full")]
    Busy(&'static str),
    /// Stored data could not be understood.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A database driver failed (or could not reach its server). What it said is kept
    /// as text, so users of the store depend on no driver's types.
    #[error(transparent)]
    Database(DatabaseError),
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
            StoreError::Unavailable(_) => STORE_UNAVAILABLE,
            StoreError::Busy(_) => codes::OVERLOADED,
            StoreError::Closed
            | StoreError::Corrupt(_)
            | StoreError::Database(_)
            | StoreError::BadUrl(_)
            | StoreError::Io(_) => codes::INTERNAL,
        }
    }

    /// Whether the failure is about reaching the database rather than about the data
    /// or the SQL: a lost or refused connection, a server shutting down, a lock that
    /// timed out. Such a failure changes nothing, and the same request may succeed
    /// later; a connection that saw one is reconnected.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::Busy(_) | StoreError::Io(_) => true,
            StoreError::Database(e) => e.transient,
            _ => false,
        }
    }
}

/// What a database driver said, without its types: the engine, the message, and
/// whether the failure was about reaching the database (see
/// [`StoreError::is_transient`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error: {message}", engine_label(.engine))]
pub struct DatabaseError {
    engine: &'static str,
    message: String,
    transient: bool,
}

fn engine_label(engine: &str) -> &'static str {
    match engine {
        "postgres" => "PostgreSQL",
        "mariadb" => "MariaDB",
        _ => "database",
    }
}

impl DatabaseError {
    /// The engine that failed: `sqlite`, `postgres` or `mariadb`.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// What the driver said.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(DatabaseError {
            engine: "sqlite",
            transient: sqlite_transient(&e),
            message: e.to_string(),
        })
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Database(DatabaseError {
            engine: "postgres",
            transient: postgres_transient(&e),
            message: postgres_detail(&e),
        })
    }
}

impl From<mysql::Error> for StoreError {
    fn from(e: mysql::Error) -> Self {
        StoreError::Database(DatabaseError {
            engine: "mariadb",
            transient: mysql_transient(&e),
            message: e.to_string(),
        })
    }
}

/// The driver's own text says only "db error" for an error from the server; the
/// server's code and message say what happened (they never hold a password).
fn postgres_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn postgres_transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            // 08: connection exception; 57P01-03: the server is shutting down or
            // starting; 53: out of connections or memory; 40: deadlock or
            // serialisation failure; 55P03: lock not available.
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code.starts_with("40")
                || code == "55P03"
        }
        // Not an error from the server: the driver could not talk to it. The driver's
        // error kinds are private; their messages name them.
        None => {
            let text = e.to_string();
            [
                "error communicating with the server",
                "unexpected message from server",
                "error connecting to server",
                "timeout waiting for server",
                "error parsing response from server",
                "connection closed",
            ]
            .iter()
            .any(|kind| text.starts_with(kind))
        }
    }
}

fn mysql_transient(e: &mysql::Error) -> bool {
    use mysql::DriverError as D;
    match e {
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) => true,
        mysql::Error::DriverError(d) => matches!(
            d,
            D::ConnectTimeout
                | D::CouldNotConnect(_)
                | D::PacketOutOfSync
                | D::UnexpectedPacket
                | D::Timeout
                | D::SetupError
        ),
        // 1040 too many connections, 1053 server shutdown, 1205 lock wait timeout,
        // 1213 deadlock, 1927 connection killed, 2006/2013 server gone or connection
        // lost, 4031 disconnected for inactivity.
        mysql::Error::MySqlError(e) => {
            matches!(
                e.code,
                1040 | 1053 | 1205 | 1213 | 1927 | 2006 | 2013 | 4031
            )
        }
        _ => false,
    }
}

fn sqlite_transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(
            C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::CannotOpen | C::DiskFull
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_told_from_the_rest() {
        assert!(StoreError::Unavailable(Part::Writer).is_transient());
        assert!(StoreError::Busy("writer queue").is_transient());
        assert!(!StoreError::Corrupt("x".into()).is_transient());
        assert!(!StoreError::NotFound("x".into()).is_transient());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(StoreError::from(mysql::Error::IoError(refused)).is_transient());
        assert!(
            StoreError::from(mysql::Error::DriverError(
                mysql::DriverError::ConnectTimeout
            ))
            .is_transient()
        );
        assert!(
            !StoreError::from(mysql::Error::DriverError(mysql::DriverError::MixedParams))
                .is_transient()
        );
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(StoreError::from(busy).is_transient());
        assert!(!StoreError::from(rusqlite::Error::QueryReturnedNoRows).is_transient());
        assert_eq!(
            StoreError::Unavailable(Part::Primary).code(),
            STORE_UNAVAILABLE
        );
        assert_eq!(
            StoreError::Unavailable(Part::Replica).to_string(),
            "the replica database is unreachable"
        );
    }
}
