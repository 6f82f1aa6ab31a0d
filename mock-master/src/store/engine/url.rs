//! [`DbUrl`]: where one database lives, as given on the command line.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a database lives: a SQLite file, or a database on a PostgreSQL or MariaDB
/// server.
///
/// Parsed from `sqlite:PATH` (or a plain path), `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
/// (also `postgresql://`) and `mysql://USER[:PASSWORD]@HOST[:PORT]/DB` (also
/// `mariadb://`). `Display` and `Debug` hide the password.
///
/// ```
/// use mock_master::store::engine::DbUrl;
/// let url: DbUrl = "postgres://lotsync:secret@127.0.0.1/lots".parse().unwrap();
/// assert_eq!(url.to_string(), "postgres://lotsync:***@127.0.0.1/lots");
/// assert_eq!("data/primary.db".parse::<DbUrl>().unwrap(), DbUrl::Sqlite("data/primary.db".into()));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// A SQLite database file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database, as a `postgres://` URL.
    Postgres(String),
    /// A MariaDB (or MySQL) database, as a `mysql://` URL.
    MySql(String),
}

/// Why a database URL was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUrl(String);

impl FromStr for DbUrl {
    type Err = BadUrl;

    fn from_str(text: &str) -> Result<DbUrl, BadUrl> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BadUrl("the database URL is empty".into()));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            let path = text.strip_prefix("sqlite:").unwrap_or(text);
            if path.is_empty() {
                return Err(BadUrl("sqlite: needs a file path".into()));
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        };
        let database = rest
            .split_once('/')
            .map(|(_, db)| db.split('?').next().unwrap_or(""))
            .unwrap_or("");
        let needs_db = || {
            if database.is_empty() {
                Err(BadUrl(format!(
                    "{scheme}:// URL needs a database name: {scheme}://USER@HOST:PORT/DATABASE"
                )))
            } else {
                Ok(())
            }
        };
        match scheme {
            "sqlite" => Ok(DbUrl::Sqlite(PathBuf::from(rest))),
            "postgres" | "postgresql" => {
                needs_db()?;
                Ok(DbUrl::Postgres(text.to_owned()))
            }
            "mysql" | "mariadb" => {
                needs_db()?;
                Ok(DbUrl::MySql(format!("mysql://{rest}")))
            }
            other => Err(BadUrl(format!(
                "unknown database scheme {other:?}: use sqlite:PATH, postgres://... or mysql://..."
            ))),
        }
    }
}

impl DbUrl {
    /// The engine's name: `sqlite`, `postgres` or `mariadb`.
    pub fn engine(&self) -> &'static str {
        match self {
            DbUrl::Sqlite(_) => "sqlite",
            DbUrl::Postgres(_) => "postgres",
            DbUrl::MySql(_) => "mariadb",
        }
    }

    /// The URL as given, password included (for handing to a child process).
    pub fn expose(&self) -> String {
        match self {
            DbUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
            DbUrl::Postgres(url) | DbUrl::MySql(url) => url.clone(),
        }
    }
}

/// `scheme://user:***@host/...`: the password replaced.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            DbUrl::Postgres(url) | DbUrl::MySql(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `url` with its database name replaced by `database` (query string kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    format!("{scheme}://{authority}/{database}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_hides_passwords() {
        let parse = |s: &str| s.parse::<DbUrl>();
        assert_eq!(
            parse("sqlite:/tmp/a.db").unwrap(),
            DbUrl::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(parse("a.db").unwrap(), DbUrl::Sqlite("a.db".into()));
        assert_eq!(
            parse("mariadb://root@h:3306/x").unwrap(),
            DbUrl::MySql("mysql://root@h:3306/x".into())
        );
        assert_eq!(
            parse("postgresql://u:p@h/db?sslmode=disable")
                .unwrap()
                .to_string(),
            "postgresql://u:***@h/db?sslmode=disable"
        );
        assert_eq!(
            format!("{:?}", parse("mysql://u:pw@h/db").unwrap()),
            "mysql://u:***@h/db"
        );
        for bad in [
            "",
            "sqlite:",
            "postgres://u@h",
            "mysql://u@h/",
            "redis://h/0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?x=1", "t1"),
            "postgres://u@h:5432/t1?x=1"
        );
        assert_eq!(with_database("mysql://root@h", "t2"), "mysql://root@h/t2");
    }
}
