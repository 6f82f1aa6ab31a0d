//! Header statistics: notices per second from metric deltas, and commit-to-screen
//! latency percentiles from the lots this display has drawn.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Latency samples kept for the percentiles: enough for stable p99, small enough to
/// sort every second.
const SAMPLES: usize = 1024;

/// What the header shows about throughput and freshness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Sequence the SDK's mirror is at.
    pub seq: u64,
    /// Notices per second over the last metrics interval.
    pub notices_per_sec: f64,
    /// SDK-side latency from a notice arriving to its lot being in the mirror (p99).
    pub mirror_p99: Duration,
    /// Counter value and time of the previous metrics sample, for the rate.
    last: Option<(u64, DateTime<Utc>)>,
    /// Commit times of lot versions applied but not drawn yet.
    undrawn: Vec<DateTime<Utc>>,
    /// Commit-to-screen latencies of the most recent drawn versions.
    samples: VecDeque<Duration>,
}

impl Stats {
    /// Fold in a metrics sample taken at `now`.
    pub fn metrics(&mut self, now: DateTime<Utc>, seq: u64, notices: u64, mirror_p99: Duration) {
        self.seq = seq;
        self.mirror_p99 = mirror_p99;
        if let Some((before, at)) = self.last {
            let millis = (now - at).num_milliseconds();
            if millis > 0 {
                self.notices_per_sec =
                    notices.saturating_sub(before) as f64 * 1000.0 / millis as f64;
            }
        }
        self.last = Some((notices, now));
    }

    /// Remember that a lot version committed at `committed` is waiting to be drawn.
    pub fn changed(&mut self, committed: DateTime<Utc>) {
        // Bounded like the samples: a display that never draws must not grow this.
        if self.undrawn.len() < SAMPLES {
            self.undrawn.push(committed);
        }
    }

    /// Everything waiting was drawn at `now`: turn it into latency samples.
    pub fn drawn(&mut self, now: DateTime<Utc>) {
        for committed in self.undrawn.drain(..) {
            let latency = (now - committed).to_std().unwrap_or_default();
            if self.samples.len() == SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(latency);
        }
    }

    /// Commit-to-screen latency at quantile `q` (0..=1), if anything was drawn yet.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        // Nearest rank: the smallest sample with at least q of the samples at or below it.
        let rank = (sorted.len() as f64 * q.clamp(0.0, 1.0)).ceil() as usize;
        sorted.get(rank.saturating_sub(1)).copied()
    }
}

/// A latency as a short label: `"850µs"`, `"12ms"`, `"1.2s"`.
pub fn short(latency: Duration) -> String {
    let micros = latency.as_micros();
    if micros < 1_000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 {
        format!("{}ms", micros / 1_000)
    } else {
        format!("{:.1}s", latency.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_767_261_600_000 + ms).unwrap()
    }

    #[test]
    fn rate_comes_from_counter_deltas() {
        let mut stats = Stats::default();
        stats.metrics(at(0), 10, 100, Duration::ZERO);
        assert_eq!(stats.notices_per_sec, 0.0);
        stats.metrics(at(2_000), 20, 130, Duration::ZERO);
        assert_eq!(stats.notices_per_sec, 15.0);
        assert_eq!(stats.seq, 20);
    }

    #[test]
    fn latency_percentiles_come_from_drawn_versions() {
        let mut stats = Stats::default();
        assert_eq!(stats.latency(0.5), None);
        for ms in 1..=100 {
            stats.changed(at(-ms));
        }
        stats.drawn(at(0));
        assert_eq!(stats.latency(0.5), Some(Duration::from_millis(50)));
        assert_eq!(stats.latency(0.99), Some(Duration::from_millis(99)));
        assert_eq!(short(Duration::from_micros(850)), "850µs");
        assert_eq!(short(Duration::from_millis(1_234)), "1.2s");
    }
}
