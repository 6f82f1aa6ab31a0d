//! What the JetStream publisher is doing, as `/healthz` reports it: whether a session
//! is publishing, the last sequence the stream acknowledged, and how long the oldest
//! entry not yet in the stream has waited. Halls that follow JetStream see nothing new
//! while the publisher is stuck, so a stuck publisher is an outage of theirs even when
//! the master itself serves fine.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lotsync::protocol::Seq;
use serde::Serialize;

/// The publisher's progress, shared between its task and `/healthz`.
#[derive(Debug)]
pub struct PublisherStatus {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    publishing: bool,
    published: Seq,
    /// When `publishing` last changed.
    since: Instant,
}

impl Default for PublisherStatus {
    /// Not publishing yet, nothing published.
    fn default() -> Self {
        PublisherStatus {
            inner: Mutex::new(Inner {
                publishing: false,
                published: 0,
                since: Instant::now(),
            }),
        }
    }
}

/// The publisher's part of `/healthz`.
///
/// ```
/// # use std::time::Duration;
/// use mock_master::nats::status::PublisherStatus;
/// let status = PublisherStatus::default();
/// status.session_started(0);
/// let health = status.report(0, |_| None, Duration::from_secs(10));
/// assert!(health.publishing && !health.stalled);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JetStreamHealth {
    /// A session is set up (streams exist, epoch announced) and has not failed since.
    pub publishing: bool,
    /// The last sequence the stream acknowledged.
    pub published: Seq,
    /// Committed entries not yet in the stream.
    pub behind: u64,
    /// How long the oldest of them has waited (zero when none is behind).
    pub lag_ms: u64,
    /// Not publishing, or the lag, for longer than the master's stall threshold.
    pub stalled: bool,
}

impl PublisherStatus {
    /// A session set up its streams; the stream ends at `position`.
    pub fn session_started(&self, position: Seq) {
        let mut inner = self.lock();
        if !inner.publishing {
            inner.since = Instant::now();
        }
        inner.publishing = true;
        inner.published = position;
    }

    /// The stream acknowledged every entry up to `position`.
    pub fn published(&self, position: Seq) {
        self.lock().published = position;
    }

    /// The session failed; the publisher waits and starts another.
    pub fn session_failed(&self) {
        let mut inner = self.lock();
        if inner.publishing {
            inner.since = Instant::now();
        }
        inner.publishing = false;
    }

    /// The report for a log whose head is `head`; `committed_at(seq)` is how long ago
    /// entry `seq` was committed, when the log still knows it (an entry it no longer
    /// holds in memory is older than any it does: it counts as stalled).
    pub fn report(
        &self,
        head: Seq,
        committed_at: impl Fn(Seq) -> Option<Duration>,
        stall: Duration,
    ) -> JetStreamHealth {
        let (publishing, published, since) = {
            let inner = self.lock();
            (inner.publishing, inner.published, inner.since)
        };
        let behind = head.saturating_sub(published);
        let lag = if behind > 0 {
            committed_at(published + 1).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        };
        JetStreamHealth {
            publishing,
            published,
            behind,
            lag_ms: lag.as_millis().min(u128::from(u64::MAX)) as u64,
            stalled: lag > stall || (!publishing && since.elapsed() > stall),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The data stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_millis(500);

    #[test]
    fn caught_up_and_publishing_is_healthy() {
        let status = PublisherStatus::default();
        status.session_started(7);
        let health = status.report(7, |_| panic!("nothing is behind"), STALL);
        assert_eq!(
            health,
            JetStreamHealth {
                publishing: true,
                published: 7,
                behind: 0,
                lag_ms: 0,
                stalled: false,
            }
        );
    }

    #[test]
    fn an_old_unpublished_entry_is_a_stall_a_fresh_one_is_not() {
        let status = PublisherStatus::default();
        status.session_started(3);
        let fresh = status.report(5, |_| Some(Duration::from_millis(20)), STALL);
        assert_eq!((fresh.behind, fresh.lag_ms, fresh.stalled), (2, 20, false));
        let old = status.report(5, |seq| (seq == 4).then_some(Duration::from_secs(3)), STALL);
        assert_eq!((old.lag_ms, old.stalled), (3_000, true));
        let forgotten = status.report(5, |_| None, STALL);
        assert!(
            forgotten.stalled,
            "an entry the ring no longer holds is old"
        );
        status.published(5);
        assert!(!status.report(5, |_| None, STALL).stalled);
    }

    #[test]
    fn not_publishing_is_a_stall_only_after_the_threshold() {
        let status = PublisherStatus::default();
        status.session_started(0);
        status.session_failed();
        let health = status.report(0, |_| None, Duration::from_secs(3600));
        assert!(!health.publishing && !health.stalled, "just failed");
        let health = status.report(0, |_| None, Duration::ZERO);
        assert!(!health.publishing && health.stalled);
    }
}
