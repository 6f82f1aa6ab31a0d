//! Database pairs for the store suite: SQLite files, or throw-away databases on the
//! local PostgreSQL and MariaDB servers (`scripts/test.sh` starts them). A test that
//! needs a server fails when the server is not there; it never skips.

use mock_master::MasterConfig;
use mock_master::config::DbUrl;
use mock_master::store::engine::scratch::ScratchDatabase;
use mock_master::store::engine::{Access, Row, Value, connect, off_runtime};

/// Server used for PostgreSQL databases; `LOTSYNC_TEST_POSTGRES` overrides it.
pub fn postgres_server() -> String {
    std::env::var("LOTSYNC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Server used for MariaDB databases; `LOTSYNC_TEST_MARIADB` overrides it.
pub fn mariadb_server() -> String {
    std::env::var("LOTSYNC_TEST_MARIADB").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    MariaDb,
}

/// Which of the two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Primary,
    Replica,
}

/// A primary and a replica that exist until this is dropped.
pub struct Databases {
    pub primary: DbUrl,
    pub replica: DbUrl,
    /// The data directory (SQLite files live here).
    pub dir: tempfile::TempDir,
    _scratch: Vec<ScratchDatabase>,
}

fn scratch(engine: Engine) -> ScratchDatabase {
    let server = match engine {
        Engine::Postgres => postgres_server(),
        Engine::MariaDb => mariadb_server(),
        Engine::Sqlite => unreachable!("SQLite needs no server"),
    };
    ScratchDatabase::create(&server, "lotsync_test").unwrap_or_else(|e| {
        let server = mock_master::store::engine::url::redact(&server);
        panic!("{engine:?} at {server} is needed by this test (scripts/test.sh starts it): {e}")
    })
}

impl Databases {
    /// Fresh, empty databases.
    pub fn new(primary: Engine, replica: Engine) -> Databases {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Vec::new();
        let mut pick = |engine: Engine, file: &str| match engine {
            Engine::Sqlite => DbUrl::Sqlite(dir.path().join(file)),
            _ => {
                let db = scratch(engine);
                let url = db.url().clone();
                held.push(db);
                url
            }
        };
        let primary_url = pick(primary, "primary.db");
        let replica_url = pick(replica, "replica.db");
        Databases {
            primary: primary_url,
            replica: replica_url,
            dir,
            _scratch: held,
        }
    }

    /// The shared test configuration on these databases.
    pub fn config(&self) -> MasterConfig {
        MasterConfig {
            storage: mock_master::Storage::Dir(self.dir.path().to_owned()),
            primary: Some(self.primary.clone()),
            replica: Some(self.replica.clone()),
            ..super::config()
        }
    }

    fn url(&self, db: Db) -> DbUrl {
        match db {
            Db::Primary => self.primary.clone(),
            Db::Replica => self.replica.clone(),
        }
    }

    /// Rows of a query on one of the databases.
    pub fn query(&self, db: Db, sql: &str) -> Vec<Row> {
        let url = self.url(db);
        off_runtime(|| connect(&url, Access::Read)?.query(sql, &[])).unwrap()
    }

    /// The integer a query returns.
    pub fn int(&self, db: Db, sql: &str) -> i64 {
        self.query(db, sql)[0].int(0).unwrap()
    }

    /// Run one statement on one of the databases, outside the master.
    pub fn execute(&self, db: Db, sql: &str, params: &[Value]) {
        let url = self.url(db);
        off_runtime(|| {
            connect(
                &url,
                Access::Write(mock_master::store::engine::Durability::Full),
            )?
            .execute(sql, params)
        })
        .unwrap();
    }

    /// Run one statement without parameters (DDL) on one of the databases.
    pub fn batch(&self, db: Db, sql: &str) {
        let url = self.url(db);
        off_runtime(|| {
            connect(
                &url,
                Access::Write(mock_master::store::engine::Durability::Full),
            )?
            .batch(sql)
        })
        .unwrap();
    }

    /// The SQL dialect of one of the databases.
    pub fn dialect(&self, db: Db) -> mock_master::store::engine::Dialect {
        let url = self.url(db);
        off_runtime(|| connect(&url, Access::Read).map(|c| c.dialect())).unwrap()
    }

    /// The primary's log as `(seq, lot, kind)`.
    pub fn oplog(&self) -> Vec<(u64, String, String)> {
        self.query(
            Db::Primary,
            "SELECT seq, lot_id, kind FROM oplog ORDER BY seq",
        )
        .iter()
        .map(|r| {
            (
                r.int(0).unwrap() as u64,
                r.text(1).unwrap(),
                r.text(2).unwrap(),
            )
        })
        .collect()
    }
}

/// Run every named `async fn(Engine, Engine)` on SQLite, PostgreSQL, MariaDB and a
/// mixed pair (MariaDB primary, PostgreSQL replica).
#[macro_export]
macro_rules! on_every_engine {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                super::$test($crate::common::engines::Engine::Sqlite, $crate::common::engines::Engine::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                super::$test($crate::common::engines::Engine::Postgres, $crate::common::engines::Engine::Postgres).await
            })*
        }
        mod mariadb {
            $(#[tokio::test]
            async fn $test() {
                super::$test($crate::common::engines::Engine::MariaDb, $crate::common::engines::Engine::MariaDb).await
            })*
        }
        mod mariadb_to_postgres {
            $(#[tokio::test]
            async fn $test() {
                super::$test($crate::common::engines::Engine::MariaDb, $crate::common::engines::Engine::Postgres).await
            })*
        }
    };
}
