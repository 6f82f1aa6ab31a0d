//! Database engines behind one connection trait: SQLite (embedded, the default),
//! PostgreSQL and MariaDB (MySQL protocol).
//!
//! The store's SQL is written once, with `?` placeholders, against [`Conn`]. What
//! differs between engines is kept in [`Dialect`]: column types, upsert and
//! insert-or-ignore syntax, how a read-only snapshot transaction starts. Each engine's
//! module only moves [`Value`]s in and out of its driver (and, for PostgreSQL, turns
//! `?` into `$1`, `$2`...).
//!
//! - [`sqlite`]: rusqlite, WAL, fsync per commit unless the master is in memory.
//! - [`postgres`]: the blocking `postgres` client, `synchronous_commit = on`.
//! - [`mysql`]: the blocking `mysql` client on InnoDB, `ANSI_QUOTES` so identifiers are
//!   quoted the same way as elsewhere.
//! - [`url`]: [`DbUrl`], where a database lives.
//! - [`scratch`]: throw-away databases on a server, for tests and benchmarks.
//! - [`instance`]: private PostgreSQL and MariaDB servers a test may restart or crash.

pub mod instance;
pub mod mysql;
pub mod postgres;
pub mod scratch;
pub mod sqlite;
pub mod url;

pub use url::DbUrl;

use super::StoreError;

/// One SQL parameter or result column. The store only needs integers, text and null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (`BIGINT`).
    Int(i64),
    /// Text (`TEXT`, `VARCHAR`, `LONGTEXT`).
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

/// Build a parameter slice: `args![id, seq as i64]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::engine::Value::from($v)),*][..]
    };
}
pub(crate) use args;

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn column(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("missing column {i}")))
    }

    /// Column `i` as an integer, `None` when NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.column(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Text(t) => Err(StoreError::Corrupt(format!(
                "column {i}: expected an integer, found {t:?}"
            ))),
        }
    }

    /// Column `i` as an integer.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is null")))
    }

    /// Column `i` as text.
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.column(i)? {
            Value::Text(t) => Ok(t.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, found {other:?}"
            ))),
        }
    }
}

/// The SQL differences between engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL 13 or newer.
    Postgres,
    /// MariaDB 10.5 or newer (or MySQL 8 in `ANSI_QUOTES` mode).
    MySql,
}

impl Dialect {
    /// The engine's name, for logs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mariadb",
        }
    }

    /// Fill in a DDL template: `{int}` (64-bit integer), `{key}` (short text that is
    /// indexed and compared byte-wise), `{text}` (long text), `{opts}` (table options).
    pub fn ddl(self, template: &str) -> String {
        let (int, key, text, opts) = match self {
            // INTEGER keeps `seq INTEGER PRIMARY KEY` a rowid alias, as older files have it.
            Dialect::Sqlite => ("INTEGER", "TEXT", "TEXT", ""),
            // The C collation orders ids byte-wise, like SQLite and utf8mb4_bin.
            Dialect::Postgres => ("BIGINT", "TEXT COLLATE \"C\"", "TEXT", ""),
            Dialect::MySql => (
                "BIGINT",
                "VARCHAR(255)",
                "LONGTEXT",
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            ),
        };
        template
            .replace("{int}", int)
            .replace("{key}", key)
            .replace("{text}", text)
            .replace("{opts}", opts)
    }

    /// `INSERT` of `columns` into `table` that replaces the non-key columns when a row
    /// with the same `key` exists.
    pub fn upsert(self, table: &str, columns: &[&str], key: &[&str]) -> String {
        let insert = insert(table, columns);
        let rest = columns.iter().filter(|c| !key.contains(c));
        let set: Vec<String> = match self {
            Dialect::Sqlite | Dialect::Postgres => {
                rest.map(|c| format!("{c} = excluded.{c}")).collect()
            }
            Dialect::MySql => rest.map(|c| format!("{c} = VALUES({c})")).collect(),
        };
        match self {
            Dialect::Sqlite | Dialect::Postgres => format!(
                "{insert} ON CONFLICT ({}) DO UPDATE SET {}",
                key.join(", "),
                set.join(", ")
            ),
            Dialect::MySql => format!("{insert} ON DUPLICATE KEY UPDATE {}", set.join(", ")),
        }
    }

    /// `INSERT` that does nothing when the row's key exists.
    pub fn insert_ignore(self, table: &str, columns: &[&str]) -> String {
        let insert = insert(table, columns);
        match self {
            Dialect::Sqlite => insert.replacen("INSERT", "INSERT OR IGNORE", 1),
            Dialect::Postgres => format!("{insert} ON CONFLICT DO NOTHING"),
            Dialect::MySql => insert.replacen("INSERT", "INSERT IGNORE", 1),
        }
    }

    /// Start the writer's transaction (SQLite takes the write lock at once).
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
            Dialect::MySql => "START TRANSACTION",
        }
    }

    /// Start a read-only transaction whose statements all see one snapshot.
    pub fn begin_read(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN",
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Dialect::MySql => "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        }
    }
}

