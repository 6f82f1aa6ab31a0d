//! MariaDB (or MySQL) through the blocking `mysql` client, on InnoDB tables.
//!
//! Sessions run with `ANSI_QUOTES`, so `"key"` quotes an identifier here as it does in
//! SQLite and PostgreSQL. Commits are durable when the server flushes its redo log at
//! every commit (`innodb_flush_log_at_trx_commit = 1`, the default); a write connection
//! warns when the server says otherwise.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Opts, OptsBuilder, Params};

use super::{Access, Conn, Dialect, Row, Value};
use crate::store::StoreError;

/// How long connecting may take before the store gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The session's SQL mode: strict, and double quotes around identifiers.
const SQL_MODE: &str = "SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_TRANS_TABLES,\
NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";

/// A connection to one MariaDB database.
pub struct MySqlConn {
    conn: mysql::Conn,
}

impl MySqlConn {
    /// Connect to `url` (a `mysql://` URL).
    pub fn open(url: &str, access: Access) -> Result<MySqlConn, StoreError> {
        let opts = Opts::from_url(url).map_err(mysql::Error::from)?;
        let builder = OptsBuilder::from_opts(opts)
            .init(vec![SQL_MODE])
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .stmt_cache_size(Some(64));
        let mut conn = mysql::Conn::new(builder)?;
        if let Access::Write(_) = access {
            let flush: Option<i64> = conn.query_first("SELECT @@innodb_flush_log_at_trx_commit")?;
            if flush != Some(1) {
                tracing::warn!(
                    innodb_flush_log_at_trx_commit = ?flush,
                    "the MariaDB server does not flush its log at every commit; an acknowledged write may not survive a server crash"
                );
            }
        }
        Ok(MySqlConn { conn })
    }
}

fn bind(params: &[Value]) -> Params {
    if params.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        params
            .iter()
            .map(|v| match v {
                Value::Null => mysql::Value::NULL,
                Value::Int(i) => mysql::Value::Int(*i),
                Value::Text(t) => mysql::Value::Bytes(t.clone().into_bytes()),
            })
            .collect(),
    )
}

fn column(value: mysql::Value) -> Result<Value, StoreError> {
    Ok(match value {
        mysql::Value::NULL => Value::Null,
        mysql::Value::Int(i) => Value::Int(i),
        mysql::Value::UInt(u) => Value::Int(
            i64::try_from(u).map_err(|_| StoreError::Corrupt(format!("{u} is too large")))?,
        ),
        mysql::Value::Bytes(bytes) => Value::Text(
            String::from_utf8(bytes)
                .map_err(|e| StoreError::Corrupt(format!("text column is not UTF-8: {e}")))?,
        ),
        other => {
            return Err(StoreError::Corrupt(format!(
                "unexpected column value {other:?}"
            )));
        }
    })
}

impl Conn for MySqlConn {
    fn dialect(&self) -> Dialect {
        Dialect::MySql
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        self.conn.exec_drop(sql, bind(params))?;
        Ok(self.conn.affected_rows())
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let rows: Vec<mysql::Row> = self.conn.exec(sql, bind(params))?;
        rows.into_iter()
            .map(|row| {
                row.unwrap()
                    .into_iter()
                    .map(column)
                    .collect::<Result<_, _>>()
                    .map(Row)
            })
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.query_drop(sql)?)
    }
}
