//! [`DbUrl`]: where one database lives, as given on the command line.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use url::Url;

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
        if scheme == "sqlite" {
            return Ok(DbUrl::Sqlite(PathBuf::from(rest)));
        }
        if !matches!(scheme, "postgres" | "postgresql" | "mysql" | "mariadb") {
            return Err(BadUrl(format!(
                "unknown database scheme {scheme:?}: use sqlite:PATH, postgres://... or mysql://..."
            )));
        }
        // The parser's message never repeats the URL, so no secret can leak through it.
        let url = parse(text).map_err(|e| BadUrl(format!("bad {scheme}:// URL: {e}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(BadUrl(format!(
                "{scheme}:// URL needs a host: {scheme}://USER@HOST:PORT/DATABASE"
            )));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(BadUrl(format!(
                "{scheme}:// URL needs a database name: {scheme}://USER@HOST:PORT/DATABASE"
            )));
        }
        // The text is kept as given (the drivers parse it again); only the scheme of
        // MariaDB is spelled the way the driver expects.
        Ok(match scheme {
            "postgres" | "postgresql" => DbUrl::Postgres(text.to_owned()),
            _ => DbUrl::MySql(format!("mysql://{rest}")),
        })
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
    ["pass", "pwd", "secret", "token", "key"]
        .iter()
        .any(|word| name.contains(word))
}

/// Parse `text` with the `url` crate. A password written without percent-encoding may
/// hold '@' or '/', which a URL parser reads as the end of the user part: the user
/// part is taken to run to the last '@' before the query, and its '@', '/', '?' and
/// '#' are percent-encoded first.
fn parse(text: &str) -> Result<Url, url::ParseError> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Url::parse(text);
    };
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..before_query].rfind('@') else {
        return Url::parse(text);
    };
    let mut user_info = String::with_capacity(at + 8);
    for c in rest[..at].chars() {
        match c {
            '@' => user_info.push_str("%40"),
            '/' => user_info.push_str("%2F"),
            '?' => user_info.push_str("%3F"),
            '#' => user_info.push_str("%23"),
            c => user_info.push(c),
        }
    }
    Url::parse(&format!("{scheme}://{user_info}{}", &rest[at..]))
}

/// `scheme://user:***@host/db?password=***`: the password of the user part and every
/// secret-looking query parameter replaced, so the URL can go into logs and errors.
/// Works on any `scheme://` text, also a server URL without a database; text that is
/// not a URL at all is hidden whole, since what in it is secret cannot be told.
///
/// ```
/// use mock_master::store::engine::url::redact;
/// assert_eq!(
///     redact("postgres://u:pw@db:5432/lots?sslmode=require&sslpassword=k"),
///     "postgres://u:***@db:5432/lots?sslmode=require&sslpassword=***"
/// );
/// assert_eq!(redact("postgres://u:pw@db:bad-port/lots"), "<unparseable URL hidden>");
/// ```
pub fn redact(text: &str) -> String {
    let Ok(mut url) = parse(text) else {
        return "<unparseable URL hidden>".to_owned();
    };
    if url.password().is_some() {
        // Only fails for URLs that cannot have a user part, which have no password.
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret_param(&name) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
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

/// `url` with its database name replaced by `database` (query string kept). Text that
/// does not parse as a URL is returned unchanged (the driver then says why).
pub fn with_database(text: &str, database: &str) -> String {
    match parse(text) {
        Ok(mut url) => {
            url.set_path(&format!("/{database}"));
            url.to_string()
        }
        Err(_) => text.to_owned(),
    }
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

    #[test]
    fn every_secret_is_hidden_and_errors_never_repeat_the_url() {
        for (given, shown) in [
            // Percent-encoded password, and secrets under several parameter names.
            (
                "postgres://u:p%40ss@h/db?token=t0k&sslkey=k3y&api_key=a&sslmode=verify-full",
                "postgres://u:***@h/db?token=***&sslkey=***&api_key=***&sslmode=verify-full",
            ),
            // IPv6 host, no user part.
            (
                "postgres://[::1]:5432/db?password=x",
                "postgres://[::1]:5432/db?password=***",
            ),
            // A user without a password is not a secret.
            (
                "mysql://root@127.0.0.1:3306/db",
                "mysql://root@127.0.0.1:3306/db",
            ),
        ] {
            assert_eq!(redact(given), shown, "{given}");
            assert_eq!(given.parse::<DbUrl>().unwrap().to_string(), shown);
        }
        // Not parseable: hidden whole, and the parse error does not repeat it.
        assert_eq!(
            redact("postgres://u:s3cret@h:99999/db"),
            "<unparseable URL hidden>"
        );
        for bad in [
            "postgres://u:s3cret@h:99999/db",
            "mysql://u:s3cret@:3306/db",
            "postgres://u:s3cret@/db?password=s3cret",
        ] {
            let error = bad.parse::<DbUrl>().expect_err(bad).to_string();
            assert!(!error.contains("s3cret"), "{bad}: {error}");
        }
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
