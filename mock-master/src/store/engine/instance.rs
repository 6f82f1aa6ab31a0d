//! Private PostgreSQL and MariaDB servers for tests and benchmarks: a fresh data
//! directory in a temporary directory, a free loopback port, started and stopped (or
//! crashed) on demand, removed when the guard goes.
//!
//! Unlike [`super::scratch`], which borrows a database on a shared server, an instance
//! belongs to one test, so the test may restart or kill it. Started as root, the
//! servers run as the `postgres` and `mysql` system users (`runuser`). The programs are
//! found in `/usr/lib/postgresql/*/bin` (or `LOTSYNC_PG_BIN`) and on the `PATH` or in
//! `/usr/sbin` (`mariadb-install-db`, `mariadbd`).
//!
//! ```no_run
//! use mock_master::store::engine::instance::{DbInstance, Server};
//! let mut pg = DbInstance::start(Server::Postgres).unwrap();
//! let url = pg.create_database("lots").unwrap();
//! pg.restart().unwrap();
//! println!("{url}");
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Access, DbUrl, connect, off_runtime};
use crate::store::StoreError;

/// How long a server may take to start or stop before the instance gives up.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The MariaDB account the master uses (the server's root is for administration).
const MARIADB_USER: &str = "lotsync";
const MARIADB_PASSWORD: &str = "lotsync-instance";

/// Why a private server could not be set up or driven.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// A program the instance needs is not installed.
    #[error("{0} not found; install the server (scripts/test.sh does)")]
    Missing(String),
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// What was run.
        command: String,
        /// Its exit status and the end of its output.
        detail: String,
    },
    /// The server did not accept connections in time.
    #[error("the {0} server did not come up within {READY_WITHIN:?}: {1}")]
    NotReady(&'static str, String),
    /// A file or process operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A statement on the server failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL (`initdb`, `pg_ctl`).
    Postgres,
    /// MariaDB (`mariadb-install-db`, `mariadbd`).
    MariaDb,
}

/// A private database server in a temporary directory. Dropping it stops the server
/// and deletes its data.
pub struct DbInstance {
    server: Server,
    port: u16,
    dir: tempfile::TempDir,
    /// PostgreSQL's programs.
    pg_bin: PathBuf,
    /// The running `mariadbd` (PostgreSQL's postmaster is managed by `pg_ctl`).
    mariadbd: Option<Child>,
    running: bool,
}

impl DbInstance {
    /// Create a data directory and start a server on a free loopback port.
    pub fn start(server: Server) -> Result<DbInstance, InstanceError> {
        let dir = tempfile::Builder::new().prefix("lotsync-db-").tempdir()?;
        let owner = match server {
            Server::Postgres => "postgres",
            Server::MariaDb => "mysql",
        };
        if is_root() {
            run(Command::new("chown")
                .arg(format!("{owner}:"))
                .arg(dir.path()))?;
        }
        let mut instance = DbInstance {
            server,
            port: free_port()?,
            dir,
            pg_bin: PathBuf::new(),
            mariadbd: None,
            running: false,
        };
        match server {
            Server::Postgres => {
                instance.pg_bin = pg_bin()?;
                let initdb = instance.pg_bin.join("initdb");
                let data = instance.data();
                run(as_owner(owner, &initdb)
                    .args([
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "-E",
                        "UTF8",
                        "--no-sync",
                        "-D",
                    ])
                    .arg(&data))?;
            }
            Server::MariaDb => {
                let install = program("mariadb-install-db")?;
                run(Command::new(install)
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", instance.data().display()))
                    .args(is_root().then_some("--user=mysql"))
                    .args(["--auth-root-authentication-method=normal", "--skip-test-db"]))?;
            }
        }
        instance.start_again()?;
        if server == Server::MariaDb {
            let sql = format!(
                "CREATE USER '{MARIADB_USER}'@'%' IDENTIFIED BY '{MARIADB_PASSWORD}'; \
                 GRANT ALL PRIVILEGES ON *.* TO '{MARIADB_USER}'@'%'"
            );
            instance.root_sql(&sql)?;
        }
        Ok(instance)
    }

