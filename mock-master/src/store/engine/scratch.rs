//! Throw-away databases on a PostgreSQL or MariaDB server, for tests and benchmarks:
//! created with a unique name, dropped when the guard goes.

use std::sync::atomic::{AtomicU64, Ordering};

use super::url::with_database;
use super::{Access, DbUrl, connect, off_runtime};
use crate::store::StoreError;

/// Databases created by this process so far; part of each new name.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// A database that exists until this guard is dropped.
///
/// ```no_run
/// use mock_master::store::engine::scratch::ScratchDatabase;
/// let db = ScratchDatabase::create("postgres://postgres@127.0.0.1:5432", "lotsync_test").unwrap();
/// println!("{}", db.url());
/// // dropped here, and with it the database
/// ```
pub struct ScratchDatabase {
    /// Connection to the server, not to the scratch database, for the final drop.
    admin: DbUrl,
    name: String,
    url: DbUrl,
}

impl ScratchDatabase {
    /// Create `PREFIX_PID_N` on the server at `server` (a `postgres://` or `mysql://`
    /// URL; its database part, if any, is ignored). A leftover of the same name from a
    /// crashed earlier process is dropped first.
    pub fn create(server: &str, prefix: &str) -> Result<ScratchDatabase, StoreError> {
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{}_{n}", std::process::id());
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(StoreError::BadUrl(format!("bad database name {name:?}")));
        }
        let (admin, url) = match server.split_once("://").map(|(s, _)| s) {
            Some("postgres" | "postgresql") => (
                DbUrl::Postgres(with_database(server, "postgres")),
                DbUrl::Postgres(with_database(server, &name)),
            ),
            Some("mysql" | "mariadb") => {
                let server = server.replacen("mariadb://", "mysql://", 1);
                (
                    DbUrl::MySql(with_database(&server, "")),
                    DbUrl::MySql(with_database(&server, &name)),
                )
            }
            _ => {
                return Err(StoreError::BadUrl(format!(
                    "scratch databases need a postgres:// or mysql:// server, not {server:?}"
                )));
            }
        };
        let db = ScratchDatabase { admin, name, url };
        off_runtime(|| {
            let mut conn = connect(&db.admin, Access::Read)?;
            conn.batch(&db.drop_sql())?;
            conn.batch(&format!("CREATE DATABASE {}", db.name))
        })?;
        Ok(db)
    }

    /// The database's URL.
    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    fn drop_sql(&self) -> String {
        match self.admin {
            // FORCE ends connections a crashed test left behind (PostgreSQL 13+).
            DbUrl::Postgres(_) => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let result = off_runtime(|| connect(&self.admin, Access::Read)?.batch(&self.drop_sql()));
        if let Err(e) = result {
            tracing::warn!(database = %self.name, error = %e, "could not drop a scratch database");
        }
    }
}
