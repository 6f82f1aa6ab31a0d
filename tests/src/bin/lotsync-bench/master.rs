//! The master of a scenario: in this process (so the benchmark shares its clock and
//! drives bids through its handle), but on a tokio runtime of its own, so its work does
//! not share worker threads with the benchmark's bookkeeping and its CPU time can be
//! read per thread.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use mock_master::{Master, MasterHandle};

use crate::procfs::Probe;

/// Name of the master runtime's threads (worker and blocking pool).
const THREAD_NAME: &str = "bench-master";

/// Where the master's CPU time is read: its runtime, its writer and its replicator.
pub const CPU: Probe = Probe::Threads(&[THREAD_NAME, "lotsync-writer", "lotsync-replicator"]);

/// A running master on its own runtime.
pub struct BenchMaster {
    master: Option<Master>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: MasterHandle,
    url: String,
    token: String,
    http: reqwest::Client,
}

impl BenchMaster {
    /// An in-memory master, or a durable one in `dir`.
    pub async fn start(dir: Option<&Path>) -> anyhow::Result<BenchMaster> {
        BenchMaster::start_with(dir, None).await
    }

    /// A master that also publishes its log to JetStream as `nats` says.
    pub async fn start_with(
        dir: Option<&Path>,
        nats: Option<mock_master::nats::NatsOptions>,
    ) -> anyhow::Result<BenchMaster> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(THREAD_NAME)
            // Blocking-pool threads that exit take their CPU time with them.
            .thread_keep_alive(Duration::from_secs(3600))
            .enable_all()
            .build()
            .context("starting the master's runtime")?;
        let dir = dir.map(Path::to_path_buf);
        let master = runtime
            .spawn(async move {
                let builder = Master::builder()
                    .heartbeat(Duration::from_secs(1))
                    .bidder("alice", "alice-token")
                    .bidder("bob", "bob-token");
                let builder = match dir {
                    Some(dir) => builder.data_dir(dir),
                    None => builder.in_memory(),
                };
                let builder = match nats {
                    Some(nats) => builder.nats(nats),
                    None => builder,
                };
                builder.start().await
            })
            .await
            .context("the master's start task")?
            .context("starting the master")?;
        Ok(BenchMaster {
            handle: master.handle(),
            url: master.url().to_owned(),
            token: master.terminal_token().to_owned(),
            master: Some(master),
            runtime: Some(runtime),
            http: reqwest::Client::builder().tcp_nodelay(true).build()?,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The terminal token.
    pub fn terminal_token(&self) -> &str {
        &self.token
    }

    /// The in-process handle (bids, replica).
    pub fn handle(&self) -> &MasterHandle {
        &self.handle
    }

    /// Lot fetches the master has answered so far (every status), from `/metrics`.
    pub async fn fetches(&self) -> anyhow::Result<u64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("lotsync_fetches_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    /// Stop the master and its runtime, waiting for its threads to end (so a later
    /// master's CPU time is not mixed with this one's).
    pub async fn shutdown(mut self) {
        if let Some(master) = self.master.take() {
            let runtime = self.runtime.as_ref().map(|r| r.handle().clone());
            match runtime {
                Some(runtime) => {
                    let _ = runtime.spawn(master.shutdown()).await;
                }
                None => master.shutdown().await,
            }
        }
        if let Some(runtime) = self.runtime.take() {
            let _ = tokio::task::spawn_blocking(move || {
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .await;
        }
    }
}

impl Drop for BenchMaster {
    fn drop(&mut self) {
        // Dropped without `shutdown` (an error path): a runtime may not be dropped
        // inside another runtime, so let its threads go in the background.
        if let Some(runtime) = self.runtime.take() {
            drop(self.master.take());
            runtime.shutdown_background();
        }
    }
}
