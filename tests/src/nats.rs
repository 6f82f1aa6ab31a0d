//! NATS servers with JetStream for the tests and benchmarks: one server or a cluster of
//! three, each a `nats-server` child process on private ports with its store in a
//! temporary directory, that a test can kill (SIGKILL) and start again on the same
//! ports and store. Everything is killed when the value is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long a server may take to answer its health check after starting.
const READY: Duration = Duration::from_secs(30);

/// A free port on 127.0.0.1 (bound, then released).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `nats-server -js` process, restartable on the same ports and store.
pub struct NatsNode {
    name: String,
    port: u16,
    monitor: u16,
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
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nats-server (is it installed and on PATH?)")?;
        self.child = Some(child);
        Ok(())
    }

    /// Wait until the server answers its health check (JetStream included).
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor);
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + READY;
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("nats-server {} not ready within {READY:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// One server or a cluster, with its stores in a temporary directory.
pub struct Nats {
    /// The servers, in start order.
    pub nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
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
        let dir = tempfile::Builder::new().prefix("lotsync-nats-").tempdir()?;
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
            let name = format!("n{i}");
            let store: PathBuf = dir.path().join(&name);
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
            ];
            if count > 1 {
                args.extend([
                    "--cluster_name".to_owned(),
                    "lotsync-test".to_owned(),
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
                args,
                child: None,
            };
            node.start()?;
            nodes.push(node);
        }
        for node in &nodes {
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
