//! Prometheus metrics of the master, rendered as text at `GET /metrics`.
//!
//! Plain atomics and a few small maps: the set of labels is fixed and small, so no
//! metrics library is needed.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use lotsync::protocol::{OpKind, ReplicationStatus};
use lotsync::serve::ServeMetrics;

/// Upper bounds of the group-commit batch size histogram.
const BATCH_BUCKETS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Counters and gauges of one master.
#[derive(Default)]
pub struct Metrics {
    writes: [AtomicU64; 3],
    bids_rejected: Mutex<BTreeMap<&'static str, u64>>,
    batch_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    batch_sum: AtomicU64,
    batch_count: AtomicU64,
    /// Log entries the JetStream publisher saw acknowledged, and its failed sessions.
    jetstream_published: AtomicU64,
    jetstream_errors: AtomicU64,
    /// What the terminal routes count: streams, notices sent, fetches, refusals.
    pub serve: Arc<ServeMetrics>,
}

fn kind_index(kind: OpKind) -> usize {
    match kind {
        OpKind::Upsert => 0,
        OpKind::Status => 1,
        OpKind::Bid => 2,
    }
}

impl Metrics {
    /// Count a committed operation.
    pub fn write(&self, kind: OpKind) {
        self.writes[kind_index(kind)].fetch_add(1, Relaxed);
    }

    /// Count a rejected bid under its error code.
    pub fn bid_rejected(&self, reason: &'static str) {
        *self
            .bids_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Record the size of a committed batch.
    pub fn batch_committed(&self, size: usize) {
        if let Some(i) = BATCH_BUCKETS.iter().position(|b| size <= *b) {
            self.batch_buckets[i].fetch_add(1, Relaxed);
        }
        self.batch_sum.fetch_add(size as u64, Relaxed);
        self.batch_count.fetch_add(1, Relaxed);
    }

    /// Count a log entry acknowledged by JetStream.
    pub fn jetstream_published(&self) {
        self.jetstream_published.fetch_add(1, Relaxed);
    }

    /// Count a JetStream publishing session that failed.
    pub fn jetstream_error(&self) {
        self.jetstream_errors.fetch_add(1, Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self, replication: &ReplicationStatus) -> String {
        let mut out = String::new();
        let w = &mut out;
        help(
            w,
            "lotsync_writes_total",
            "counter",
            "Operations committed, by kind.",
        );
        for kind in [OpKind::Upsert, OpKind::Status, OpKind::Bid] {
            let n = self.writes[kind_index(kind)].load(Relaxed);
            let _ = writeln!(w, "lotsync_writes_total{{kind=\"{}\"}} {n}", kind.as_str());
        }
        help(
            w,
            "lotsync_bids_rejected_total",
            "counter",
            "Bids rejected by the store, by reason.",
        );
        for (reason, n) in self
            .bids_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(w, "lotsync_bids_rejected_total{{reason=\"{reason}\"}} {n}");
        }
        help(
            w,
            "lotsync_commit_batch_size",
            "histogram",
            "Commands per group commit.",
        );
        let mut cumulative = 0;
        for (bound, n) in BATCH_BUCKETS.iter().zip(&self.batch_buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(
                w,
                "lotsync_commit_batch_size_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.batch_count.load(Relaxed);
        let _ = writeln!(w, "lotsync_commit_batch_size_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            w,
            "lotsync_commit_batch_size_sum {}",
            self.batch_sum.load(Relaxed)
        );
        let _ = writeln!(w, "lotsync_commit_batch_size_count {count}");
        gauge(
            w,
            "lotsync_primary_head",
            "Last sequence committed.",
            replication.primary_head,
        );
        gauge(
            w,
            "lotsync_replica_applied",
            "Last sequence applied to the replica.",
            replication.replica_applied,
        );
        gauge(
            w,
            "lotsync_replication_lag_ops",
            "Operations not yet applied to the replica.",
            replication.lag_ops,
        );
        gauge(
            w,
            "lotsync_replication_lag_ms",
            "Age of the oldest unapplied operation.",
            replication.lag_ms,
        );
        help(
            w,
            "lotsync_jetstream_published_total",
            "counter",
            "Log entries published to NATS JetStream and acknowledged.",
        );
        let _ = writeln!(
            w,
            "lotsync_jetstream_published_total {}",
            self.jetstream_published.load(Relaxed)
        );
        help(
            w,
            "lotsync_jetstream_failures_total",
            "counter",
            "Publishing sessions to NATS JetStream that failed (each is retried).",
        );
        let _ = writeln!(
            w,
            "lotsync_jetstream_failures_total {}",
            self.jetstream_errors.load(Relaxed)
        );
        self.serve.render("lotsync", w);
        out
    }
}

fn help(w: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(w, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

fn gauge(w: &mut String, name: &str, text: &str, value: u64) {
    help(w, name, "gauge", text);
    let _ = writeln!(w, "{name} {value}");
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
            "lotsync_bids_rejected_total{reason=\"bid_too_low\"} 1",
            "lotsync_fetches_total{status=\"200\"} 1",
            "lotsync_replication_lag_ops 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
