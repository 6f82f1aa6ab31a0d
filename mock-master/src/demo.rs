//! Demo: a catalogue of used cars, an auction driver that keeps rounds going, and bots.

use crate::server::AppState;

/// Keep an auction running until shutdown.
pub async fn run_auction(state: AppState) {
    state.shutdown.cancelled().await;
}

/// One bot bidder.
pub async fn run_bot(state: AppState, _index: usize) {
    state.shutdown.cancelled().await;
}
