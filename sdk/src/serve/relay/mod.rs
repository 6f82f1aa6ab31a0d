//! The terminal server: a [`Client`] that follows a master (or another terminal server)
//! and serves its own terminals the terminal half of the protocol from its mirror.
//!
//! One upstream subscription, one fetch per change, any number of downstream streams:
//! master load grows with the number of terminal servers, not of screens.

mod bids;
mod source;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::error::BuildError;
use crate::options::ClientBuilder;
use crate::serve::{Access, Limits, Source};
use crate::{Client, ConnectionState};
use source::{Relay, RelaySource};

/// Default number of recent notices kept for resuming downstream streams.
pub const DEFAULT_RING: usize = 10_000;

/// Configures a [`TerminalServer`]. Every setter takes and returns the builder.
///
/// ```no_run
/// # fn demo() -> Result<(), lotsync::BuildError> {
/// use std::time::Duration;
/// let server = lotsync::serve::TerminalServer::builder("http://master:8080")
///     .token("terminal-token")
///     .display_token("wall-1")
///     .display_token("wall-2")
///     .ring_capacity(50_000)
///     .heartbeat(Duration::from_secs(2))
///     .start()?;
/// # Ok(()) }
/// ```
pub struct TerminalServerBuilder {
    client: ClientBuilder,
    upstream: String,
    display_tokens: Vec<String>,
    ring: usize,
    heartbeat: Duration,
    fetch_wait: Duration,
    limits: Limits,
}

impl std::fmt::Debug for TerminalServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalServerBuilder")
            .field("client", &self.client)
            .field("display_tokens", &self.display_tokens.len())
            .field("ring", &self.ring)
            .field("heartbeat", &self.heartbeat)
            .field("fetch_wait", &self.fetch_wait)
            .field("limits", &self.limits)
            .finish()
    }
}

impl TerminalServerBuilder {
    /// The upstream client's options (token, memcached, inline lots...).
    pub fn client(mut self, configure: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Self {
        self.client = configure(self.client);
        self
    }

    /// The upstream terminal token (shortcut for `.client(|c| c.token(t))`).
    pub fn token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.client(|c| c.token(token))
    }

    /// A token this server's own terminals may present (repeat for several).
    pub fn display_token(mut self, token: impl Into<String>) -> Self {
        self.display_tokens.push(token.into());
        self
    }

    /// Recent notices kept for resuming downstream streams (default 10,000).
    pub fn ring_capacity(mut self, notices: usize) -> Self {
        self.ring = notices;
        self
    }

    /// Interval between heartbeats on downstream streams (default 2 s).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long a downstream fetch waits for a `min_seq` (default 2 s).
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = wait;
        self
    }

    /// Bounds on downstream connections, streams and requests.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Validate and start following the upstream (serve it with
    /// [`TerminalServer::serve`] or [`TerminalServer::router`]). Needs a tokio runtime.
    pub fn start(self) -> Result<TerminalServer, BuildError> {
        let invalid = |option: &'static str, reason: &str| BuildError::InvalidOption {
            option,
            reason: reason.to_owned(),
        };
        if self.display_tokens.is_empty() {
            return Err(invalid("display_token", "at least one is needed"));
        }
        if self.display_tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid("display_token", "must not be empty"));
        }
        if !(16..=10_000_000).contains(&self.ring) {
            return Err(invalid(
                "ring_capacity",
                "between 16 and 10,000,000 notices",
            ));
        }
        let sane = Duration::from_millis(10)..=Duration::from_secs(3600);
        if !sane.contains(&self.heartbeat) {
            return Err(invalid("heartbeat", "between 10 ms and an hour"));
        }
        if self.fetch_wait > Duration::from_secs(60) {
            return Err(invalid("fetch_wait", "at most 60 s"));
        }
        if self.limits.max_streams == 0 || self.limits.max_connections == 0 {
            return Err(invalid("limits", "connections and streams must be allowed"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .tcp_nodelay(true)
            .build()
            .map_err(crate::BuildError::http)?;
        let relay = Arc::new(Relay::new(
            self.ring,
            Arc::new(Access::new(self.display_tokens)),
            self.limits,
            self.heartbeat,
            self.fetch_wait,
            http,
            self.upstream,
        ));
        let client = self.client.observer(relay.clone()).build()?;
        let _ = relay.mirror.set(client.mirror());
        let _ = relay.state.set(client.state());
        let mut registry = prometheus_client::registry::Registry::with_prefix("lotsync");
        client.metrics_handle().register(&mut registry);
        relay
            .metrics
            .register(registry.sub_registry_with_prefix("downstream"));
        let _ = relay.registry.set(registry);
        // Lots that arrive by fetch release the notices waiting for them.
        let mut changes = client.mirror().watch_changes();
        let follower = relay.clone();
        let stop = relay.shutdown.clone();
        tokio::spawn(async move {
            loop {
                follower.advance();
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break },
                    _ = stop.cancelled() => break,
                }
            }
        });
        Ok(TerminalServer {
            client,
            source: RelaySource(relay),
        })
    }
}

