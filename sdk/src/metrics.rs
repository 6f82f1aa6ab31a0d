//! The client's metrics: counters and histograms in one `prometheus-client` registry
//! (served by [`Client::export_metrics`](crate::Client::export_metrics) and by a
//! terminal server's `/metrics`), readable as a [`MetricsSnapshot`] through
//! [`Client::metrics`](crate::Client::metrics).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hdrhistogram::Histogram as HdrHistogram;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of the text that [`Metrics::encode`] renders.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds, in seconds, of the notice-to-mirror histogram: 250 µs to about 65 s,
/// doubling (a fetch on loopback takes a millisecond; a master outage takes seconds).
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_25, 2.0, 19)
}

/// Upper bounds of the lots-per-fetch histogram: 1 to 1024, doubling.
fn batch_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1.0, 2.0, 11)
}

/// Live counters, updated by the client's tasks. Each metric is a `prometheus-client`
/// handle (an `Arc` over atomics), so the same metric can be registered in the client's
/// registry and in a terminal server's, and read back for [`MetricsSnapshot`].
#[derive(Debug)]
pub(crate) struct Metrics {
    pub notices: Counter,
    pub coalesced_notices: Counter,
    pub inline_lots: Counter,
    pub duplicate_notices: Counter,
    pub gaps: Counter,
    pub malformed_events: Counter,
    pub heartbeats: Counter,
    pub fetches: Counter,
    pub fetched_lots: Counter,
    pub fetch_errors: Counter,
    pub retries: Counter,
    pub stale_responses: Counter,
    pub applied: Counter,
    pub ignored_stale_versions: Counter,
    pub other_epoch_answers: Counter,
    pub resyncs: Counter,
    pub catchups: Counter,
    pub reconnects: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_errors: Counter,
    pub fetches_saved: Counter,
    /// Counted by the display fan-out, which holds the other handle of this counter.
    pub display_skipped: Counter,
    /// Notice received → lot in the mirror, in seconds, for Prometheus.
    latency_seconds: Histogram,
    /// Lots asked for per fetch request.
    fetch_batch_lots: Histogram,
    /// The same latencies in microseconds, for the percentiles of [`LatencySummary`].
    /// A std mutex: held for a few hundred nanoseconds, never across an await.
    latency: Mutex<HdrHistogram<u64>>,
    /// Every metric above, named `lotsync_*`.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Counter::default())
    }
}

impl Metrics {
    /// Metrics whose `display_skipped` counter is `display_skipped` (the fan-out's).
    pub fn new(display_skipped: Counter) -> Self {
        let mut metrics = Metrics {
            notices: Counter::default(),
            coalesced_notices: Counter::default(),
            inline_lots: Counter::default(),
            duplicate_notices: Counter::default(),
            gaps: Counter::default(),
            malformed_events: Counter::default(),
            heartbeats: Counter::default(),
            fetches: Counter::default(),
            fetched_lots: Counter::default(),
            fetch_errors: Counter::default(),
            retries: Counter::default(),
            stale_responses: Counter::default(),
            applied: Counter::default(),
            ignored_stale_versions: Counter::default(),
            other_epoch_answers: Counter::default(),
            resyncs: Counter::default(),
            catchups: Counter::default(),
            reconnects: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_errors: Counter::default(),
            fetches_saved: Counter::default(),
            display_skipped,
            latency_seconds: Histogram::new(latency_buckets()),
            fetch_batch_lots: Histogram::new(batch_buckets()),
            // 1 µs .. 1 hour at 3 significant digits; the bounds are constants, so this cannot fail.
            latency: Mutex::new(
                HdrHistogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("constant histogram bounds are valid"),
            ),
            registry: Registry::with_prefix("lotsync"),
        };
        let mut registry = Registry::with_prefix("lotsync");
        metrics.register(&mut registry);
        metrics.registry = registry;
        metrics
    }

