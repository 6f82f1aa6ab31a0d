//! [`DbUrl`]: where one database lives, as given on the command line.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a database lives: a SQLite file, or a database on a PostgreSQL or MariaDB
/// server.
///
/// Parsed from `sqlite:PATH` (or a plain path), `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
/// (also `postgresql://`) and `mysql://USER[:PASSWORD]@HOST[:PORT]/DB` (also
/// `mariadb://`). `Display` and `Debug` hide the password, in the user part and in any
/// query parameter that looks like a secret (`password=`, `sslpassword=`, ...).
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

/// Query parameters whose value is hidden: anything that looks like a secret.
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
}

/// `scheme://user:***@host/db?password=***`: the password of the user part and every
/// secret-looking query parameter replaced, so the URL can go into logs and errors.
/// Works on any `scheme://` text, also a server URL without a database.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // A password written without percent-encoding may hold '@' or '/': the user part
    // runs to the last '@' before the query, and the host ends at the next '/'.
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    let (user_info, after_user) = match rest[..before_query].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let host_end = after_user.find(['/', '?', '#']).unwrap_or(after_user.len());
    let (host, tail) = after_user.split_at(host_end);
    let authority = match user_info {
        Some(user_info) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{user}:***@{host}")
        }
        Some(user) => format!("{user}@{host}"),
        None => host.to_owned(),
    };
    let (path, fragment) = match tail.split_once('#') {
        Some((path, fragment)) => (path, format!("#{fragment}")),
        None => (tail, String::new()),
    };
    let tail = match path.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if is_secret_param(name) => format!("{name}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{tail}{fragment}")
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
        // Passwords in the query string, with '@' or '/' inside, or after an empty user.
        for (given, shown) in [
            (
                "postgres://u@h/db?sslmode=disable&password=s3cret",
                "postgres://u@h/db?sslmode=disable&password=***",
            ),
            (
                "postgres://h:5432/db?user=u&PassWord=s3cret&sslpassword=k3y&application_name=x",
                "postgres://h:5432/db?user=u&PassWord=***&sslpassword=***&application_name=x",
            ),
            ("mysql://u:p@ss/w@h:3306/db", "mysql://u:***@h:3306/db"),
            (
                "mysql://u:s3cret@h/db?pwd=s3cret#x",
                "mysql://u:***@h/db?pwd=***#x",
            ),
            ("postgres://:s3cret@h/db", "postgres://:***@h/db"),
        ] {
            let url = parse(given).unwrap();
            assert_eq!(url.to_string(), shown, "{given}");
            assert!(!format!("{url:?}").contains("s3cret"), "{given}");
            assert_eq!(url.expose(), given.replacen("mariadb://", "mysql://", 1));
        }
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

    /// What a driver says when it cannot use or reach a URL must not carry the secret
    /// either (port 1 on loopback refuses at once).
    #[test]
    fn driver_errors_do_not_repeat_the_password() {
        for url in [
            "postgres://u:s3cret@127.0.0.1:1/db?password=s3cret",
            "postgres://u@127.0.0.1:1/db?password=s3cret&port=s3cret",
            "mysql://u:s3cret@127.0.0.1:1/db",
            "mysql://u@127.0.0.1:1/db?password=s3cret",
        ] {
            let url: DbUrl = url.parse().unwrap();
            let result = super::super::off_runtime(|| {
                super::super::connect(&url, super::super::Access::Read).map(|_| ())
            });
            let error = result.expect_err("nothing listens on port 1");
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("s3cret"), "{url}: {shown}");
        }
    }
}
