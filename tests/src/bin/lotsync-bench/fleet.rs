//! A fleet of subscriber processes: spawn them, wait until every subscriber is ready,
//! collect their stdout lines, and stop them by closing their stdin.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::subscriber::{Line, Mode};

/// Most subscriber processes started at once; larger fleets run several subscribers
/// as tasks in each process (2 cores cannot usefully schedule hundreds of runtimes).
pub const MAX_PROCESSES: u32 = 50;

/// Raw notice streams per process in `streams` mode: a few processes hold thousands.
pub const STREAMS_PER_PROCESS: u32 = 2_500;

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
    /// Notify mode: notices carrying their lots (subscribers of a terminal server).
    pub inline: bool,
    /// Raw readers: acknowledge every read at once (TCP_QUICKACK).
    pub quickack: bool,
    /// Notify mode: follow notices on JetStream on this port of 127.0.0.1.
    pub nats: Option<u16>,
}

impl FleetSpec {
    /// Processes and subscribers per process for this fleet.
    pub fn layout(&self) -> (u32, u32) {
        let most = match self.mode {
            Mode::Streams => self.subscribers.div_ceil(STREAMS_PER_PROCESS),
            _ => MAX_PROCESSES,
        };
        let processes = self.subscribers.clamp(1, most.max(1));
        (processes, self.subscribers.div_ceil(processes))
    }
}

/// Everything the subscribers reported.
#[derive(Debug, Default)]
pub struct Collected {
    /// Every line, in arrival order per process.
    pub lines: Vec<Line>,
    /// Subscribers that reported ready.
    ready: usize,
    /// Newest version of each lot each subscriber reported: subscriber -> lot -> seq.
    held: HashMap<u32, HashMap<String, u64>>,
    /// Processes whose stdout closed (exited, or about to).
    closed: usize,
    /// `streams` mode: per notice, processes all of whose streams received it.
    complete: HashMap<u64, u32>,
}

impl Collected {
    fn append(&mut self, batch: &mut Vec<Line>) {
        for line in batch.iter() {
            match line {
                Line::Ready { .. } => self.ready += 1,
                Line::Observed { sub, lot, seq, .. } => {
                    let lots = self.held.entry(*sub).or_default();
                    match lots.get_mut(lot) {
                        Some(held) => *held = (*held).max(*seq),
                        None => {
                            lots.insert(lot.clone(), *seq);
                        }
                    }
                }
                Line::Delivered {
                    seq,
                    streams,
                    count,
                    ..
                } if count >= streams => *self.complete.entry(*seq).or_default() += 1,
                Line::Final { .. } | Line::Delivered { .. } | Line::Latency { .. } => {}
            }
        }
        self.lines.append(batch);
    }
}

/// Running subscriber processes.
pub struct Fleet {
    spec: FleetSpec,
    children: Vec<(Child, Option<ChildStdin>)>,
    readers: Vec<JoinHandle<()>>,
    collected: Arc<Mutex<Collected>>,
    /// Bumped by the readers after every change to `collected`.
    progress: watch::Receiver<u64>,
}

