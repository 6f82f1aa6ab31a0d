//! Serving the terminal protocol (cargo feature `server`): the terminal half of
//! PROTOCOL.md, written once, for the master and for terminal servers.
//!
//! A terminal server ([`TerminalServer`]) follows a master (or another terminal server)
//! with a [`Client`](crate::Client) and serves its own terminals from the client's
//! mirror, exactly as the master serves terminal servers, so terminal servers chain
//! into a tree. The master serves the same router from its operation log and replica.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = lotsync::serve::TerminalServer::builder("http://master:8080")
//!     .token("terminal-token")
//!     .display_token("wall-token")
//!     .start()?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8090").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`source`]: the [`Source`] trait a server serves from.
//! - `ring`, `log`: [`NoticeRing`] (recent notices of one history, a plain data
//!   structure) and [`NoticeLog`] (the ring with its epoch and `head`/`ready` watches).
//! - `fetch`: lots, batches, snapshots and the change log, with `min_seq` waits.
//! - `stream`: the notice stream (resume, reset, heartbeats, inline lots).
//! - `limits`: connection, stream and request bounds, and the accept loop.
//! - `access`: display tokens and the browser cookie.
//! - `display`: the browser wall display (`/display`) and its built-in assets.
//! - `relay`: the terminal server: [`TerminalServer`], its source and bid forwarding.
//! - [`openapi`]: the OpenAPI documents of the master and of a terminal server.
//! - `error`, `metrics`: [`ApiError`] and [`ServeMetrics`].

mod access;
mod display;
mod error;
mod fetch;
mod limits;
mod log;
mod metrics;
pub mod openapi;
mod relay;
mod ring;
pub mod source;
mod stream;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;

pub use access::{Access, DISPLAY_COOKIE, Secret, bearer};
pub use error::ApiError;
pub use fetch::{MAX_BATCH_IDS, etag};
pub use limits::{Limits, init_logs, limit_requests, serve, shutdown_signal};
pub use log::NoticeLog;
pub use metrics::ServeMetrics;
pub use relay::{TerminalServer, TerminalServerBuilder};
pub use ring::{NoticeRing, Truncated};
pub use source::{LotsRead, Source};

use crate::protocol::codes;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The caller may read notices and lots (checked by [`Source::authorize`]).
#[derive(Debug)]
pub struct Reader;

impl<S: Source> FromRequestParts<S> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, source: &S) -> Result<Self, ApiError> {
        source.authorize(parts).map(|()| Reader)
    }
}

/// A lot id from the path, validated with [`crate::protocol::validate_lot_id`].
#[derive(Debug)]
pub struct LotId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for LotId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_field("id", e.body_text()))?;
        crate::protocol::validate_lot_id(&id)?;
        Ok(LotId(id))
    }
}

/// The terminal routes over `source`: `GET /v1/lots/{id}`, `GET /v1/lots`,
/// `GET /v1/changes`, `GET /v1/notices`. Add your own routes (health, metrics, writes)
/// to the router before [`finish`].
pub fn terminal_routes<S: Source>() -> Router<S> {
    Router::new()
        .route("/v1/lots/{id}", get(fetch::get_lot::<S>))
        .route("/v1/lots", get(fetch::get_lots::<S>))
        .route("/v1/changes", get(fetch::changes::<S>))
        .route("/v1/notices", get(stream::notices::<S>))
}

/// Close a router: JSON 404/405 fallbacks, the body limit, the request bounds.
pub fn finish<S: Source>(router: Router<S>, source: S) -> Router {
    let metrics = source.metrics().clone();
    let limits = source.limits().clone();
    let router = router
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::NOT_FOUND,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(source);
    limit_requests(router, &limits, metrics)
}
