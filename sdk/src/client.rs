//! The public handle: a started client and what it offers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::error::{BidError, BuildError};
use crate::fanout::Subscription;
use crate::fetcher::{DirtySet, Fetcher};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::mirror::Mirror;
use crate::options::{ClientBuilder, Options};
use crate::protocol::{Bid, BidReceipt, BidRequest, MaxStatus, Money};
use crate::state::{ConnectionState, StatePublisher};
use crate::sync::SyncTask;
use crate::transport::ReqwestTransport;

/// Run a background task; if it panics, or ends before shutdown, say so in the state
/// (`Failed`) and the logs instead of going silently dead.
async fn supervised(
    name: &'static str,
    task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    state: Arc<StatePublisher>,
    cancel: CancellationToken,
) {
    use futures::FutureExt;
    let outcome = std::panic::AssertUnwindSafe(task).catch_unwind().await;
    if cancel.is_cancelled() {
        return;
    }
    match outcome {
        Err(_) => tracing::error!(
            task = name,
            "a background task panicked; the mirror no longer updates"
        ),
        Ok(()) => tracing::error!(task = name, "a background task ended before shutdown"),
    }
    state.fail();
}

/// A running terminal-server client: it mirrors every lot of a master and hands
/// changes to displays. Cheap to clone; the background tasks stop when the last clone
/// is dropped or [`Client::shutdown`] is called.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = lotsync::Client::builder("http://127.0.0.1:8080")
///     .token("terminal-token")
///     .build()?;
/// client.synced().await;
/// let mut display = client.subscribe();
/// while let Some(update) = display.recv().await {
///     println!("{update:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    api: Api,
    mirror: Mirror,
    metrics: Arc<Metrics>,
    state: watch::Receiver<ConnectionState>,
    synced: watch::Receiver<bool>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.mirror.shared().fanout.close();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.inner.state.borrow())
            .field("lots", &self.inner.mirror.len())
            .field("seq", &self.inner.mirror.seq())
            .finish()
    }
}

impl Client {
    /// Start configuring a client for the master at `url` (`http://` or `https://`).
    ///
    /// ```
    /// let builder = lotsync::Client::builder("https://master.example:8443");
    /// ```
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    pub(crate) fn start(
        options: Options,
        cache: Option<crate::cache::Cache>,
    ) -> Result<Client, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let http_builder = || -> Result<reqwest::ClientBuilder, BuildError> {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(options.fetch_concurrency * 2)
                // Below the 30 s a lotsync server gives an idle connection, so a pooled
                // connection is never reused just as the server closes it.
                .pool_idle_timeout(Duration::from_secs(20))
                .tcp_nodelay(true);
            for pem in &options.root_certificates {
                let certificate =
                    reqwest::Certificate::from_pem(pem).map_err(|e| BuildError::InvalidOption {
                        option: "add_root_certificate",
                        reason: e.to_string(),
                    })?;
                builder = builder.add_root_certificate(certificate);
            }
            Ok(builder)
        };
        let http = http_builder()?.build().map_err(BuildError::http)?;
        // The stream must not time out as a whole; only fetches and bids do.
        let fetch_http = http_builder()?
            .timeout(options.request_timeout)
            .build()
            .map_err(BuildError::http)?;
        let api = Api::new(fetch_http, &options);
        let transport = ReqwestTransport::new(http, options.max_event_bytes);
        let mirror = Mirror::default();
        let metrics = Arc::new(Metrics::new(mirror.shared().fanout.skipped_counter()));
        let dirty = Arc::new(DirtySet::default());
        let cancel = CancellationToken::new();
        let (state, state_rx) = StatePublisher::new(mirror.clone(), options.degraded_after);
        let (synced_tx, synced_rx) = watch::channel(false);

