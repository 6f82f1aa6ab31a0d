//! Starting a master inside a test or another program: [`Master::builder`], then
//! [`MasterBuilder::start`], then drive it through [`MasterHandle`].

use std::path::PathBuf;
use std::time::Duration;

use lotsync::protocol::{
    Bid, ChaosPatch, ChaosSettings, Lot, LotInput, LotStatus, Money, ReplicationStatus, Seq,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{DbUrl, MasterConfig, Storage};
use crate::http::errors::ApiError;
use crate::server::{self, AppState};
use crate::store::StoreError;

/// Settings for an in-process master; every setter takes and returns `Self`.
///
/// Defaults: in-memory, random admin and terminal tokens, no bidders, 2 s heartbeat,
/// 2 s fetch wait, 10 s anti-sniping, 100 000 retained log entries, no demo, no chaos.
///
/// ```no_run
/// # async fn example() -> Result<(), mock_master::StoreError> {
/// let master = mock_master::Master::builder()
///     .heartbeat(std::time::Duration::from_millis(200))
///     .bidder("alice", "alice-token")
///     .start()
///     .await?;
/// println!("{}", master.url());
/// master.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MasterBuilder {
    config: MasterConfig,
}

impl MasterBuilder {
    /// Keep the databases in a throwaway directory (the default).
    pub fn in_memory(mut self) -> Self {
        self.config.storage = Storage::InMemory;
        self
    }

    /// Keep the databases under `dir` (created if missing); they survive restarts.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.storage = Storage::Dir(dir.into());
        self
    }

    /// Keep the first database here: a SQLite file, or a PostgreSQL or MariaDB
    /// database (default: `primary.db` in the data directory).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let master = mock_master::Master::builder()
    ///     .primary("mysql://root@127.0.0.1:3306/lots".parse()?)
    ///     .replica("postgres://postgres@127.0.0.1:5432/lots".parse()?)
    ///     .start()
    ///     .await?;
    /// # master.shutdown().await; Ok(()) }
    /// ```
    pub fn primary(mut self, url: DbUrl) -> Self {
        self.config.primary = Some(url);
        self
    }

    /// Keep the second database (the one fetches read) here (default: `replica.db`
    /// in the data directory).
    pub fn replica(mut self, url: DbUrl) -> Self {
        self.config.replica = Some(url);
        self
    }

    /// Interval between heartbeats on notice streams.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = every;
        self
    }

    /// Longest a fetch waits for the replica to reach `min_seq`.
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.config.fetch_wait = wait;
        self
    }

    /// Anti-sniping window (zero turns it off).
    pub fn anti_snipe(mut self, window: Duration) -> Self {
        self.config.anti_snipe = window;
        self
    }

    /// Load the demo catalogue and keep an auction running.
    pub fn demo(mut self, on: bool) -> Self {
        self.config.demo = on;
        self
    }

    /// Run `n` bot bidders.
    pub fn simulated_bidders(mut self, n: usize) -> Self {
        self.config.simulated_bidders = n;
        self
    }

    /// Enable fault injection (off by default).
    pub fn chaos(mut self, on: bool) -> Self {
        self.config.chaos = on.then(|| self.config.chaos.take().unwrap_or_default());
        self
    }

    /// Seed every random choice (faults, demo, bots).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Keep these memcached servers (`HOST:PORT`) warm with every lot.
    pub fn memcached<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.memcached = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Publish the operation log to NATS JetStream.
    pub fn nats(mut self, options: crate::nats::NatsOptions) -> Self {
        self.config.nats = Some(options);
        self
    }

    /// Log entries retained for resume and catch-up.
    pub fn log_retention(mut self, entries: usize) -> Self {
        self.config.log_retention = entries;
        self
    }

    /// How long idempotency keys are remembered (default one day).
    pub fn idempotency_retention(mut self, retention: Duration) -> Self {
        self.config.idempotency_retention = retention;
        self
    }

    /// Writes that may wait for the database writer before more get 503.
    pub fn writer_queue(mut self, commands: usize) -> Self {
        self.config.writer_queue = commands;
        self
    }

    /// Most connections opened to the replica for fetches.
    pub fn read_connections(mut self, connections: usize) -> Self {
        self.config.read_connections = connections;
        self
    }

    /// Replication lag past which `/healthz` says replication is stalled.
    pub fn replication_stall(mut self, lag: Duration) -> Self {
        self.config.replication_stall = lag;
        self
    }

    /// Add a bidder with its token.
    pub fn bidder(mut self, name: impl Into<String>, token: impl Into<String>) -> Self {
        self.config.bidders.push((name.into(), token.into()));
        self
    }

    /// Use this admin token instead of a random one.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.config.admin_token = token.into();
        self
    }

    /// Use this terminal token instead of a random one.
    pub fn terminal_token(mut self, token: impl Into<String>) -> Self {
        self.config.terminal_token = token.into();
        self
    }

    /// Bounds on connections, notice streams and requests.
    pub fn limits(mut self, limits: lotsync::serve::Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Replace the whole configuration.
    pub fn config(mut self, config: MasterConfig) -> Self {
        self.config = config;
        self
    }

    /// Start the master on `127.0.0.1` on a free port.
    pub async fn start(self) -> Result<Master, StoreError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = AppState::open(self.config.clone())?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(state.clone(), listener, async {
            let _ = rx.await;
        }));
        Ok(Master {
            url,
            config: self.config,
            handle: MasterHandle { state },
            stop: Some(tx),
            task: Some(task),
        })
    }
}