fn insert(table: &str, columns: &[&str]) -> String {
    let marks = vec!["?"; columns.len()].join(", ");
    format!(
        "INSERT INTO {table} ({}) VALUES ({marks})",
        columns.join(", ")
    )
}

/// A connection to one database. SQL uses `?` placeholders; implementations cache
/// prepared statements by their text.
pub trait Conn: Send {
    /// The engine's dialect.
    fn dialect(&self) -> Dialect;

    /// Run one statement with parameters; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;

    /// Run one query with parameters and collect its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;

    /// Run one statement without parameters or caching (DDL, transaction control).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;

    /// The first row of a query, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row of a query that always returns one.
    fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from {sql:?}")))
    }

    /// Start a write transaction.
    fn begin_write(&mut self) -> Result<(), StoreError> {
        let sql = self.dialect().begin_write();
        self.batch(sql)
    }

    /// Start a read-only snapshot transaction.
    fn begin_read(&mut self) -> Result<(), StoreError> {
        let sql = self.dialect().begin_read();
        self.batch(sql)
    }

    /// Commit the open transaction.
    fn commit(&mut self) -> Result<(), StoreError> {
        self.batch("COMMIT")
    }

    /// Roll back the open transaction.
    fn rollback(&mut self) -> Result<(), StoreError> {
        self.batch("ROLLBACK")
    }
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Writing (the writer, the replicator's replica side), with this durability.
    Write(Durability),
    /// Reading only (fetches, the replicator's log side).
    Read,
}

/// How durable a database's commits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flushed on every commit: an acknowledged write survives a power cut.
    Full,
    /// No fsync: for throwaway in-memory masters (SQLite only; servers stay durable).
    Off,
}

/// Open a connection to `url`.
pub fn connect(url: &DbUrl, access: Access) -> Result<Box<dyn Conn>, StoreError> {
    Ok(match url {
        DbUrl::Sqlite(path) => Box::new(sqlite::SqliteConn::open(path, access)?),
        DbUrl::Postgres(url) => Box::new(postgres::PgConn::open(url, access)?),
        DbUrl::MySql(url) => Box::new(mysql::MySqlConn::open(url, access)?),
    })
}

/// Run `work` on a fresh OS thread and wait for it.
///
/// The `postgres` client runs a small tokio runtime of its own, which may be neither
/// started nor dropped on a thread that is inside another runtime. Opening the store,
/// creating scratch databases and dropping idle connections go through here so they
/// work from async code too.
pub fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_differ_only_where_they_must() {
        let cols = ["id", "data"];
        assert_eq!(
            Dialect::Postgres.upsert("lots", &cols, &["id"]),
            "INSERT INTO lots (id, data) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data"
        );
        assert_eq!(
            Dialect::MySql.upsert("lots", &cols, &["id"]),
            "INSERT INTO lots (id, data) VALUES (?, ?) ON DUPLICATE KEY UPDATE data = VALUES(data)"
        );
        assert!(
            Dialect::Sqlite
                .insert_ignore("t", &cols)
                .starts_with("INSERT OR IGNORE INTO t")
        );
        assert!(
            Dialect::Postgres
                .insert_ignore("t", &cols)
                .ends_with("ON CONFLICT DO NOTHING")
        );
        assert_eq!(
            Dialect::MySql.ddl("x {int} {key} {text}){opts}"),
            "x BIGINT VARCHAR(255) LONGTEXT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        );
        let row = Row(vec![Value::Int(3), Value::Null, Value::from("a")]);
        assert_eq!(row.int(0).unwrap(), 3);
        assert_eq!(row.opt_int(1).unwrap(), None);
        assert!(row.int(1).is_err() && row.int(2).is_err() && row.text(0).is_err());
        assert_eq!(row.text(2).unwrap(), "a");
    }
}
