//! The application: shared state, the router, and the serve loop with graceful shutdown.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use lotsync::protocol::ReplicationStatus;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Tokens;
use crate::chaos::Chaos;
use crate::config::MasterConfig;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreOptions};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = lotsync::serve::BODY_LIMIT;

/// Everything the handlers and background tasks share.
pub struct Shared {
    /// The settings the master started with.
    pub config: MasterConfig,
    /// Primary, log, replica.
    pub store: Store,
    /// Fault injection.
    pub chaos: Arc<Chaos>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Bearer tokens and their roles.
    pub tokens: Tokens,
    /// Cancelled once at shutdown; every task and stream watches it.
    pub shutdown: CancellationToken,
    /// Progress of the cache warmer (`--memcached`); stays at zero without one.
    pub warmer_progress: tokio::sync::watch::Sender<lotsync::cache::WarmerStats>,
    /// What the JetStream publisher is doing (`--nats`); idle without one.
    pub jetstream: crate::nats::status::PublisherStatus,
}

/// A cheap, cloneable handle on the master's shared state.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Open the store and build the state for `config`.
    pub fn open(config: MasterConfig) -> Result<AppState, StoreError> {
        config
            .validate()
            .map_err(|e| StoreError::Invalid(lotsync::protocol::FieldError::new("config", e)))?;
        let chaos = Arc::new(Chaos::new(
            config.chaos.is_some(),
            config.chaos.clone().unwrap_or_default(),
            config.seed,
        ));
        let metrics = Arc::new(Metrics::default());
        let options = StoreOptions::from(&config);
        let store = Store::open(&options, chaos.clone(), metrics.clone())?;
        if config.nats.is_some() {
            // Nothing is pruned before the publisher has found where its stream ends.
            store.log_tail().hold_from(0);
        }
        Ok(AppState(Arc::new(Shared {
            tokens: Tokens::from_config(&config),
            config,
            store,
            chaos,
            metrics,
            shutdown: CancellationToken::new(),
            warmer_progress: tokio::sync::watch::Sender::new(Default::default()),
            jetstream: Default::default(),
        })))
    }

    /// The JetStream publisher's progress, when the master publishes (`--nats`).
    pub fn jetstream_health(&self) -> Option<crate::nats::status::JetStreamHealth> {
        self.config.nats.as_ref()?;
        let tail = self.store.log_tail();
        Some(self.jetstream.report(
            tail.head(),
            |seq| {
                tail.at_of(seq)
                    .map(|at| (chrono::Utc::now() - at).to_std().unwrap_or_default())
            },
            self.config.replication_stall,
        ))
    }

    /// Primary head, replica position and lag now.
    pub fn replication(&self) -> ReplicationStatus {
        let notices = self.store.log_tail();
        let (head, applied) = (notices.head(), notices.applied());
        let lag_ms = if applied < head {
            notices
                .at_of(applied + 1)
                .map_or(0, |at| (Utc::now() - at).num_milliseconds().max(0) as u64)
        } else {
            0
        };
        ReplicationStatus {
            epoch: notices.epoch().to_owned(),
            primary_head: head,
            replica_applied: applied,
            lag_ops: head.saturating_sub(applied),
            lag_ms,
        }
    }
}

/// The router: every route of every role, the body limit, the JSON fallbacks and the
/// request bounds.
pub fn app(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi));
    let router = crate::http::admin::routes(router);
    let router = crate::http::bidder::routes(router);
    let router = crate::http::terminal::routes(router);
    lotsync::serve::finish(router, state)
}

/// Longest `/healthz` waits for a database to answer its probe.
pub const HEALTH_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /healthz`: 200 `{"status": "ok", ...}` when the primary, the replica, the
/// writer and the replicator are up, replication is not stalled and (with `--nats`)
/// the JetStream publisher keeps up; otherwise 503 `{"status": "unavailable", "down":
/// [...], ...}` naming what is wrong, with Retry-After. A readiness check: a master that
/// answers 503 here still serves what it can (notices, and fetches while the replica is
/// up) and recovers by itself.
async fn healthz(State(state): State<AppState>) -> axum::response::Response {
    let health = state.store.health(HEALTH_PROBE_TIMEOUT).await;
    let mut down = health.down();
    let jetstream = state.jetstream_health();
    if jetstream.as_ref().is_some_and(|j| j.stalled) {
        down.push("jetstream");
    }
    let mut body = serde_json::json!({
        "status": if down.is_empty() { "ok" } else { "unavailable" },
        "down": down,
        "replication_lag_ms": health.replication_lag.as_millis().min(u128::from(u64::MAX)) as u64,
    });
    if let Some(jetstream) = jetstream {
        body["jetstream"] = serde_json::json!(jetstream);
    }
    let body = Json(body);
    if down.is_empty() {
        return body.into_response();
    }
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(
            header::RETRY_AFTER,
            crate::store::error::RETRY_AFTER_SECS.to_string(),
        )],
        body,
    )
        .into_response()
}

async fn metrics(
    _scraper: crate::auth::MetricsAuth,
    State(state): State<AppState>,
) -> impl IntoResponse {
    let text = state.metrics.render(&state.replication());
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text)
}

async fn openapi() -> Json<serde_json::Value> {
    Json(lotsync::serve::openapi::master_document())
}

/// Serve `state` on `listener` until `shutdown` completes: start the closer (and the
/// demo and bots when configured), serve HTTP, then stop streams, tasks and the store.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::closer::run(state.clone()));
    if state.config.demo {
        tasks.spawn(crate::demo::run_auction(state.clone()));
    }
    for i in 0..state.config.simulated_bidders {
        tasks.spawn(crate::demo::run_bot(state.clone(), i));
    }
    if !state.config.memcached.is_empty() {
        let url = format!("http://{}", listener.local_addr()?);
        if let Some(warmer) = crate::cache_tier::start(&state, url) {
            tasks.spawn(crate::cache_tier::run(state.clone(), warmer));
        }
    }
    if state.config.nats.is_some() {
        tasks.spawn(crate::nats::publisher::run(state.clone()));
    }
    let signal = {
        let token = token.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = token.cancelled() => {}
            }
            tracing::info!("shutting down");
            token.cancel();
        }
    };
    let result = lotsync::serve::serve(
        listener,
        app(state.clone()),
        &state.config.limits,
        state.metrics.serve.clone(),
        signal,
    )
    .await;
    token.cancel();
    while tasks.join_next().await.is_some() {}
    state.store.shutdown().await;
    result
}

/// Open a master for `config` and serve it on `listener` until `shutdown` completes.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// mock_master::run(mock_master::MasterConfig::default(), listener, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn run(
    config: MasterConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let state = AppState::open(config)?;
    serve(state, listener, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_route_in_the_table_is_served() {
        let state = AppState::open(crate::MasterConfig::default()).unwrap();
        let router = app(state.clone());
        for (method, path) in lotsync::serve::openapi::MASTER_ROUTES {
            let uri = path.replace("{id}", "lot-1");
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_ne!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("no such route"),
                "{method} {path} is not routed"
            );
        }
        state.store.shutdown().await;
    }
}
