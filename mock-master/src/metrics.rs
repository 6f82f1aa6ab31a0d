//! Prometheus metrics of the master, rendered as text at `GET /metrics`: one
//! `prometheus-client` registry holding the store's counters, the group-commit batch
//! histogram, the replication gauges and the terminal routes' [`ServeMetrics`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use lotsync::protocol::{OpKind, ReplicationStatus};
use lotsync::serve::ServeMetrics;
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Counters, gauges and histograms of one master, and the registry that names them.
#[derive(Debug)]
pub struct Metrics {
    writes: Family<KindLabel, Counter>,
    bids_rejected: Family<ReasonLabel, Counter>,
    commit_batch_size: Histogram,
    primary_head: Gauge,
    replica_applied: Gauge,
    replication_lag_ops: Gauge,
    replication_lag_seconds: Gauge<f64, AtomicU64>,
    /// Log entries the JetStream publisher saw acknowledged, and its failed sessions.
    jetstream_published: Counter,
    jetstream_failures: Counter,
    /// What the terminal routes count: streams, notices sent, fetches, refusals.
    pub serve: Arc<ServeMetrics>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            writes: Family::default(),
            bids_rejected: Family::default(),
            // 1 to 256 commands per commit, doubling.
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            primary_head: Gauge::default(),
            replica_applied: Gauge::default(),
            replication_lag_ops: Gauge::default(),
            replication_lag_seconds: Gauge::default(),
            jetstream_published: Counter::default(),
            jetstream_failures: Counter::default(),
            serve: Arc::default(),
            registry: Registry::default(),
        };
        let mut registry = Registry::with_prefix("lotsync");
        registry.register(
            "writes",
            "Operations committed, by kind",
            metrics.writes.clone(),
        );
        registry.register(
            "bids_rejected",
            "Bids rejected by the store, by reason",
            metrics.bids_rejected.clone(),
        );
        registry.register(
            "commit_batch_size",
            "Commands per group commit",
            metrics.commit_batch_size.clone(),
        );
        registry.register(
            "primary_head",
            "Last sequence committed",
            metrics.primary_head.clone(),
        );
        registry.register(
            "replica_applied",
            "Last sequence applied to the replica",
            metrics.replica_applied.clone(),
        );
        registry.register(
            "replication_lag_ops",
            "Operations not yet applied to the replica",
            metrics.replication_lag_ops.clone(),
        );
        registry.register(
            "replication_lag_seconds",
            "Age of the oldest unapplied operation",
            metrics.replication_lag_seconds.clone(),
        );
        registry.register(
            "jetstream_published",
            "Log entries acknowledged by JetStream",
            metrics.jetstream_published.clone(),
        );
        registry.register(
            "jetstream_failures",
            "JetStream publishing sessions that failed",
            metrics.jetstream_failures.clone(),
        );
        metrics.serve.register(&mut registry);
        // Every kind shows from the start, at zero.
        for kind in [OpKind::Upsert, OpKind::Status, OpKind::Bid] {
            let _ = metrics.writes.get_or_create(&KindLabel {
                kind: kind.as_str(),
            });
        }
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Count a committed operation.
    pub fn write(&self, kind: OpKind) {
        self.writes
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Count a rejected bid under its error code.
    pub fn bid_rejected(&self, reason: &'static str) {
        self.bids_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Count a log entry acknowledged by JetStream.
    pub fn jetstream_published(&self) {
        self.jetstream_published.inc();
    }

    /// Count a JetStream publishing session that failed.
    pub fn jetstream_error(&self) {
        self.jetstream_failures.inc();
    }

    /// Record the size of a committed batch.
    pub fn batch_committed(&self, size: usize) {
        self.commit_batch_size.observe(size as f64);
    }

    /// Prometheus text exposition (version 0.0.4), with the replication gauges taken
    /// from `replication`.
    pub fn render(&self, replication: &ReplicationStatus) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.primary_head.set(gauge(replication.primary_head));
        self.replica_applied.set(gauge(replication.replica_applied));
        self.replication_lag_ops.set(gauge(replication.lag_ops));
        self.replication_lag_seconds
            .set(replication.lag_ms as f64 / 1000.0);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.write(OpKind::Bid);
        m.batch_committed(3);
        m.batch_committed(300);
        m.bid_rejected("bid_too_low");
        m.serve.fetch_served(200, 4);
        let text = m.render(&ReplicationStatus {
            epoch: "e".into(),
            primary_head: 5,
            replica_applied: 4,
            lag_ops: 1,
            lag_ms: 2,
        });
        for line in [
            "lotsync_writes_total{kind=\"bid\"} 1",
            "lotsync_commit_batch_size_bucket{le=\"4\"} 1",
            "lotsync_commit_batch_size_bucket{le=\"+Inf\"} 2",
            "lotsync_commit_batch_size_sum 303.0",
            "lotsync_bids_rejected_total{reason=\"bid_too_low\"} 1",
            "lotsync_fetches_total{status=\"200\"} 1",
            "lotsync_replication_lag_ops 1",
            "lotsync_replication_lag_seconds 0.002",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
