//! NATS servers with JetStream for the tests and benchmarks: one server or a cluster of
//! three, each a `nats-server` child process on private ports with its store and log in
//! a temporary directory, that a test can kill (SIGKILL) and start again on the same
//! ports and store. Everything is killed when the value is dropped.
//!
//! Ports are found by binding port 0 and releasing it, so another process can take one
//! before `nats-server` binds it (tests run in parallel, and some restart their nodes).
//! A node is therefore only ready when both its client and its monitoring port answer
//! with its own server name, which is unique to the fixture; a start that loses a port
//! is retried on fresh ones.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use tokio::io::AsyncBufReadExt;

/// How long a server may take to answer its health check after starting.
const READY: Duration = Duration::from_secs(30);

/// How many times a fixture is started on fresh ports before giving up.
const ATTEMPTS: usize = 3;

/// A free port on 127.0.0.1 (bound, then released).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `nats-server -js` process, restartable on the same ports and store.
pub struct NatsNode {
    name: String,
    port: u16,
    monitor: u16,
    log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl NatsNode {
    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's name (`-n`), as JetStream reports it (stream leaders, replicas).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Start the process (again), without waiting for it to be ready.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        // A Go panic goes to stderr, not to the log: keep it beside the log.
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log.with_extension("stderr"))
            .context("the nats-server stderr file")?;
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("cannot start nats-server (is it installed and on PATH?)")?;
        self.child = Some(child);
        Ok(())
    }

    /// Wait until this very server answers on both its ports (JetStream ready). Fails,
    /// with the end of the server's log, if it exits or another process answers there.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "nats-server {} exited ({status}); its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if self.child.is_none() {
                bail!("nats-server {} is not running", self.name);
            }
            match self.answers().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => bail!(
                    "{error}; the log of {} ends:\n{}",
                    self.name,
                    self.log_tail()
                ),
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "nats-server {} not ready within {READY:?}; its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the server is ready: `Ok(false)` while it is starting, an error when a
    /// port is answered by another server.
    async fn answers(&self) -> anyhow::Result<bool> {
        let http = reqwest::Client::new();
        let monitor = format!("http://127.0.0.1:{}", self.monitor);
        let healthy = http
            .get(format!("{monitor}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !healthy {
            return Ok(false);
        }
        let Ok(varz) = http.get(format!("{monitor}/varz")).send().await else {
            return Ok(false);
        };
        let Ok(varz) = varz.json::<serde_json::Value>().await else {
            return Ok(false);
        };
        let monitor_name = varz["server_name"].as_str().unwrap_or_default().to_owned();
        if monitor_name != self.name {
            bail!(
                "monitoring port {} is answered by {monitor_name:?}, not {}",
                self.monitor,
                self.name
            );
        }
        let Some(client_name) = info_server_name(self.port).await else {
            return Ok(false);
        };
        if client_name != self.name {
            bail!(
                "client port {} is answered by {client_name:?}, not {}",
                self.port,
                self.name
            );
        }
        Ok(true)
    }

    /// The last lines of the server's log, then of its stderr (a panic).
    fn log_tail(&self) -> String {
        let tail = |path: &Path, n: usize| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "{}\n--- stderr:\n{}",
            tail(&self.log, 40),
            tail(&self.log.with_extension("stderr"), 40)
        )
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `server_name` in the `INFO` line a NATS server sends first on its client port.
async fn info_server_name(port: u16) -> Option<String> {
    let read = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let mut line = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut line)
            .await
            .ok()?;
        let info: serde_json::Value = serde_json::from_str(line.strip_prefix("INFO ")?).ok()?;
        info["server_name"].as_str().map(str::to_owned)
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

/// One server or a cluster, with its stores in a temporary directory.
pub struct Nats {
    /// The servers, in start order.
    pub nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

impl Drop for Nats {
    /// When a test fails, its servers' logs are part of what it prints.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "--- the log of nats-server {} ends:\n{}",
                    node.name,
                    node.log_tail()
                );
            }
        }
    }
}

impl Nats {
    /// One server with JetStream.
    pub async fn single() -> anyhow::Result<Nats> {
        Nats::start(1).await
    }

    /// Three servers clustered by routes, JetStream on each (streams up to R3).
    pub async fn cluster() -> anyhow::Result<Nats> {
        Nats::start(3).await
    }

    async fn start(count: usize) -> anyhow::Result<Nats> {
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            match Nats::start_once(count).await {
                Ok(nats) => return Ok(nats),
                Err(error) => failures.push(format!("{error:#}")),
            }
        }
        bail!(
            "nats-server did not start in {ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        )
    }

    async fn start_once(count: usize) -> anyhow::Result<Nats> {
        let dir = tempfile::Builder::new().prefix("lotsync-nats-").tempdir()?;
        // Unique names: a port taken by another fixture's server shows as a wrong name.
        let tag: u32 = rand::rng().random();
        let mut ports = Vec::new();
        for _ in 0..count {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, _, cluster)| format!("nats://127.0.0.1:{cluster}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, monitor, cluster)) in ports.iter().enumerate() {
            let name = format!("n{i}-{tag:08x}");
            let store: PathBuf = dir.path().join(&name);
            let log = dir.path().join(format!("{name}.log"));
            let mut args = vec![
                "-js".to_owned(),
                "-n".to_owned(),
                name.clone(),
                "-a".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                port.to_string(),
                "-m".to_owned(),
                monitor.to_string(),
                "-sd".to_owned(),
                path(&store)?,
                "-l".to_owned(),
                path(&log)?,
            ];
            if count > 1 {
                args.extend([
                    "--cluster_name".to_owned(),
                    format!("lotsync-test-{tag:08x}"),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{cluster}"),
                    "--routes".to_owned(),
                    routes.join(","),
                ]);
            }
            let mut node = NatsNode {
                name,
                port: *port,
                monitor: *monitor,
                log,
                args,
                child: None,
            };
            node.start()?;
            nodes.push(node);
        }
        for node in &mut nodes {
            node.wait_ready().await?;
        }
        Ok(Nats { nodes, _dir: dir })
    }

    /// Every server's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    /// A client connected to every server (it fails over between them).
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let servers = self
            .urls()
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(async_nats::ConnectOptions::new().connect(servers).await?)
    }
}

fn path(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_owned)
        .context("a UTF-8 temporary directory")
}

/// Whether `nats-server` can be run here.
pub fn available() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_on_another_fixtures_port_is_not_taken_for_ours() {
        let theirs = Nats::single().await.expect("a server starts");
        let dir = tempfile::tempdir().unwrap();
        let mut impostor = NatsNode {
            name: "ours".into(),
            port: theirs.nodes[0].port,
            monitor: theirs.nodes[0].monitor,
            log: dir.path().join("ours.log"),
            args: vec![
                "-n".into(),
                "ours".into(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                theirs.nodes[0].port.to_string(),
                "-m".into(),
                theirs.nodes[0].monitor.to_string(),
                "-l".into(),
                path(&dir.path().join("ours.log")).unwrap(),
            ],
            child: None,
        };
        impostor.start().unwrap();
        let error = impostor
            .wait_ready()
            .await
            .expect_err("the ports answer with another server's name");
        let message = format!("{error:#}");
        assert!(
            message.contains("exited") || message.contains("answered by"),
            "{message}"
        );
        // The other server still answers as itself.
        assert_eq!(
            info_server_name(theirs.nodes[0].port).await.as_deref(),
            Some(theirs.nodes[0].name())
        );
    }
}
