//! What a terminal-API server serves from: the [`Source`] trait.
//!
//! Two implementations exist: the master's (its operation log's tail and its replica
//! database) and the terminal server's (the notices it relayed and its mirror). The
//! router, the notice stream, the `min_seq` waits, snapshots and the change log are
//! written once, over this trait.

use std::future::Future;
use std::sync::Arc;

use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::limits::Limits;
use super::log::NoticeLog;
use super::metrics::ServeMetrics;
use crate::protocol::{Lot, Seq};

/// Lots read together, consistent as of `seq` (or newer, lot by lot).
#[derive(Debug, Clone, PartialEq)]
pub struct LotsRead {
    /// Epoch of the history the lots belong to.
    pub epoch: String,
    /// Every change up to this sequence is reflected.
    pub seq: Seq,
    /// The lots found, ordered by id.
    pub lots: Vec<Lot>,
    /// Requested ids that do not exist.
    pub missing: Vec<String>,
}

/// The data and policy behind one terminal-API server.
///
/// Implement it to serve the terminal protocol from your own store; see
/// [`router`](super::router).
pub trait Source: Clone + Send + Sync + 'static {
    /// The notices, their history and the `head`/`ready` positions.
    fn log(&self) -> &Arc<NoticeLog>;

    /// Lots as of at least [`NoticeLog::ready`]: all of them (`ids` is `None`) or the
    /// given ids.
    fn lots(
        &self,
        ids: Option<Vec<String>>,
    ) -> impl Future<Output = Result<LotsRead, ApiError>> + Send;

    /// Check that the request may read notices and lots (401/403 otherwise).
    fn authorize(&self, parts: &Parts) -> Result<(), ApiError>;

    /// Counters this server keeps for `/metrics`.
    fn metrics(&self) -> &Arc<ServeMetrics>;

    /// Cancelled when the server shuts down: every stream ends.
    fn shutdown(&self) -> &CancellationToken;

    /// Interval between heartbeats on notice streams.
    fn heartbeat_interval(&self) -> std::time::Duration;

    /// How long a fetch waits for `ready` to reach its `min_seq`.
    fn fetch_wait(&self) -> std::time::Duration;

    /// The bounds on what clients may hold.
    fn limits(&self) -> &Limits;

    /// The highest sequence this history is known to have. A `min_seq` beyond it is
    /// refused at once: it belongs to another history. The master knows its head; a
    /// terminal server the highest its upstream announced.
    fn known_head(&self) -> Seq {
        self.log().head()
    }

    /// Whether what this server holds may be old (a terminal server cut off from its
    /// upstream). Heartbeats carry it.
    fn is_stale(&self) -> bool {
        false
    }

    /// The master's clock now (a terminal server corrects its own by what its
    /// upstream's heartbeats said).
    fn clock(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// Runs before every fetch (fault injection delays or fails it here).
    fn before_fetch(&self) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }

    /// Whether to leave out this notice (fault injection).
    fn drop_notice(&self) -> bool {
        false
    }

    /// Changes whenever every open stream must be cut (fault injection).
    fn stream_cuts(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}
