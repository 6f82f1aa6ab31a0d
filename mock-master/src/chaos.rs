//! Fault injection for QA: replica lag, a paused replicator, dropped notices, failing or
//! slow fetches, and cut notice streams.
//!
//! Only active when the master starts with `--chaos`; the admin changes the settings at
//! run time with `POST /v1/chaos`. Randomness comes from one RNG, seeded with `--seed`
//! when given, so a run can be replayed.

use std::sync::Mutex;
use std::time::Duration;

use lotsync::protocol::{ChaosPatch, ChaosSettings, FieldError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

/// Longest injected delay. A longer one would outlive the patch that turns it off: a
/// replicator asleep for an hour does not notice that the lag went back to 0.
pub const MAX_DELAY_MS: u64 = lotsync::protocol::MAX_FAULT_DELAY_MS;

/// The fault-injection switchboard.
pub struct Chaos {
    enabled: bool,
    settings: Mutex<ChaosSettings>,
    /// One RNG for every random decision, so a seed replays a run.
    rng: Mutex<StdRng>,
    /// Bumped to cut every open notice stream.
    cuts: watch::Sender<u64>,
    /// Whether publishing to JetStream is paused (the publisher waits on it).
    publisher: watch::Sender<bool>,
}

impl Chaos {
    /// Fault injection, enabled or not, starting with `initial`.
    pub fn new(enabled: bool, initial: ChaosSettings, seed: Option<u64>) -> Chaos {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let paused = enabled && initial.pause_publisher;
        Chaos {
            enabled,
            publisher: watch::Sender::new(paused),
            settings: Mutex::new(if enabled {
                initial
            } else {
                ChaosSettings::default()
            }),
            rng: Mutex::new(rng),
            cuts: watch::Sender::new(0),
        }
    }

    /// Whether fault injection may be used on this master.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The active settings.
    pub fn settings(&self) -> ChaosSettings {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Apply a patch (fields left out keep their values). Rates must be within 0..=1,
    /// delays at most [`MAX_DELAY_MS`].
    pub fn apply(&self, patch: &ChaosPatch) -> Result<ChaosSettings, FieldError> {
        for (field, ms) in [
            ("replica_lag_ms", patch.replica_lag_ms),
            ("fetch_delay_ms", patch.fetch_delay_ms),
        ] {
            if ms.is_some_and(|ms| ms > MAX_DELAY_MS) {
                return Err(FieldError::new(field, format!("at most {MAX_DELAY_MS} ms")));
            }
        }
        for (field, rate) in [
            ("notice_drop_rate", patch.notice_drop_rate),
            ("fetch_error_rate", patch.fetch_error_rate),
        ] {
            if let Some(rate) = rate
                && !(0.0..=1.0).contains(&rate)
            {
                return Err(FieldError::new(field, "a probability between 0 and 1"));
            }
        }
        let mut s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = patch.replica_lag_ms {
            s.replica_lag_ms = v;
        }
        if let Some(v) = patch.replica_lag_random {
            s.replica_lag_random = v;
        }
        if let Some(v) = patch.notice_drop_rate {
            s.notice_drop_rate = v;
        }
        if let Some(v) = patch.fetch_error_rate {
            s.fetch_error_rate = v;
        }
        if let Some(v) = patch.fetch_delay_ms {
            s.fetch_delay_ms = v;
        }
        if let Some(v) = patch.pause_replicator {
            s.pause_replicator = v;
        }
        if let Some(v) = patch.pause_publisher {
            s.pause_publisher = v;
            self.publisher.send_replace(v);
        }
        if patch.cut_streams == Some(true) {
            self.cuts.send_modify(|n| *n += 1);
        }
        tracing::info!(settings = ?*s, "fault injection changed");
        Ok(s.clone())
    }

    /// Watch for stream cuts.
    pub fn cuts(&self) -> watch::Receiver<u64> {
        self.cuts.subscribe()
    }

    /// Watch whether publishing to JetStream is paused.
    pub fn publisher_paused(&self) -> watch::Receiver<bool> {
        self.publisher.subscribe()
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0
            && self
                .rng
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .random_bool(p.min(1.0))
    }

    /// Whether the replicator should hold off.
    pub fn replicator_paused(&self) -> bool {
        self.settings().pause_replicator
    }

    /// Delay before applying the next log entry, if any.
    pub fn replica_lag(&self) -> Option<Duration> {
        let s = self.settings();
        if s.replica_lag_ms == 0 {
            return None;
        }
        let ms = if s.replica_lag_random {
            self.rng
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .random_range(0..=s.replica_lag_ms)
        } else {
            s.replica_lag_ms
        };
        Some(Duration::from_millis(ms))
    }

    /// Whether to drop the next notice on its way to one subscriber.
    pub fn drop_notice(&self) -> bool {
        let p = self.settings().notice_drop_rate;
        self.chance(p)
    }

    /// The fault for one fetch: a delay and whether it fails.
    pub fn fetch_fault(&self) -> (Option<Duration>, bool) {
        let s = self.settings();
        let delay = (s.fetch_delay_ms > 0).then(|| Duration::from_millis(s.fetch_delay_ms));
        (delay, self.chance(s.fetch_error_rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_keep_omitted_fields_and_validate_rates() {
        let chaos = Chaos::new(true, ChaosSettings::default(), Some(1));
        chaos
            .apply(&ChaosPatch {
                replica_lag_ms: Some(50),
                notice_drop_rate: Some(1.0),
                ..Default::default()
            })
            .unwrap();
        let s = chaos
            .apply(&ChaosPatch {
                fetch_delay_ms: Some(5),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            (s.replica_lag_ms, s.notice_drop_rate, s.fetch_delay_ms),
            (50, 1.0, 5)
        );
        assert!(chaos.drop_notice());
        let err = chaos
            .apply(&ChaosPatch {
                fetch_error_rate: Some(1.5),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.field, "fetch_error_rate");
        assert_eq!(chaos.settings().fetch_error_rate, 0.0);
    }

    #[test]
    fn disabled_chaos_ignores_initial_settings() {
        let chaos = Chaos::new(
            false,
            ChaosSettings {
                pause_replicator: true,
                ..Default::default()
            },
            None,
        );
        assert!(!chaos.replicator_paused());
    }
}
