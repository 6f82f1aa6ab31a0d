//! The Memcache cache server of claim 6: after storing, the master also notifies a
//! cache warmer, which fetches the changed lots the way a terminal server does and
//! keeps them in memcached for terminal servers to read.
//!
//! The warmer is the SDK's [`lotsync::cache::Warmer`] following this master over its
//! own HTTP API with the terminal token, so the cache sees exactly what terminals see.

use lotsync::cache::{Cache, Warmer};

use crate::server::AppState;

/// Start warming the configured memcached servers from the master at `url`. `None`
/// (logged) when it cannot start.
pub fn start(state: &AppState, url: String) -> Option<Warmer> {
    let cache = Cache::new(state.config.memcached.clone())
        .map_err(|error| tracing::error!(%error, "cache tier disabled"))
        .ok()?;
    let client = lotsync::Client::builder(url)
        .token(state.config.terminal_token.clone())
        .build()
        .map_err(|error| tracing::error!(%error, "cache tier disabled"))
        .ok()?;
    let warmer = Warmer::start(client, cache);
    tracing::info!(servers = ?state.config.memcached, "cache warmer started");
    Some(warmer)
}

/// Keep `warmer` running until the master shuts down, publishing its progress on the
/// master's state.
pub async fn run(state: AppState, warmer: Warmer) {
    let mut progress = warmer.progress();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            changed = progress.changed() => {
                if changed.is_err() {
                    break;
                }
                state.warmer_progress.send_replace(*progress.borrow_and_update());
            }
        }
    }
    let stats = warmer.stats();
    warmer.shutdown().await;
    tracing::info!(?stats, "cache warmer stopped");
}