impl Fleet {
    /// Start the fleet against the master at `url`.
    pub async fn spawn(url: &str, token: &str, spec: FleetSpec) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        let (processes, per_process) = spec.layout();
        let collected = Arc::new(Mutex::new(Collected::default()));
        let (progress, progress_rx) = watch::channel(0u64);
        let progress = Arc::new(progress);
        let mut fleet = Fleet {
            spec,
            children: Vec::new(),
            readers: Vec::new(),
            collected: collected.clone(),
            progress: progress_rx,
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
                .args(spec.inline.then_some("--inline-lots"))
                .args(spec.quickack.then_some("--quickack"))
                .args(
                    spec.nats
                        .map(|port| ["--nats".to_owned(), format!("nats://127.0.0.1:{port}")])
                        .into_iter()
                        .flatten(),
                )
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
            let progress = progress.clone();
            fleet.readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut batch = Vec::new();
                while let Ok(Some(text)) = lines.next_line().await {
                    match Line::parse(&text) {
                        Some(line) => batch.push(line),
                        None => tracing::warn!(line = %text, "unreadable subscriber line"),
                    }
                    // Hand lines over once what was read is used up (or in chunks under
                    // load), so waiters see each observation promptly.
                    if batch.len() >= 256 || lines.get_ref().buffer().is_empty() {
                        sink.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .append(&mut batch);
                        progress.send_modify(|n| *n += 1);
                    }
                }
                {
                    let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
                    sink.append(&mut batch);
                    sink.closed += 1;
                }
                progress.send_modify(|n| *n += 1);
            }));
            fleet.children.push((child, stdin));
            next += count;
        }
        Ok(fleet)
    }

    /// Process ids of the fleet's subscriber processes.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|(c, _)| c.id()).collect()
    }

    /// Wait until every subscriber has synced with the master.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Mark the current state seen before reading it, so no report is missed.
            self.progress.borrow_and_update();
            let (ready, closed) = {
                let c = self.collected.lock().unwrap_or_else(|e| e.into_inner());
                (c.ready, c.closed)
            };
            if ready >= self.spec.subscribers as usize {
                return Ok(());
            }
            if closed > 0 {
                for (child, _) in &mut self.children {
                    if let Some(status) = child.try_wait()? {
                        bail!("a subscriber process exited early ({status})");
                    }
                }
                bail!("a subscriber process closed its output before it was ready");
            }
            // Woken by the readers on every new line (or a closed stdout), not a timer.
            match tokio::time::timeout_at(deadline, self.progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("every subscriber process closed its output"),
                Err(_) => bail!(
                    "only {ready} of {} subscribers were ready after {timeout:?}",
                    self.spec.subscribers
                ),
            }
        }
    }

    /// Wait until every subscriber of the fleet has reported holding each lot of
    /// `versions` (lot -> seq) at that version or newer. Gives up, returning `false`,
    /// when no subscriber reports anything for `quiet` (the rest is not coming), or at
    /// `deadline`.
    pub async fn wait_caught_up(
        &mut self,
        versions: &HashMap<String, u64>,
        quiet: Duration,
        deadline: tokio::time::Instant,
    ) -> bool {
        let subs = self.spec.first_id..self.spec.first_id + self.spec.subscribers;
        loop {
            self.progress.borrow_and_update();
            let caught_up = {
                let c = self.collected.lock().unwrap_or_else(|e| e.into_inner());
                subs.clone().all(|sub| {
                    versions.iter().all(|(lot, &seq)| {
                        c.held
                            .get(&sub)
                            .and_then(|lots| lots.get(lot))
                            .is_some_and(|&held| held >= seq)
                    })
                })
            };
            if caught_up {
                return true;
            }
            let until = deadline.min(tokio::time::Instant::now() + quiet);
            // Quiet past `until`, or every process gone: nothing more will arrive.
            if !matches!(
                tokio::time::timeout_at(until, self.progress.changed()).await,
                Ok(Ok(()))
            ) {
                return false;
            }
        }
    }

    /// `streams` mode: wait until every stream of the fleet has received notice `seq`
    /// (so every earlier one: streams are in order). Gives up, returning `false`, when
    /// nothing is reported for `quiet`, or at `deadline`.
    pub async fn wait_streams_reached(
        &mut self,
        seq: u64,
        quiet: Duration,
        deadline: tokio::time::Instant,
    ) -> bool {
        let processes = self.children.len() as u32;
        loop {
            self.progress.borrow_and_update();
            let done = {
                let c = self.collected.lock().unwrap_or_else(|e| e.into_inner());
                c.complete.get(&seq).copied().unwrap_or(0) >= processes
            };
            if done {
                return true;
            }
            let until = deadline.min(tokio::time::Instant::now() + quiet);
            if !matches!(
                tokio::time::timeout_at(until, self.progress.changed()).await,
                Ok(Ok(()))
            ) {
                return false;
            }
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
        Mode::Nchan => "nchan",
        Mode::Streams => "streams",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fleets_share_processes() {
        let spec = |mode, subscribers| FleetSpec {
            mode,
            interval_ms: 0,
            subscribers,
            first_id: 0,
            inline: false,
            quickack: false,
            nats: None,
        };
        assert_eq!(spec(Mode::Notify, 1).layout(), (1, 1));
        assert_eq!(spec(Mode::Notify, 50).layout(), (50, 1));
        assert_eq!(spec(Mode::Notify, 200).layout(), (50, 4));
        assert_eq!(spec(Mode::Notify, 120).layout(), (50, 3));
        assert_eq!(spec(Mode::Streams, 10_000).layout(), (4, 2_500));
        assert_eq!(spec(Mode::Streams, 200).layout(), (1, 200));
    }
}
