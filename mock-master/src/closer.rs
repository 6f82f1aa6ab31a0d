//! The closer: opens scheduled lots at `starts_at` and closes open lots at `ends_at`
//! (then settles them as sold or passed). Each of these is an ordinary operation in the
//! log, so terminals hear about it like any other change.

use std::time::Duration;

use chrono::Utc;

use crate::server::AppState;

/// How often due lots are looked for: the most a close can lag its end time.
pub const TICK: Duration = Duration::from_millis(100);

/// Run until shutdown.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.shutdown.cancelled() => return,
        }
        match state.store.run_due(Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(operations = n, "opened or closed lots"),
            // The store logs its own outages once; do not repeat them every tick.
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "closing due lots waits for the database")
            }
            Err(e) => tracing::warn!(error = %e, "closing due lots failed"),
        }
    }
}
