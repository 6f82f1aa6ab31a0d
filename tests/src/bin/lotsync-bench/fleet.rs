//! A fleet of subscriber processes: spawn them, wait until every subscriber is ready,
//! collect their stdout lines, and stop them by closing their stdin.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use crate::subscriber::{Line, Mode};

/// Most subscriber processes started at once; larger fleets run several subscribers
/// as tasks in each process (2 cores cannot usefully schedule hundreds of runtimes).
pub const MAX_PROCESSES: u32 = 50;

/// What to start.
#[derive(Debug, Clone, Copy)]
pub struct FleetSpec {
    /// Notify (SDK) or poll.
    pub mode: Mode,
    /// Poll interval (poll mode).
    pub interval_ms: u64,
    /// Number of subscribers.
    pub subscribers: u32,
    /// Id of the first subscriber, so fleets sharing a master have distinct ids.
    pub first_id: u32,
}

impl FleetSpec {
    /// Processes and subscribers per process for this fleet.
    pub fn layout(&self) -> (u32, u32) {
        let processes = self.subscribers.clamp(1, MAX_PROCESSES);
        (processes, self.subscribers.div_ceil(processes))
    }
}

/// Everything the subscribers reported.
#[derive(Debug, Default)]
pub struct Collected {
    /// Every line, in arrival order per process.
    pub lines: Vec<Line>,
}

impl Collected {
    /// Subscribers that reported ready.
    pub fn ready(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l, Line::Ready { .. }))
            .count()
    }
}

/// Running subscriber processes.
pub struct Fleet {
    spec: FleetSpec,
    children: Vec<(Child, Option<ChildStdin>)>,
    readers: Vec<JoinHandle<()>>,
    collected: Arc<Mutex<Collected>>,
}

impl Fleet {
    /// Start the fleet against the master at `url`.
    pub async fn spawn(url: &str, token: &str, spec: FleetSpec) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        let (processes, per_process) = spec.layout();
        let collected = Arc::new(Mutex::new(Collected::default()));
        let mut fleet = Fleet {
            spec,
            children: Vec::new(),
            readers: Vec::new(),
            collected: collected.clone(),
        };
        let mut next = spec.first_id;
        let end = spec.first_id + spec.subscribers;
        for _ in 0..processes {
            let count = per_process.min(end - next);
            if count == 0 {
                break;
            }
            let mut command = Command::new(&exe);
            command
                .arg("subscriber")
                .args(["--url", url, "--token", token])
                .args(["--mode", mode_name(spec.mode)])
                .args(["--interval-ms", &spec.interval_ms.to_string()])
                .args(["--count", &count.to_string()])
                .args(["--first-id", &next.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            if std::env::var_os("RUST_LOG").is_none() {
                command.env("RUST_LOG", "warn");
            }
            let mut child = command.spawn().context("starting a subscriber process")?;
            let stdout = child.stdout.take().context("subscriber stdout")?;
            let stdin = child.stdin.take();
            let sink = collected.clone();
            fleet.readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut batch = Vec::new();
                while let Ok(Some(text)) = lines.next_line().await {
                    match Line::parse(&text) {
                        Some(line) => batch.push(line),
                        None => tracing::warn!(line = %text, "unreadable subscriber line"),
                    }
                    if batch.len() >= 256 || matches!(batch.last(), Some(Line::Ready { .. })) {
                        sink.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .lines
                            .append(&mut batch);
                    }
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .lines
                    .append(&mut batch);
            }));
            fleet.children.push((child, stdin));
            next += count;
        }
        Ok(fleet)
    }

    /// Wait until every subscriber has synced with the master.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ready = self
                .collected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ready();
            if ready >= self.spec.subscribers as usize {
                return Ok(());
            }
            for (child, _) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!("a subscriber process exited early ({status})");
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "only {ready} of {} subscribers were ready after {timeout:?}",
                    self.spec.subscribers
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop every subscriber (close stdin), wait for them to exit, and return what
    /// they reported.
    pub async fn finish(mut self, timeout: Duration) -> anyhow::Result<Collected> {
        for (_, stdin) in &mut self.children {
            stdin.take();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for (child, _) in &mut self.children {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, child.wait()).await {
                Ok(Ok(status)) if !status.success() => {
                    tracing::warn!(%status, "a subscriber process failed");
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("a subscriber process did not exit in time; killing it");
                    let _ = child.kill().await;
                }
            }
        }
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        let collected =
            std::mem::take(&mut *self.collected.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(collected)
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Notify => "notify",
        Mode::Poll => "poll",
        Mode::Notices => "notices",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fleets_share_processes() {
        let spec = |subscribers| FleetSpec {
            mode: Mode::Notify,
            interval_ms: 0,
            subscribers,
            first_id: 0,
        };
        assert_eq!(spec(1).layout(), (1, 1));
        assert_eq!(spec(50).layout(), (50, 1));
        assert_eq!(spec(200).layout(), (50, 4));
        assert_eq!(spec(120).layout(), (50, 3));
    }
}
