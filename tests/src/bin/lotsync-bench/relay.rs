//! The real `terminal-server` binary as a process of its own: found (or built) next to
//! this benchmark, started on a free port of 127.0.0.1, measured through `/proc`, and
//! stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procfs::{self, Probe};

/// The token the terminal servers' own terminals present.
pub const DISPLAY_TOKEN: &str = "bench-display";

/// Longest wait for a terminal server to follow its upstream.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Locate `terminal-server` in this benchmark's target directory, building it first
/// with the same profile when the benchmark runs under cargo (so it is never stale).
pub async fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark binary")?;
    let dir = exe.parent().context("the benchmark binary's directory")?;
    let path = dir.join("terminal-server");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut build = Command::new(cargo);
        // Selecting this package too gives the library the same features as the
        // benchmark's build, so nothing is compiled twice.
        build
            .args(["build", "--quiet", "-p", "lotsync-tests", "-p", "lotsync"])
            .args(["--bin", "terminal-server", "--manifest-path"])
            .arg(&manifest)
            .stdin(Stdio::null());
        // `cargo run` describes this package in the environment; build scripts that
        // watch those variables (ring's) would otherwise rebuild half the tree.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    name.as_ref(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_RUSTC_CURRENT_DIR"
                )
            {
                build.env_remove(name.as_ref());
            }
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        tracing::info!("building terminal-server");
        let status = build.status().await.context("running cargo build")?;
        if !status.success() {
            bail!("cargo build of terminal-server failed ({status})");
        }
    }
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build -p lotsync --features server --bin terminal-server`",
            path.display()
        );
    }
    Ok(path)
}

/// A running terminal server.
pub struct TerminalServerProcess {
    child: Child,
    pid: u32,
    url: String,
}

impl TerminalServerProcess {
    /// Start `exe` following `upstream` with `token`; with `inline`, it asks its
    /// upstream for notices that carry their lots. Returns once it serves a synced
    /// mirror.
    pub async fn start(
        exe: &Path,
        upstream: &str,
        token: &str,
        inline: bool,
    ) -> anyhow::Result<TerminalServerProcess> {
        let mut command = Command::new(exe);
        command
            .args(["--master", upstream, "--token", token])
            .args(["--display-token", DISPLAY_TOKEN, "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if inline {
            command.arg("--inline-lots");
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command.spawn().context("starting terminal-server")?;
        let pid = child.id().context("terminal-server's pid")?;
        let stdout = child.stdout.take().context("terminal-server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_LIMIT, lines.next_line())
            .await
            .context("terminal-server did not say where it listens")??
            .unwrap_or_default();
        let Some(url) = first.strip_prefix("listening on ") else {
            bail!("terminal-server's first line was {first:?}");
        };
        // Keep reading its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let server = TerminalServerProcess {
            child,
            pid,
            url: url.trim().to_owned(),
        };
        server.wait_synced().await?;
        Ok(server)
    }

    /// `/healthz` answers 200 once the server holds a snapshot; retried briefly
    /// while it connects upstream.
    async fn wait_synced(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/healthz", self.url);
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        let mut pause = Duration::from_millis(5);
        loop {
            let ok = http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if tokio::time::Instant::now() + pause > deadline {
                bail!(
                    "terminal-server at {} did not sync within {START_LIMIT:?}",
                    self.url
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where its CPU time is read.
    pub fn cpu(&self) -> Probe {
        Probe::Process(self.pid)
    }

    /// Its resident memory now, KiB.
    pub fn rss_kib(&self) -> u64 {
        procfs::rss_kib(self.pid)
    }

    /// Ask it to stop (SIGTERM: its graceful shutdown) and wait; kill it if it takes
    /// longer than a few seconds.
    pub async fn stop(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(8), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!("terminal-server did not stop in time; killing it");
            let _ = self.child.kill().await;
        }
    }
}
