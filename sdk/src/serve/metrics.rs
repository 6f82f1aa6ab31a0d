//! What a terminal-API server counts, as `prometheus-client` metrics that the server
//! registers in its own registry.

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of the Prometheus text format these metrics are rendered in.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Label of a fetch: the HTTP status it was answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// Label of a refusal: the limit that was reached.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// What a terminal-API server counts: open streams, notices written, fetches answered
/// and how long they waited, requests refused at a limit.
///
/// ```
/// let metrics = lotsync::serve::ServeMetrics::default();
/// metrics.fetch_served(200, 3);
/// let mut text = String::new();
/// metrics.render("lotsync", &mut text);
/// assert!(text.contains("lotsync_fetches_total{status=\"200\"} 1"));
/// assert!(text.contains("lotsync_fetch_wait_seconds_count 1"));
/// ```
#[derive(Debug)]
pub struct ServeMetrics {
    streams: Gauge,
    notices_sent: Counter,
    notices_dropped: Counter,
    fetches: Family<StatusLabel, Counter>,
    fetch_wait: Histogram,
    /// Fetches answered, every status (the sum of `fetches`, kept for reading back).
    fetches_answered: Counter,
    refused: Family<LimitLabel, Counter>,
}

impl Default for ServeMetrics {
    fn default() -> Self {
        ServeMetrics {
            streams: Gauge::default(),
            notices_sent: Counter::default(),
            notices_dropped: Counter::default(),
            fetches: Family::default(),
            // 1 ms to about 16 s, doubling: most fetches do not wait; a long poll waits
            // up to the server's fetch wait.
            fetch_wait: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            fetches_answered: Counter::default(),
            refused: Family::default(),
        }
    }
}

impl ServeMetrics {
    /// A notice stream opened.
    pub fn stream_opened(&self) {
        self.streams.inc();
    }

    /// A notice stream closed.
    pub fn stream_closed(&self) {
        self.streams.dec();
    }

    /// Open notice streams now.
    pub fn streams(&self) -> i64 {
        self.streams.get()
    }

    /// A notice was written to a stream.
    pub fn notice_sent(&self) {
        self.notices_sent.inc();
    }

    /// Notices written to streams so far.
    pub fn notices_sent(&self) -> u64 {
        self.notices_sent.get()
    }

    /// A notice was left out by fault injection.
    pub fn notice_dropped(&self) {
        self.notices_dropped.inc();
    }

    /// A fetch was answered with `status` after waiting `wait_ms` for its `min_seq`.
    pub fn fetch_served(&self, status: u16, wait_ms: u64) {
        self.fetches.get_or_create(&StatusLabel { status }).inc();
        self.fetch_wait.observe(wait_ms as f64 / 1000.0);
        self.fetches_answered.inc();
    }

    /// Fetches answered so far, every status.
    pub fn fetches(&self) -> u64 {
        self.fetches_answered.get()
    }

    /// A request or connection was refused at a limit (`what`: `connections`,
    /// `streams`, `requests`).
    pub fn refused(&self, what: &'static str) {
        self.refused
            .get_or_create(&LimitLabel { limit: what })
            .inc();
    }

    /// Register these metrics in `registry`, under the registry's prefix (`lotsync` on
    /// the master; a terminal server, which also registers its own client's
    /// `lotsync_*` metrics, uses the sub-registry `lotsync_downstream`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("subscribers", "Open notice streams", self.streams.clone());
        registry.register(
            "notices_sent",
            "Notices written to streams",
            self.notices_sent.clone(),
        );
        registry.register(
            "notices_dropped",
            "Notices dropped by fault injection",
            self.notices_dropped.clone(),
        );
        registry.register(
            "fetches",
            "Lot fetches answered, by HTTP status",
            self.fetches.clone(),
        );
        registry.register(
            "fetch_wait_seconds",
            "Time fetches waited for their min_seq",
            self.fetch_wait.clone(),
        );
        registry.register(
            "refused",
            "Connections, streams and requests refused at a limit",
            self.refused.clone(),
        );
    }

    /// Append the Prometheus text of these metrics alone to `out`, each name starting
    /// with `prefix`. A server renders its whole registry instead (see
    /// [`register`](Self::register)).
    pub fn render(&self, prefix: &str, out: &mut String) {
        let mut registry = Registry::with_prefix(prefix);
        self.register(&mut registry);
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(out, &registry);
    }
}