        let fetcher = Fetcher {
            api: api.clone(),
            mirror: mirror.clone(),
            dirty: dirty.clone(),
            metrics: metrics.clone(),
            batch_size: options.batch_size,
            concurrency: options.fetch_concurrency,
            retry_base: options.retry_base,
            retry_max: options.retry_max,
            state: state.clone(),
            cache,
            cache_grace: options.cache_grace,
        };
        let sync = SyncTask::new(
            api.clone(),
            transport,
            mirror.clone(),
            dirty,
            metrics.clone(),
            options,
            state.clone(),
            synced_tx,
            cancel.clone(),
        );
        let supervise =
            |name: &'static str, task| supervised(name, task, state.clone(), cancel.clone());
        let tasks = vec![
            runtime.spawn(supervise("fetcher", Box::pin(fetcher.run(cancel.clone())))),
            runtime.spawn(supervise("sync", Box::pin(sync.run()))),
        ];
        Ok(Client {
            inner: Arc::new(Inner {
                api,
                mirror,
                metrics,
                state: state_rx,
                synced: synced_rx,
                cancel,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Read access to the mirrored lots.
    pub fn mirror(&self) -> Mirror {
        self.inner.mirror.clone()
    }

    /// Subscribe a display. It receives the current lots first, then every change.
    /// A display that falls behind skips to the newest value of each lot.
    pub fn subscribe(&self) -> Subscription {
        self.inner.mirror.subscribe()
    }

    /// The connection state, as a watch receiver (`borrow()` it or await `changed()`).
    ///
    /// Copy the state out rather than keeping the borrow (or the `Ref` that
    /// `wait_for` returns): while one is held the client cannot announce its next
    /// state, and its tasks wait for it.
    ///
    /// ```no_run
    /// # async fn demo(client: lotsync::Client) {
    /// let mut state = client.state();
    /// while state.changed().await.is_ok() {
    ///     let now = *state.borrow_and_update();
    ///     println!("connection: {now}");
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.clone()
    }

    /// Wait until the first snapshot is in the mirror.
    pub async fn synced(&self) {
        let mut synced = self.inner.synced.clone();
        // An error means the client shut down: nothing more to wait for.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Wait until the client is live, or `timeout` passes. Returns whether it is live.
    pub async fn wait_live(&self, timeout: Duration) -> bool {
        let mut state = self.inner.state.clone();
        tokio::time::timeout(timeout, state.wait_for(ConnectionState::is_live))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A copy of the client's counters and latency percentiles.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// The live counters (for a server that renders them with its own).
    #[cfg(feature = "server")]
    pub(crate) fn metrics_handle(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// Place a bid as the bidder whose token was configured. The attempt carries one
    /// idempotency key across its retries, so it is never placed twice.
    pub async fn place_bid(&self, lot_id: &str, amount: Money) -> Result<Bid, BidError> {
        let receipt = self
            .inner
            .api
            .place_bid(lot_id, BidRequest::amount(amount))
            .await?;
        Ok(receipt.bid)
    }

    /// Leave a confidential maximum (proxy bid): the master bids for this bidder, one
    /// step at a time and only as far as needed to lead, up to `max_amount`. With
    /// `amount`, that bid is placed first. Calling it again raises the maximum (or
    /// lowers it, never below the amount the bidder leads with). Nobody else ever sees
    /// the maximum; the receipt says whether the bidder leads and at what price.
    ///
    /// ```no_run
    /// # async fn demo(client: lotsync::Client) -> Result<(), lotsync::BidError> {
    /// let receipt = client.place_max_bid("lot-1", 1_800_000, None).await?;
    /// if receipt.leading {
    ///     println!("leading at {} (up to {:?})", receipt.current_price, receipt.max_amount);
    /// } else {
    ///     println!("outbid: the price is already {}", receipt.current_price);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn place_max_bid(
        &self,
        lot_id: &str,
        max_amount: Money,
        amount: Option<Money>,
    ) -> Result<BidReceipt, BidError> {
        let request = BidRequest {
            amount,
            max_amount: Some(max_amount),
        };
        self.inner.api.place_bid(lot_id, request).await
    }

    /// Place a bid, a maximum, or both ([`BidRequest`]), with one idempotency key across
    /// retries; the receipt says where the bidder stands afterwards.
    ///
    /// ```no_run
    /// # async fn demo(client: lotsync::Client) -> Result<(), lotsync::BidError> {
    /// use lotsync::protocol::BidRequest;
    /// let receipt = client.bid("lot-1", BidRequest::amount(1_250_000)).await?;
    /// assert_eq!(receipt.bid.amount, 1_250_000);
    /// # Ok(()) }
    /// ```
    pub async fn bid(&self, lot_id: &str, request: BidRequest) -> Result<BidReceipt, BidError> {
        self.inner.api.place_bid(lot_id, request).await
    }

    /// This bidder's own maximum on a lot, whether they lead, and the next bid.
    ///
    /// ```no_run
    /// # async fn demo(client: lotsync::Client) -> Result<(), lotsync::BidError> {
    /// let mine = client.my_max("lot-1").await?;
    /// println!("max {:?}, leading: {}", mine.max_amount, mine.leading);
    /// # Ok(()) }
    /// ```
    pub async fn my_max(&self, lot_id: &str) -> Result<MaxStatus, BidError> {
        self.inner.api.max_status(lot_id).await
    }

    /// Stop every background task and wait for them to end. Displays receive `None`.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        self.inner.mirror.shared().fanout.close();
    }

    /// Serve the metrics for Prometheus at `http://ADDR/metrics` until the client shuts
    /// down. Returns the address bound (useful with port 0).
    ///
    /// ```no_run
    /// # async fn demo(client: lotsync::Client) -> std::io::Result<()> {
    /// let addr = client.export_metrics("127.0.0.1:9464".parse().unwrap()).await?;
    /// println!("scrape http://{addr}/metrics");
    /// # Ok(()) }
    /// ```
    pub async fn export_metrics(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<std::net::SocketAddr> {
        let (listener, bound) = crate::exporter::bind(addr).await?;
        let task = tokio::spawn(crate::exporter::serve(
            listener,
            self.inner.metrics.clone(),
            self.inner.cancel.clone(),
        ));
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        Ok(bound)
    }

    /// Whether [`Client::shutdown`] was called or the tasks stopped.
    pub fn is_closed(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_as_failed() {
        let mirror = Mirror::default();
        let (state, mut rx) = StatePublisher::new(mirror.clone(), Duration::from_secs(5));
        state.set_stream(ConnectionState::Live);
        let task = supervised(
            "test",
            Box::pin(async { panic!("a bug") }),
            state.clone(),
            CancellationToken::new(),
        );
        tokio::spawn(task).await.unwrap();
        assert_eq!(*rx.borrow_and_update(), ConnectionState::Failed);
        assert!(mirror.is_stale());
        state.set_stream(ConnectionState::Live);
        assert_eq!(*rx.borrow(), ConnectionState::Failed, "failed stays failed");
    }

    #[tokio::test]
    async fn a_task_ending_at_shutdown_is_not_a_failure() {
        let (state, rx) = StatePublisher::new(Mirror::default(), Duration::from_secs(5));
        state.set_stream(ConnectionState::Live);
        let cancel = CancellationToken::new();
        cancel.cancel();
        supervised("test", Box::pin(async {}), state, cancel).await;
        assert_eq!(*rx.borrow(), ConnectionState::Live);
    }
}
