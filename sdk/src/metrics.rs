//! Counters and the notice-to-mirror latency histogram, readable through
//! [`Client::metrics`](crate::Client::metrics) and renderable as Prometheus text.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Live counters, updated by the client's tasks with relaxed atomics.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub notices: AtomicU64,
    pub coalesced_notices: AtomicU64,
    pub inline_lots: AtomicU64,
    pub duplicate_notices: AtomicU64,
    pub gaps: AtomicU64,
    pub malformed_events: AtomicU64,
    pub heartbeats: AtomicU64,
    pub fetches: AtomicU64,
    pub fetched_lots: AtomicU64,
    pub fetch_errors: AtomicU64,
    pub retries: AtomicU64,
    pub stale_responses: AtomicU64,
    pub applied: AtomicU64,
    pub ignored_stale_versions: AtomicU64,
    pub other_epoch_answers: AtomicU64,
    pub resyncs: AtomicU64,
    pub catchups: AtomicU64,
    pub reconnects: AtomicU64,
    pub display_skipped: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_errors: AtomicU64,
    pub fetches_saved: AtomicU64,
    /// Notice received → lot in the mirror, in microseconds. A std mutex: held for a
    /// few hundred nanoseconds, never across an await.
    latency: Mutex<Histogram<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            notices: AtomicU64::new(0),
            coalesced_notices: AtomicU64::new(0),
            inline_lots: AtomicU64::new(0),
            duplicate_notices: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            malformed_events: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            fetched_lots: AtomicU64::new(0),
            fetch_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            stale_responses: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            ignored_stale_versions: AtomicU64::new(0),
            other_epoch_answers: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            catchups: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            display_skipped: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_errors: AtomicU64::new(0),
            fetches_saved: AtomicU64::new(0),
            // 1 µs .. 1 hour at 3 significant digits; the bounds are constants, so this cannot fail.
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("constant histogram bounds are valid"),
            ),
        }
    }
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn observe_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.saturating_record(micros);
        }
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let notice_to_mirror = self
            .latency
            .lock()
            .map(|h| LatencySummary::from_histogram(&h))
            .unwrap_or_default();
        MetricsSnapshot {
            notices: get(&self.notices),
            coalesced_notices: get(&self.coalesced_notices),
            inline_lots: get(&self.inline_lots),
            duplicate_notices: get(&self.duplicate_notices),
            gaps: get(&self.gaps),
            malformed_events: get(&self.malformed_events),
            heartbeats: get(&self.heartbeats),
            fetches: get(&self.fetches),
            fetched_lots: get(&self.fetched_lots),
            fetch_errors: get(&self.fetch_errors),
            retries: get(&self.retries),
            stale_responses: get(&self.stale_responses),
            applied: get(&self.applied),
            ignored_stale_versions: get(&self.ignored_stale_versions),
            other_epoch_answers: get(&self.other_epoch_answers),
            resyncs: get(&self.resyncs),
            catchups: get(&self.catchups),
            reconnects: get(&self.reconnects),
            display_skipped: get(&self.display_skipped),
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            cache_errors: get(&self.cache_errors),
            fetches_saved: get(&self.fetches_saved),
            notice_to_mirror,
        }
    }
}

/// Percentiles of a latency distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl LatencySummary {
    /// Summarise a histogram of microseconds.
    ///
    /// ```
    /// let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    /// for us in 1..=1000 { h.record(us).unwrap(); }
    /// let s = lotsync::LatencySummary::from_histogram(&h);
    /// assert_eq!(s.count, 1000);
    /// assert!(s.p50.as_micros().abs_diff(500) <= 1);
    /// ```
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        let at = |q: f64| Duration::from_micros(histogram.value_at_quantile(q));
        LatencySummary {
            count: histogram.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_micros(histogram.max()),
        }
    }
}

/// A point-in-time copy of the client's metrics.
///
/// ```
/// let m = lotsync::MetricsSnapshot::default();
/// assert!(m.to_prometheus().contains("lotsync_notices_total 0"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Notices received on the stream (including replayed ones).
    pub notices: u64,
    /// Notices that did not cause a fetch of their own (coalesced into one in flight or queued).
    pub coalesced_notices: u64,
    /// Notices that carried their lot (`inline_lots`), applied without a fetch.
    pub inline_lots: u64,
    /// Notices whose sequence was not above the last one seen (ignored).
    pub duplicate_notices: u64,
    /// Jumps in sequence, or heartbeats ahead of the last notice, that triggered a catch-up.
    pub gaps: u64,
    /// Events or responses that could not be parsed or broke the protocol.
    pub malformed_events: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Fetch requests sent (batch or single).
    pub fetches: u64,
    /// Lots received in fetch responses.
    pub fetched_lots: u64,
    /// Fetch requests that failed (network, 5xx, malformed).
    pub fetch_errors: u64,
    /// Fetches scheduled again after a failure or an answer older than asked.
    pub retries: u64,
    /// Lots received older than the notice they answered (never shown).
    pub stale_responses: u64,
    /// Lot versions applied to the mirror.
    pub applied: u64,
    /// Lot versions not applied because the mirror already had a newer one.
    pub ignored_stale_versions: u64,
    /// Fetch or cache answers read in another epoch than the mirror's (dropped).
    pub other_epoch_answers: u64,
    /// Full resynchronisations from a snapshot (including the first load).
    pub resyncs: u64,
    /// Catch-ups of missed notices through the change log.
    pub catchups: u64,
    /// Reconnects of the notice stream.
    pub reconnects: u64,
    /// Updates that slow displays skipped over (they got the newer value instead).
    pub display_skipped: u64,
    /// Lots served from memcached instead of the master.
    pub cache_hits: u64,
    /// Lots looked up in memcached and not found at the needed version.
    pub cache_misses: u64,
    /// memcached requests that failed (the master was asked instead).
    pub cache_errors: u64,
    /// Master fetches the cache made unnecessary (every lot of the batch was cached).
    pub fetches_saved: u64,
    /// Time from a notice arriving to its lot being in the mirror.
    pub notice_to_mirror: LatencySummary,
}

