//! Counters of a terminal-API server, rendered as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// What a terminal-API server counts: open streams, notices written, fetches answered,
/// requests refused at a limit.
///
/// ```
/// let metrics = lotsync::serve::ServeMetrics::default();
/// metrics.fetch_served(200, 3);
/// let mut text = String::new();
/// metrics.render("lotsync", &mut text);
/// assert!(text.contains("lotsync_fetches_total{status=\"200\"} 1"));
/// ```
#[derive(Debug, Default)]
pub struct ServeMetrics {
    streams: AtomicI64,
    notices_sent: AtomicU64,
    notices_dropped: AtomicU64,
    fetches: Mutex<BTreeMap<u16, u64>>,
    fetch_wait_ms_sum: AtomicU64,
    fetch_wait_count: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl ServeMetrics {
    /// A notice stream opened.
    pub fn stream_opened(&self) {
        self.streams.fetch_add(1, Relaxed);
    }

    /// A notice stream closed.
    pub fn stream_closed(&self) {
        self.streams.fetch_sub(1, Relaxed);
    }

    /// Open notice streams now.
    pub fn streams(&self) -> i64 {
        self.streams.load(Relaxed)
    }

    /// A notice was written to a stream.
    pub fn notice_sent(&self) {
        self.notices_sent.fetch_add(1, Relaxed);
    }

    /// Notices written to streams so far.
    pub fn notices_sent(&self) -> u64 {
        self.notices_sent.load(Relaxed)
    }

    /// A notice was left out by fault injection.
    pub fn notice_dropped(&self) {
        self.notices_dropped.fetch_add(1, Relaxed);
    }

    /// A fetch was answered with `status` after waiting `wait_ms` for its `min_seq`.
    pub fn fetch_served(&self, status: u16, wait_ms: u64) {
        *lock(&self.fetches).entry(status).or_default() += 1;
        self.fetch_wait_ms_sum.fetch_add(wait_ms, Relaxed);
        self.fetch_wait_count.fetch_add(1, Relaxed);
    }

    /// Fetches answered so far, every status.
    pub fn fetches(&self) -> u64 {
        lock(&self.fetches).values().sum()
    }

    /// A request or connection was refused at a limit (`what`: `connections`,
    /// `streams`, `requests`).
    pub fn refused(&self, what: &'static str) {
        *lock(&self.refused).entry(what).or_default() += 1;
    }

    /// Append the Prometheus text of these counters to `out`, each name starting with
    /// `prefix` (`lotsync` on the master; a terminal server, which also reports its own
    /// client's `lotsync_*` counters, uses `lotsync_downstream`).
    pub fn render(&self, prefix: &str, out: &mut String) {
        help(
            out,
            &format!("{prefix}_subscribers"),
            "gauge",
            "Open notice streams.",
        );
        let _ = writeln!(out, "{prefix}_subscribers {}", self.streams());
        counter(
            out,
            &format!("{prefix}_notices_sent_total"),
            "Notices written to streams.",
            self.notices_sent(),
        );
        counter(
            out,
            &format!("{prefix}_notices_dropped_total"),
            "Notices dropped by fault injection.",
            self.notices_dropped.load(Relaxed),
        );
        help(
            out,
            &format!("{prefix}_fetches_total"),
            "counter",
            "Lot fetches answered, by HTTP status.",
        );
        for (status, n) in lock(&self.fetches).iter() {
            let _ = writeln!(out, "{prefix}_fetches_total{{status=\"{status}\"}} {n}");
        }
        help(
            out,
            &format!("{prefix}_fetch_wait_ms"),
            "summary",
            "Time fetches waited for their min_seq.",
        );
        let _ = writeln!(
            out,
            "{prefix}_fetch_wait_ms_sum {}\n{prefix}_fetch_wait_ms_count {}",
            self.fetch_wait_ms_sum.load(Relaxed),
            self.fetch_wait_count.load(Relaxed)
        );
        help(
            out,
            &format!("{prefix}_refused_total"),
            "counter",
            "Connections, streams and requests refused at a limit.",
        );
        for (what, n) in lock(&self.refused).iter() {
            let _ = writeln!(out, "{prefix}_refused_total{{limit=\"{what}\"}} {n}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters only: a poisoned lock still holds usable numbers.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Write the `# HELP` and `# TYPE` lines of a metric.
pub(crate) fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// Write a whole counter.
pub(crate) fn counter(out: &mut String, name: &str, text: &str, value: u64) {
    help(out, name, "counter", text);
    let _ = writeln!(out, "{name} {value}");
}