    /// Run SQL as MariaDB's root on the server's socket.
    fn root_sql(&self, sql: &str) -> Result<(), InstanceError> {
        run(Command::new(program("mariadb")?)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "-e", sql]))
    }

    /// Which server this is.
    pub fn server(&self) -> Server {
        self.server
    }

    /// The loopback port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    /// The URL of `database` on this server, for the master.
    pub fn url(&self, database: &str) -> DbUrl {
        match self.server {
            Server::Postgres => DbUrl::Postgres(format!(
                "postgres://postgres@127.0.0.1:{}/{database}",
                self.port
            )),
            Server::MariaDb => DbUrl::MySql(format!(
                "mysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:{}/{database}",
                self.port
            )),
        }
    }

    /// The URL of the server's administrative database.
    fn admin_url(&self) -> DbUrl {
        match self.server {
            Server::Postgres => self.url("postgres"),
            Server::MariaDb => self.url("mysql"),
        }
    }

    /// Run one statement as the administrator.
    pub fn execute(&self, sql: &str) -> Result<(), InstanceError> {
        let url = self.admin_url();
        off_runtime(|| connect(&url, Access::Read)?.batch(sql))?;
        Ok(())
    }

    /// Create a database and return its URL.
    pub fn create_database(&self, name: &str) -> Result<DbUrl, InstanceError> {
        self.execute(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    /// Whether the server is running (as far as this guard knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Start the server on its data directory and wait until it accepts connections.
    pub fn start_again(&mut self) -> Result<(), InstanceError> {
        match self.server {
            Server::Postgres => {
                let options = format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                    self.port,
                    self.dir.path().display()
                );
                run(as_owner("postgres", &self.pg_bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(self.data())
                    .arg("-l")
                    .arg(self.dir.path().join("postgres.log"))
                    .args(["-o", &options, "-w", "-t", "60", "start"]))?;
            }
            Server::MariaDb => {
                let child = Command::new(program("mariadbd")?)
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg(format!("--port={}", self.port))
                    .arg(format!("--socket={}", self.socket().display()))
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.path().join("mariadb.pid").display()
                    ))
                    .arg(format!(
                        "--log-error={}",
                        self.dir.path().join("mariadb.log").display()
                    ))
                    .args(is_root().then_some("--user=mysql"))
                    .args([
                        "--bind-address=127.0.0.1",
                        "--skip-name-resolve",
                        "--skip-log-bin",
                        "--innodb-buffer-pool-size=32M",
                        "--max-connections=200",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                self.mariadbd = Some(child);
            }
        }
        self.running = true;
        self.wait_ready()
    }

    /// Wait until the server answers a query (PostgreSQL's `pg_ctl -w` waits already;
    /// MariaDB is asked as root on its socket, since the master's account may not
    /// exist yet).
    fn wait_ready(&mut self) -> Result<(), InstanceError> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut pause = Duration::from_millis(20);
        loop {
            let answered = match self.server {
                Server::Postgres => self.execute("SELECT 1"),
                Server::MariaDb => self.root_sql("SELECT 1"),
            };
            let error = match answered {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if let Some(child) = &mut self.mariadbd
                && let Some(status) = child.try_wait()?
            {
                return Err(InstanceError::NotReady(
                    "MariaDB",
                    format!("mariadbd exited with {status}; {}", self.log_tail()),
                ));
            }
            if Instant::now() >= deadline {
                return Err(InstanceError::NotReady(self.name(), error.to_string()));
            }
            // Polling a server that offers no readiness event; the pause only paces it.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    fn name(&self) -> &'static str {
        match self.server {
            Server::Postgres => "PostgreSQL",
            Server::MariaDb => "MariaDB",
        }
    }

    fn log_tail(&self) -> String {
        let file = match self.server {
            Server::Postgres => "postgres.log",
            Server::MariaDb => "mariadb.log",
        };
        let log = std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Stop the server cleanly (PostgreSQL: fast shutdown; MariaDB: SIGTERM) and wait.
    pub fn stop(&mut self) -> Result<(), InstanceError> {
        self.halt(false)
    }

    /// Crash the server: PostgreSQL's immediate shutdown (every process quits at once,
    /// recovery at the next start), MariaDB's SIGKILL.
    pub fn kill(&mut self) -> Result<(), InstanceError> {
        self.halt(true)
    }

    /// Stop the server cleanly and start it again on the same port and data.
    pub fn restart(&mut self) -> Result<(), InstanceError> {
        self.stop()?;
        self.start_again()
    }

    fn halt(&mut self, crash: bool) -> Result<(), InstanceError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        match self.server {
            Server::Postgres => {
                let mode = if crash { "immediate" } else { "fast" };
                run(as_owner("postgres", &self.pg_bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(self.data())
                    .args(["-m", mode, "-w", "-t", "60", "stop"]))?;
            }
            Server::MariaDb => {
                if let Some(mut child) = self.mariadbd.take() {
                    let signal = if crash { "-KILL" } else { "-TERM" };
                    run(Command::new("kill").args([signal, &child.id().to_string()]))?;
                    child.wait()?;
                }
            }
        }
        Ok(())
    }

    /// End every connection the master holds (PostgreSQL: `pg_terminate_backend` on
    /// the master's application name; MariaDB: `KILL` on the master's account), without
    /// stopping the server. Returns how many were ended.
    pub fn kill_connections(&self) -> Result<usize, InstanceError> {
        let url = self.admin_url();
        let server = self.server;
        let killed = off_runtime(|| -> Result<usize, StoreError> {
            let mut conn = connect(&url, Access::Read)?;
            match server {
                Server::Postgres => {
                    let row = conn.query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE application_name = 'lotsync-master' AND pid <> pg_backend_pid()",
                        &[],
                    )?;
                    Ok(row.int(0)? as usize)
                }
                Server::MariaDb => {
                    let ids = conn.query(
                        "SELECT id FROM information_schema.processlist \
                         WHERE user = ? AND id <> CONNECTION_ID()",
                        &[MARIADB_USER.into()],
                    )?;
                    let mut killed = 0;
                    for row in ids {
                        // A connection may close by itself meanwhile: ignore "unknown thread".
                        if conn.batch(&format!("KILL {}", row.int(0)?)).is_ok() {
                            killed += 1;
                        }
                    }
                    Ok(killed)
                }
            }
        })?;
        Ok(killed)
    }
}

impl Drop for DbInstance {
    fn drop(&mut self) {
        if let Err(e) = self.halt(true) {
            tracing::warn!(error = %e, "could not stop a private database server");
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// `program` run as `user` when this process is root (the servers refuse to run as
/// root), else as this process's user.
fn as_owner(user: &str, program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The newest PostgreSQL's program directory.
fn pg_bin() -> Result<PathBuf, InstanceError> {
    if let Some(dir) = std::env::var_os("LOTSYNC_PG_BIN") {
        return Ok(dir.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| InstanceError::Missing("/usr/lib/postgresql".into()))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| InstanceError::Missing("initdb in /usr/lib/postgresql/*/bin".into()))
}

/// A program on the `PATH` or in `/usr/sbin` and `/usr/bin`.
fn program(name: &str) -> Result<PathBuf, InstanceError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| InstanceError::Missing(name.to_owned()))
}

/// A port nothing listens on now (the server binds it a moment later).
fn free_port() -> Result<u16, InstanceError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(command: &mut Command) -> Result<(), InstanceError> {
    let shown = format!("{command:?}");
    let output = command.stdin(Stdio::null()).output()?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    Err(InstanceError::Command {
        command: shown,
        detail: format!(
            "{}: {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ),
    })
}
