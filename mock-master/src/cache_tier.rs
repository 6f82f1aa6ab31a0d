//! The Memcache cache server of claim 6: after storing, the master also notifies a
//! cache warmer, which fetches the changed lots the way a terminal server does and
//! keeps them in memcached for terminal servers to read.
//!
//! The warmer is the SDK's [`lotsync::cache::Warmer`] following this master over its
//! own HTTP API with the terminal token, so the cache sees exactly what terminals see.

use lotsync::cache::{Cache, Warmer};

use crate::server::AppState;

/// Warm the configured memcached servers from the master at `url` until shutdown.
pub async fn run(state: AppState, url: String) {
    let cache = match Cache::new(state.config.memcached.clone()) {
        Ok(cache) => cache,
        Err(error) => {
            tracing::error!(%error, "cache tier disabled");
            return;
        }
    };
    let client = match lotsync::Client::builder(url)
        .token(state.config.terminal_token.clone())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cache tier disabled");
            return;
        }
    };
    let warmer = Warmer::start(client, cache);
    tracing::info!(servers = ?state.config.memcached, "cache warmer started");
    state.shutdown.cancelled().await;
    let stats = warmer.stats();
    warmer.shutdown().await;
    tracing::info!(?stats, "cache warmer stopped");
}
