//! Capped, jittered exponential backoff for reconnecting to a database.
//!
//! Every store connection (the writer, the replicator, each pool of readers) waits
//! this way between attempts while its database is unreachable, so a server that comes
//! back is not met by every connection in the same millisecond.

use std::time::Duration;

/// First wait after a failure.
pub const INITIAL: Duration = Duration::from_millis(50);

/// Longest wait between two attempts: a database that is back is used again at most
/// this long after its return.
pub const MAX: Duration = Duration::from_secs(2);

/// Waits that double from [`INITIAL`] up to [`MAX`], each drawn between half and all of
/// its nominal length.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// Record one more failure and return how long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let nominal = INITIAL.saturating_mul(1 << self.failures.min(16)).min(MAX);
        self.failures = self.failures.saturating_add(1);
        let half = nominal / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Start again from [`INITIAL`] (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new();
        let waits: Vec<Duration> = (0..12).map(|_| backoff.next_wait()).collect();
        assert_eq!(backoff.failures(), 12);
        for (n, wait) in waits.iter().enumerate() {
            let nominal = INITIAL.saturating_mul(1 << n).min(MAX);
            assert!(
                *wait >= nominal / 2 && *wait <= nominal,
                "wait {n}: {wait:?}"
            );
        }
        // Draws differ: connections that failed together do not retry together.
        let capped: Vec<Duration> = (0..8).map(|_| backoff.next_wait()).collect();
        assert!(capped.iter().any(|w| *w != capped[0]), "{capped:?}");
        backoff.reset();
        assert!(backoff.next_wait() <= INITIAL);
    }
}