/// A running in-process master. Stops on [`Master::shutdown`] or when dropped.
pub struct Master {
    url: String,
    config: MasterConfig,
    handle: MasterHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Master {
    /// A builder with the defaults.
    pub fn builder() -> MasterBuilder {
        MasterBuilder::default()
    }

    /// Base URL, such as `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.config.admin_token
    }

    /// The terminal bearer token.
    pub fn terminal_token(&self) -> &str {
        &self.config.terminal_token
    }

    /// A bidder's bearer token.
    pub fn bidder_token(&self, name: &str) -> Option<&str> {
        self.config
            .bidders
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }

    /// A handle to drive the master directly.
    pub fn handle(&self) -> MasterHandle {
        self.handle.clone()
    }

    /// Stop serving, end every stream, stop the replicator and close the databases.
    pub async fn shutdown(mut self) {
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A cheap, cloneable handle that drives a master without HTTP: the same store paths
/// the HTTP handlers use.
#[derive(Clone)]
pub struct MasterHandle {
    state: AppState,
}

impl MasterHandle {
    /// Create or replace a lot.
    pub async fn put_lot(&self, id: &str, input: LotInput) -> Result<Lot, StoreError> {
        Ok(self.state.store.put_lot(id, input).await?.0.lot)
    }

    /// Change a lot's status.
    pub async fn set_status(&self, id: &str, status: LotStatus) -> Result<Lot, StoreError> {
        Ok(self.state.store.set_status(id, status).await?.lot)
    }

    /// Create or change a lane's settings.
    pub async fn set_lane(
        &self,
        lane: &str,
        settings: lotsync::protocol::LaneSettings,
    ) -> Result<lotsync::protocol::Lane, StoreError> {
        self.state.store.set_lane(lane, settings).await
    }

    /// Place a bid and/or a maximum as `bidder` (no token needed).
    pub async fn bid(
        &self,
        bidder: &str,
        id: &str,
        request: lotsync::protocol::BidRequest,
    ) -> Result<lotsync::protocol::BidReceipt, StoreError> {
        Ok(self
            .state
            .store
            .bid(bidder, id, request, None)
            .await?
            .receipt)
    }

    /// Place a bid as `bidder` (no token needed).
    pub async fn place_bid(
        &self,
        bidder: &str,
        id: &str,
        amount: Money,
    ) -> Result<Bid, StoreError> {
        Ok(self
            .state
            .store
            .place_bid(bidder, id, amount, None)
            .await?
            .bid)
    }

    /// Every lot in the replica, ordered by id.
    pub async fn replica_lots(&self) -> Result<Vec<Lot>, StoreError> {
        Ok(self.state.store.replica_lots(None).await?.1)
    }

    /// Every lot in the primary, ordered by id.
    pub async fn primary_lots(&self) -> Result<Vec<Lot>, StoreError> {
        self.state.store.primary_lots().await
    }

    /// What is up and what is down, as `/healthz` reports it.
    pub async fn health(&self) -> crate::store::Health {
        self.state
            .store
            .health(crate::server::HEALTH_PROBE_TIMEOUT)
            .await
    }

    /// Primary head, replica position and lag.
    pub fn replication(&self) -> ReplicationStatus {
        self.state.replication()
    }

    /// Last sequence committed.
    pub fn head(&self) -> Seq {
        self.state.store.log_tail().head()
    }

    /// Progress of the cache warmer: a watch whose `changed()` completes after each
    /// cache write (it never changes when the master runs without memcached).
    pub fn cache_warmer_progress(
        &self,
    ) -> tokio::sync::watch::Receiver<lotsync::cache::WarmerStats> {
        self.state.warmer_progress.subscribe()
    }

    /// Identity of this master's history.
    pub fn epoch(&self) -> String {
        self.state.store.epoch().to_owned()
    }

    /// Change fault injection, as `POST /v1/chaos` does.
    pub fn set_chaos(&self, patch: ChaosPatch) -> Result<ChaosSettings, ApiError> {
        if !self.state.chaos.enabled() {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                lotsync::protocol::codes::CHAOS_DISABLED,
                "fault injection is off",
            ));
        }
        let settings = self.state.chaos.apply(&patch)?;
        self.state.store.log_tail().wake();
        Ok(settings)
    }

    /// Wait until the replica has applied `seq`; false on timeout.
    pub async fn wait_replicated(&self, seq: Seq, timeout: Duration) -> bool {
        let mut applied = self.state.store.log_tail().watch_applied();
        matches!(
            tokio::time::timeout(timeout, applied.wait_for(|a| *a >= seq)).await,
            Ok(Ok(_))
        )
    }
}