impl MetricsSnapshot {
    /// Render in the Prometheus text exposition format.
    ///
    /// ```
    /// let text = lotsync::MetricsSnapshot::default().to_prometheus();
    /// assert!(text.contains("# TYPE lotsync_fetches_total counter"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let counters: [(&str, &str, u64); 23] = [
            ("notices", "Notices received", self.notices),
            (
                "coalesced_notices",
                "Notices coalesced into another fetch",
                self.coalesced_notices,
            ),
            (
                "inline_lots",
                "Notices that carried their lot, applied without a fetch",
                self.inline_lots,
            ),
            (
                "duplicate_notices",
                "Notices at or below the last sequence seen",
                self.duplicate_notices,
            ),
            ("gaps", "Sequence gaps detected", self.gaps),
            (
                "malformed_events",
                "Malformed events or responses",
                self.malformed_events,
            ),
            ("heartbeats", "Heartbeats received", self.heartbeats),
            ("fetches", "Fetch requests sent", self.fetches),
            (
                "fetched_lots",
                "Lots received in fetches",
                self.fetched_lots,
            ),
            ("fetch_errors", "Failed fetch requests", self.fetch_errors),
            ("retries", "Fetch retries", self.retries),
            (
                "stale_responses",
                "Lots older than the notice they answered",
                self.stale_responses,
            ),
            (
                "applied",
                "Lot versions applied to the mirror",
                self.applied,
            ),
            (
                "ignored_stale_versions",
                "Lot versions older than the mirror's",
                self.ignored_stale_versions,
            ),
            (
                "other_epoch_answers",
                "Fetch or cache answers of another epoch, dropped",
                self.other_epoch_answers,
            ),
            ("resyncs", "Snapshot resynchronisations", self.resyncs),
            (
                "catchups",
                "Catch-ups through the change log",
                self.catchups,
            ),
            ("reconnects", "Notice stream reconnects", self.reconnects),
            (
                "display_skipped",
                "Updates skipped by slow displays",
                self.display_skipped,
            ),
            ("cache_hits", "Lots served from memcached", self.cache_hits),
            (
                "cache_misses",
                "Lots not in memcached at the needed version",
                self.cache_misses,
            ),
            (
                "cache_errors",
                "Failed memcached requests",
                self.cache_errors,
            ),
            (
                "fetches_saved",
                "Master fetches made unnecessary by memcached",
                self.fetches_saved,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP lotsync_{name}_total {help}.");
            let _ = writeln!(out, "# TYPE lotsync_{name}_total counter");
            let _ = writeln!(out, "lotsync_{name}_total {value}");
        }
        let l = &self.notice_to_mirror;
        let _ = writeln!(
            out,
            "# HELP lotsync_notice_to_mirror_seconds Notice received to lot in mirror."
        );
        let _ = writeln!(out, "# TYPE lotsync_notice_to_mirror_seconds summary");
        for (q, v) in [
            ("0.5", l.p50),
            ("0.9", l.p90),
            ("0.99", l.p99),
            ("0.999", l.p999),
            ("1", l.max),
        ] {
            let _ = writeln!(
                out,
                "lotsync_notice_to_mirror_seconds{{quantile=\"{q}\"}} {}",
                v.as_secs_f64()
            );
        }
        let _ = writeln!(out, "lotsync_notice_to_mirror_seconds_count {}", l.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_come_from_observations() {
        let metrics = Metrics::default();
        for ms in 1..=100 {
            metrics.observe_latency(Duration::from_millis(ms));
        }
        let s = metrics.snapshot().notice_to_mirror;
        assert_eq!(s.count, 100);
        assert!(
            s.p50 >= Duration::from_millis(49) && s.p50 <= Duration::from_millis(51),
            "{s:?}"
        );
        assert!(s.max >= Duration::from_millis(99), "{s:?}");
    }

    #[test]
    fn prometheus_text_has_every_counter() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.fetches, 3);
        let text = metrics.snapshot().to_prometheus();
        assert!(text.contains("lotsync_fetches_total 3"), "{text}");
        assert_eq!(text.matches("# TYPE").count(), 24);
    }
}
