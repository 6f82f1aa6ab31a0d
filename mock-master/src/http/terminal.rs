//! The terminal half of the API: the routes are [`lotsync::serve`]'s, written once for
//! the master and terminal servers; this module is the master's [`Source`] for them
//! (the operation log's tail and the replica database), plus `GET /v1/replication`.
//!
//! Fetches read the **replica**; `ready` is the replica's applied position, so a fetch
//! with a `min_seq` the replica has not applied waits (bounded), then answers 503.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::routing::get;
use lotsync::protocol::ReplicationStatus;
use lotsync::serve::{ApiError, Limits, LotsRead, NoticeLog, ServeMetrics, Source};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth::TerminalAuth;
use crate::server::AppState;

/// Add the terminal routes (the notice stream included) and the replication status.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .merge(lotsync::serve::terminal_routes::<AppState>())
        .route("/v1/replication", get(replication))
}

impl Source for AppState {
    fn log(&self) -> &Arc<NoticeLog> {
        self.store.log_tail().log()
    }

    async fn lots(&self, ids: Option<Vec<String>>) -> Result<LotsRead, ApiError> {
        let (seq, lots, missing) = self.store.replica_lots(ids).await?;
        Ok(LotsRead {
            epoch: self.store.epoch().to_owned(),
            seq,
            lots,
            missing,
        })
    }

    fn authorize(&self, parts: &Parts) -> Result<(), ApiError> {
        self.tokens.may_read(parts)
    }

    fn metrics(&self) -> &Arc<ServeMetrics> {
        &self.metrics.serve
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn heartbeat_interval(&self) -> Duration {
        self.config.heartbeat
    }

    fn fetch_wait(&self) -> Duration {
        self.config.fetch_wait
    }

    fn limits(&self) -> &Limits {
        &self.config.limits
    }

    async fn before_fetch(&self) -> Result<(), ApiError> {
        let (delay, fail) = self.chaos.fetch_fault();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if fail {
            return Err(ApiError::internal("injected fetch failure"));
        }
        Ok(())
    }

    fn drop_notice(&self) -> bool {
        self.chaos.drop_notice()
    }

    fn stream_cuts(&self) -> Option<watch::Receiver<u64>> {
        Some(self.chaos.cuts())
    }
}

/// `GET /v1/replication`: primary head, replica applied, lag.
async fn replication(
    _auth: TerminalAuth,
    State(state): State<AppState>,
) -> Json<ReplicationStatus> {
    Json(state.replication())
}
