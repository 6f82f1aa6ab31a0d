//! Bounds on what clients may hold, and the accept loop that enforces them.
//!
//! - Connections: past [`Limits::max_connections`] a new connection gets a plain
//!   `503` with `Retry-After` and is closed, before anything is read from it.
//! - Slow clients: a connection that has not sent its request headers within
//!   [`Limits::header_read_timeout`] is closed (slowloris).
//! - Requests: past [`Limits::max_requests`] in flight a request gets 503 at once,
//!   and a request that has not produced its response within
//!   [`Limits::request_timeout`] gets 503 (streams count only until their headers).
//! - Notice streams: past [`Limits::max_streams`] a new stream gets 503.
//!
//! Accepted sockets get TCP_NODELAY: notices are small writes on long-lived streams,
//! and Nagle's algorithm meeting delayed ACKs holds them back by tens of milliseconds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::metrics::ServeMetrics;
use crate::protocol::codes;

/// How long open connections may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The bounds a terminal-API server enforces.
///
/// ```
/// let limits = lotsync::serve::Limits { max_streams: 100, ..Default::default() };
/// assert!(limits.max_connections >= limits.max_streams);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at once.
    pub max_connections: usize,
    /// Open notice streams at once.
    pub max_streams: usize,
    /// Requests being answered at once (a stream counts until its headers are sent).
    pub max_requests: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Time a request has to produce its response.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 20_000,
            max_streams: 16_000,
            max_requests: 1_024,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// State of the request-limit middleware.
#[derive(Clone)]
struct RequestGate {
    permits: Arc<Semaphore>,
    timeout: Duration,
    metrics: Arc<ServeMetrics>,
}

/// Wrap `router` in the request bounds of `limits`.
pub fn limit_requests(router: Router, limits: &Limits, metrics: Arc<ServeMetrics>) -> Router {
    let gate = RequestGate {
        permits: Arc::new(Semaphore::new(limits.max_requests.max(1))),
        timeout: limits.request_timeout,
        metrics,
    };
    router.layer(axum::middleware::from_fn_with_state(gate, gate_request))
}

async fn gate_request(State(gate): State<RequestGate>, request: Request, next: Next) -> Response {
    let Ok(_permit) = gate.permits.try_acquire() else {
        gate.metrics.refused("requests");
        return ApiError::unavailable(codes::OVERLOADED, "too many requests at once", 1)
            .into_response();
    };
    match tokio::time::timeout(gate.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            gate.metrics.refused("request_timeout");
            ApiError::unavailable(codes::OVERLOADED, "the request took too long", 1).into_response()
        }
    }
}

/// The answer to a connection past the cap: written raw, nothing read.
fn refusal() -> Vec<u8> {
    let body = r#"{"error":{"code":"overloaded","message":"too many connections; retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serve `router` on `listener` within `limits` until `shutdown` completes, then give
/// open connections a short grace period to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    metrics: Arc<ServeMetrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1 only: every client of this protocol speaks it (EventSource included), and
    // the protocol sniffing of an HTTP/1-or-2 connection waits for a first byte with no
    // deadline, so a connection that never sends one would be held forever. Sniffing
    // also cost memory: hyper replays the sniffed bytes and grows its 8 KiB read buffer
    // to 16 KiB, about 6 KiB more resident memory per open notice stream.
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.refused("connections");
            tokio::spawn(async move {
                let mut stream = stream;
                let refuse = async {
                    stream.write_all(&refusal()).await?;
                    stream.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), refuse).await;
            });
            continue;
        };
        let connection = builder
            .serve_connection(TokioIo::new(stream), service.clone())
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM: the shutdown signal of the binaries.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Set up logs on stderr for a server binary: `RUST_LOG` (default `info`), colours only
/// on a terminal, one JSON object per line when `json`.
pub fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}