/// A running terminal server: its upstream client and the router it serves.
#[derive(Clone)]
pub struct TerminalServer {
    client: Client,
    source: RelaySource,
}

impl std::fmt::Debug for TerminalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalServer")
            .field("client", &self.client)
            .field("log", &self.source.0.log)
            .finish()
    }
}

impl TerminalServer {
    /// Start configuring a terminal server following the master (or terminal server) at
    /// `upstream`.
    pub fn builder(upstream: impl Into<String>) -> TerminalServerBuilder {
        let upstream = upstream.into();
        TerminalServerBuilder {
            client: Client::builder(upstream.clone()),
            upstream: upstream.trim_end_matches('/').to_owned(),
            display_tokens: Vec::new(),
            ring: DEFAULT_RING,
            heartbeat: Duration::from_secs(2),
            fetch_wait: Duration::from_secs(2),
            limits: Limits::default(),
        }
    }

    /// The upstream client (its mirror, state and metrics).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The history served downstream and its head (every notice up to it is relayed
    /// and its lot is in the mirror).
    pub fn position(&self) -> (String, crate::protocol::Seq) {
        self.source.0.log.position()
    }

    /// Wait until everything up to `seq` is served downstream, or `timeout` passes.
    /// Returns whether it got there.
    pub async fn wait_served(&self, seq: crate::protocol::Seq, timeout: Duration) -> bool {
        let mut ready = self.source.0.log.watch_ready();
        tokio::time::timeout(timeout, ready.wait_for(|r| *r >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The router: the terminal routes, bids forwarded upstream, `/healthz`, `/metrics`,
    /// `/openapi.json`, and the wall display (`/display`).
    pub fn router(&self) -> Router {
        let routes = crate::serve::terminal_routes::<RelaySource>()
            .route("/v1/lots/{id}/bids", post(bids::forward_bid))
            .route("/v1/lots/{id}/max", get(bids::forward_max))
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .route("/openapi.json", get(openapi))
            .merge(crate::serve::display::routes(self.source.0.access.clone()));
        crate::serve::finish(routes, self.source.clone())
    }

    /// Serve on `listener` until `shutdown` completes, then stop every stream and the
    /// upstream client.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let relay = &self.source.0;
        let stop = relay.shutdown.clone();
        let signal = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
        };
        let stop = relay.shutdown.clone();
        let result = crate::serve::serve(
            listener,
            self.router(),
            &relay.limits,
            relay.metrics.clone(),
            async move {
                signal.await;
                // Streams end now, so the graceful shutdown does not wait for them.
                stop.cancel();
            },
        )
        .await;
        self.shutdown().await;
        result
    }

    /// Stop serving streams and stop the upstream client.
    pub async fn shutdown(&self) {
        self.source.0.shutdown.cancel();
        self.client.shutdown().await;
    }
}

async fn healthz(State(source): State<RelaySource>) -> impl IntoResponse {
    let relay = &source.0;
    let state = relay.connection();
    let (epoch, head) = relay.log.position();
    let synced = relay.synced().is_some();
    let status = match (synced, state) {
        (false, _) => "starting",
        (true, ConnectionState::Live) => "ok",
        (true, _) => "stale",
    };
    let body = serde_json::json!({
        "status": status,
        "upstream": state.to_string(),
        "epoch": epoch,
        "head": head,
        "lots": relay.mirror.get().map_or(0, |m| m.len()),
        "streams": relay.metrics.streams(),
    });
    // Stale data is still served (screens show it marked stale); only a server with
    // nothing to serve is unhealthy.
    let code = if synced {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(source): State<RelaySource>) -> impl IntoResponse {
    let relay = &source.0;
    // The upstream client's own metrics and what this server served downstream, from
    // one registry (built with the client, which exists before the server listens).
    let mut text = String::new();
    match relay.registry.get() {
        Some(registry) => {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, registry);
        }
        None => relay.metrics.render("lotsync_downstream", &mut text),
    }
    (
        [(header::CONTENT_TYPE, crate::serve::metrics::CONTENT_TYPE)],
        text,
    )
}

async fn openapi() -> impl IntoResponse {
    Json(crate::serve::openapi::terminal_server_document())
}

// The source is what the generic handlers are instantiated with.
const _: fn() = || {
    fn is_source<S: Source>() {}
    is_source::<RelaySource>();
};
