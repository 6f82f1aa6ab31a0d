//! The fault schedule of the convergence suites: random faults the master injects, the
//! patch that clears them, and a display watcher that counts versions shown out of
//! order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lotsync::Update;
use lotsync::protocol::ChaosPatch;
use rand::Rng;
use rand::rngs::StdRng;

/// Counts versions shown out of order to one display.
pub fn watch_display(
    client: &lotsync::Client,
    regressions: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    let mut display = client.subscribe();
    tokio::spawn(async move {
        let mut shown: HashMap<String, u64> = HashMap::new();
        let mut updates = 0;
        while let Some(update) = display.recv().await {
            updates += 1;
            match update {
                Update::LotChanged { lot, .. } => {
                    if shown.get(&lot.id).is_some_and(|held| *held >= lot.seq) {
                        regressions.fetch_add(1, Ordering::Relaxed);
                    }
                    shown.insert(lot.id.clone(), lot.seq);
                }
                Update::Snapshot { lots, .. }
                | Update::Resynced {
                    lots,
                    epoch_changed: false,
                    ..
                } => {
                    for lot in lots {
                        if shown.get(&lot.id).is_some_and(|held| *held > lot.seq) {
                            regressions.fetch_add(1, Ordering::Relaxed);
                        }
                        shown.insert(lot.id.clone(), lot.seq);
                    }
                }
                Update::Resynced {
                    lots,
                    epoch_changed: true,
                    ..
                } => {
                    shown = lots.iter().map(|l| (l.id.clone(), l.seq)).collect();
                }
                Update::State(_) => {}
            }
        }
        updates
    })
}

/// One random fault (or the end of one).
pub fn random_fault(rng: &mut StdRng) -> ChaosPatch {
    let mut patch = ChaosPatch::default();
    match rng.random_range(0..6) {
        0 => {
            patch.replica_lag_ms = Some(rng.random_range(0..60));
            patch.replica_lag_random = Some(rng.random_bool(0.5));
        }
        1 => {
            patch.notice_drop_rate = Some(if rng.random_bool(0.5) {
                rng.random_range(0.0..0.4)
            } else {
                0.0
            })
        }
        2 => {
            patch.fetch_error_rate = Some(if rng.random_bool(0.5) {
                rng.random_range(0.0..0.4)
            } else {
                0.0
            })
        }
        3 => {
            patch.fetch_delay_ms = Some(if rng.random_bool(0.5) {
                rng.random_range(0..80)
            } else {
                0
            })
        }
        4 => patch.cut_streams = Some(true),
        _ => patch.pause_replicator = Some(rng.random_bool(0.4)),
    }
    patch
}

/// Every fault off.
pub fn all_clear() -> ChaosPatch {
    ChaosPatch {
        replica_lag_ms: Some(0),
        replica_lag_random: Some(false),
        notice_drop_rate: Some(0.0),
        fetch_error_rate: Some(0.0),
        fetch_delay_ms: Some(0),
        cut_streams: None,
        pause_replicator: Some(false),
        pause_publisher: Some(false),
    }
}

/// One random fault of a master publishing to JetStream: any of [`random_fault`]'s, or
/// publishing paused (or resumed), so notices reach the stream late and in bursts.
pub fn random_jetstream_fault(rng: &mut StdRng) -> ChaosPatch {
    if rng.random_bool(0.25) {
        ChaosPatch {
            pause_publisher: Some(rng.random_bool(0.5)),
            ..ChaosPatch::default()
        }
    } else {
        random_fault(rng)
    }
}