    /// Register every metric (counters get their `_total` suffix) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 23] = [
            ("notices", "Notices received", &self.notices),
            (
                "coalesced_notices",
                "Notices coalesced into another fetch",
                &self.coalesced_notices,
            ),
            (
                "inline_lots",
                "Notices that carried their lot, applied without a fetch",
                &self.inline_lots,
            ),
            (
                "duplicate_notices",
                "Notices at or below the last sequence seen",
                &self.duplicate_notices,
            ),
            ("gaps", "Sequence gaps detected", &self.gaps),
            (
                "malformed_events",
                "Malformed events or responses",
                &self.malformed_events,
            ),
            ("heartbeats", "Heartbeats received", &self.heartbeats),
            ("fetches", "Fetch requests sent", &self.fetches),
            (
                "fetched_lots",
                "Lots received in fetches",
                &self.fetched_lots,
            ),
            ("fetch_errors", "Failed fetch requests", &self.fetch_errors),
            ("retries", "Fetch retries", &self.retries),
            (
                "stale_responses",
                "Lots older than the notice they answered",
                &self.stale_responses,
            ),
            (
                "applied",
                "Lot versions applied to the mirror",
                &self.applied,
            ),
            (
                "ignored_stale_versions",
                "Lot versions older than the mirror's",
                &self.ignored_stale_versions,
            ),
            (
                "other_epoch_answers",
                "Fetch or cache answers of another epoch, dropped",
                &self.other_epoch_answers,
            ),
            ("resyncs", "Snapshot resynchronisations", &self.resyncs),
            (
                "catchups",
                "Catch-ups through the change log",
                &self.catchups,
            ),
            ("reconnects", "Notice stream reconnects", &self.reconnects),
            (
                "display_skipped",
                "Updates skipped by slow displays",
                &self.display_skipped,
            ),
            ("cache_hits", "Lots served from memcached", &self.cache_hits),
            (
                "cache_misses",
                "Lots not in memcached at the needed version",
                &self.cache_misses,
            ),
            (
                "cache_errors",
                "Failed memcached requests",
                &self.cache_errors,
            ),
            (
                "fetches_saved",
                "Master fetches made unnecessary by memcached",
                &self.fetches_saved,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "notice_to_mirror_seconds",
            "Time from a notice arriving to its lot being in the mirror",
            self.latency_seconds.clone(),
        );
        registry.register(
            "fetch_batch_lots",
            "Lots asked for per fetch request",
            self.fetch_batch_lots.clone(),
        );
    }

    /// The Prometheus text (version 0.0.4) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }

    pub fn inc(counter: &Counter) {
        counter.inc();
    }

    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// A fetch request asked for `lots` lots.
    pub fn observe_batch(&self, lots: usize) {
        self.fetch_batch_lots.observe(lots as f64);
    }

    pub fn observe_latency(&self, latency: Duration) {
        self.latency_seconds.observe(latency.as_secs_f64());
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.saturating_record(micros);
        }
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let notice_to_mirror = self
            .latency
            .lock()
            .map(|h| LatencySummary::from_histogram(&h))
            .unwrap_or_default();
        MetricsSnapshot {
            notices: self.notices.get(),
            coalesced_notices: self.coalesced_notices.get(),
            inline_lots: self.inline_lots.get(),
            duplicate_notices: self.duplicate_notices.get(),
            gaps: self.gaps.get(),
            malformed_events: self.malformed_events.get(),
            heartbeats: self.heartbeats.get(),
            fetches: self.fetches.get(),
            fetched_lots: self.fetched_lots.get(),
            fetch_errors: self.fetch_errors.get(),
            retries: self.retries.get(),
            stale_responses: self.stale_responses.get(),
            applied: self.applied.get(),
            ignored_stale_versions: self.ignored_stale_versions.get(),
            other_epoch_answers: self.other_epoch_answers.get(),
            resyncs: self.resyncs.get(),
            catchups: self.catchups.get(),
            reconnects: self.reconnects.get(),
            display_skipped: self.display_skipped.get(),
            cache_hits: self.cache_hits.get(),
            cache_misses: self.cache_misses.get(),
            cache_errors: self.cache_errors.get(),
            fetches_saved: self.fetches_saved.get(),
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
    pub fn from_histogram(histogram: &HdrHistogram<u64>) -> Self {
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
    /// Render the snapshot's counters, and its latency percentiles as the gauge
    /// `lotsync_notice_to_mirror_quantile_seconds{quantile=..}`, in the Prometheus text
    /// format. For scraping use [`Client::export_metrics`](crate::Client::export_metrics),
    /// which serves the live registry with the latency histogram.
    ///
    /// ```
    /// let text = lotsync::MetricsSnapshot::default().to_prometheus();
    /// assert!(text.contains("# TYPE lotsync_fetches_total counter"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut registry = Registry::with_prefix("lotsync");
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
        for (name, help, value) in counters {
            registry.register(name, help, ConstCounter::new(value));
        }
        let quantiles =
            Family::<[(&'static str, &'static str); 1], Gauge<f64, AtomicU64>>::default();
        let l = &self.notice_to_mirror;
        for (q, v) in [
            ("0.5", l.p50),
            ("0.9", l.p90),
            ("0.99", l.p99),
            ("0.999", l.p999),
            ("1", l.max),
        ] {
            quantiles
                .get_or_create(&[("quantile", q)])
                .set(v.as_secs_f64());
        }
        registry.register(
            "notice_to_mirror_quantile_seconds",
            "Percentiles of the time from a notice arriving to its lot being in the mirror",
            quantiles,
        );
        registry.register(
            "notice_to_mirror_observations",
            "Latencies the percentiles were computed from",
            ConstGauge::new(i64::try_from(l.count).unwrap_or(i64::MAX)),
        );
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &registry);
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
        // 23 counters, the percentiles and their sample count.
        assert_eq!(text.matches("# TYPE").count(), 25);
    }

    #[test]
    fn live_text_has_counters_and_histograms_with_sums() {
        let skipped = Counter::default();
        let metrics = Metrics::new(skipped.clone());
        Metrics::add(&metrics.fetches, 3);
        skipped.inc_by(2);
        metrics.observe_latency(Duration::from_millis(3));
        metrics.observe_batch(5);
        let text = metrics.encode();
        for line in [
            "lotsync_fetches_total 3",
            "lotsync_display_skipped_total 2",
            "# TYPE lotsync_notice_to_mirror_seconds histogram",
            "lotsync_notice_to_mirror_seconds_sum 0.003",
            "lotsync_notice_to_mirror_seconds_count 1",
            "lotsync_fetch_batch_lots_sum 5.0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert_eq!(metrics.snapshot().display_skipped, 2);
    }
}
