//! Reconnect and retry delays: capped exponential backoff with jitter.
//!
//! A pure function so it can be tested without a clock; the caller supplies the random
//! sample. Jitter spreads a fleet of terminal servers over the window instead of
//! bringing them all back in the same millisecond after a master restart (no herd).

use std::time::Duration;

/// Delay before retry number `attempt` (0 = first retry).
///
/// The exponential ceiling is `base * 2^attempt`, capped at `max`; the delay is drawn
/// uniformly from the upper half of that ceiling ("equal jitter"), so it never collapses
/// to zero and two clients with different samples differ by up to half the ceiling.
/// `sample` is a uniform random number in `[0, 1)`.
pub(crate) fn delay(attempt: u32, base: Duration, max: Duration, sample: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(30));
    let ceiling = base.saturating_mul(factor).min(max);
    let sample = if sample.is_finite() {
        sample.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let spread = Duration::try_from_secs_f64(ceiling.as_secs_f64() * sample)
        .unwrap_or(ceiling)
        .min(ceiling);
    (ceiling / 2).saturating_add(spread / 2)
}

/// [`delay`] with a fresh random sample.
pub(crate) fn jittered(attempt: u32, base: Duration, max: Duration) -> Duration {
    delay(attempt, base, max, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn grows_exponentially_within_bounds() {
        for attempt in 0..8 {
            let ceiling = BASE * 2u32.pow(attempt);
            assert_eq!(delay(attempt, BASE, MAX, 0.0), ceiling / 2);
            assert_eq!(delay(attempt, BASE, MAX, 1.0), ceiling);
        }
    }

    #[test]
    fn is_capped_and_never_overflows() {
        assert_eq!(delay(20, BASE, MAX, 1.0), MAX);
        assert_eq!(delay(u32::MAX, BASE, MAX, 0.0), MAX / 2);
        assert!(delay(u32::MAX, Duration::MAX, Duration::MAX, 1.0) >= Duration::MAX / 2);
    }

    #[test]
    fn jitter_spreads_clients_apart() {
        let a = delay(5, BASE, MAX, 0.1);
        let b = delay(5, BASE, MAX, 0.9);
        assert!(b - a >= Duration::from_millis(1200), "{a:?} vs {b:?}");
    }

    #[test]
    fn bad_samples_are_tamed() {
        assert_eq!(delay(0, BASE, MAX, f64::NAN), BASE * 3 / 4);
        assert_eq!(delay(0, BASE, MAX, 7.0), BASE);
    }
}
