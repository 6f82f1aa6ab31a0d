//! From commits and observations to figures: per-subscriber and all-subscribers
//! latency, staleness, the fraction of time a mirror is stale, and request rates.
//!
//! Definitions (one clock, the machine's):
//! - A commit `(lot, seq, t_c)` *reaches* a subscriber at the first time `t_o` it holds
//!   `lot` at version `seq` or newer. Its latency (for polling: its staleness) is
//!   `t_o - t_c`. A version a subscriber skipped because a newer one arrived first
//!   counts until that newer one arrived, so skipping never hides a delay.
//! - All-subscribers latency of a commit: the largest of its per-subscriber latencies.
//! - A mirror is stale at instant `t` when some lot it holds is older than the
//!   master's committed version at `t`, that is, `t` lies in some `[t_c, t_o)`.

use std::collections::HashMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::{Commit, histogram};
use crate::subscriber::Line;

/// Percentiles of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Largest sample, ms.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// The five points, in order, for charts.
    pub fn points(&self) -> [f64; 5] {
        [self.p50, self.p90, self.p99, self.p999, self.max]
    }
}

/// Figures of one design (one fleet) over one measurement window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DesignStats {
    /// Subscribers measured.
    pub subscribers: usize,
    /// Commits in the window.
    pub commits: usize,
    /// Latency of each (subscriber, commit) pair.
    pub per_subscriber: Percentiles,
    /// Per commit, the largest latency over the subscribers.
    pub all_subscribers: Percentiles,
    /// Mean over subscribers of the fraction of the window their mirror was stale.
    pub stale_fraction: f64,
    /// (subscriber, commit) pairs never reached before the subscriber stopped.
    pub never_reached: u64,
    /// Requests per second per subscriber, between ready and exit.
    pub requests_per_s: f64,
    /// Requests per second, all subscribers together.
    pub total_requests_per_s: f64,
    /// Fetches (or polls) per notice received (notify mode; 0 when no notices).
    pub fetches_per_notice: f64,
    /// Notices received, all subscribers.
    pub notices: u64,
    /// Notices that caused no fetch of their own, all subscribers.
    pub coalesced_notices: u64,
    /// Fetches retried (failure, or an answer older than the notice), all subscribers.
    pub retries: u64,
    /// The SDK's notice-arrived-to-mirror median, mean over subscribers, ms: the part
    /// of the latency spent fetching (the rest is commit to notice, and delivery).
    pub sdk_notice_to_mirror_p50: f64,
    /// The same at p99, mean over subscribers, ms.
    pub sdk_notice_to_mirror_p99: f64,
}

/// Analyse the lines of the subscribers with ids in `subs` against `commits`, for the
/// window `[start_us, end_us]` (stale time is clipped to it).
pub fn analyse(
    lines: &[Line],
    subs: std::ops::Range<u32>,
    commits: &[Commit],
    start_us: i64,
    end_us: i64,
) -> DesignStats {
    // (subscriber, lot) -> observations (seq, time), in arrival order, which is also
    // version order: a mirror never goes back.
    let mut seen: HashMap<(u32, &str), Vec<(u64, i64)>> = HashMap::new();
    let mut ready: HashMap<u32, (i64, u64)> = HashMap::new();
    let mut finals: HashMap<u32, (i64, [u64; 5], u64, u64)> = HashMap::new();
    for line in lines {
        match line {
            Line::Observed {
                sub,
                lot,
                seq,
                observed_us,
                ..
            } if subs.contains(sub) => {
                seen.entry((*sub, lot.as_str()))
                    .or_default()
                    .push((*seq, *observed_us));
            }
            Line::Ready {
                sub,
                at_us,
                requests,
            } if subs.contains(sub) => {
                ready.insert(*sub, (*at_us, *requests));
            }
            Line::Final {
                sub,
                at_us,
                requests,
                fetches,
                notices,
                coalesced,
                retries,
                n2m_p50_us,
                n2m_p99_us,
            } if subs.contains(sub) => {
                let counters = [*requests, *fetches, *notices, *coalesced, *retries];
                finals.insert(*sub, (*at_us, counters, *n2m_p50_us, *n2m_p99_us));
            }
            _ => {}
        }
    }
    for versions in seen.values_mut() {
        // Arrival order is version order per subscriber; sort anyway for safety.
        versions.sort_unstable();
    }

    let mut per_sub = histogram();
    let mut all = histogram();
    let mut never_reached = 0;
    let mut stale_total = 0.0;
    let mut worst: Vec<u64> = vec![0; commits.len()];
    let window = (end_us - start_us).max(1);
    for sub in subs.clone() {
        let mut intervals = Vec::with_capacity(commits.len());
        for (i, commit) in commits.iter().enumerate() {
            let reached = seen.get(&(sub, commit.lot.as_str())).and_then(|versions| {
                let at = versions.partition_point(|(seq, _)| *seq < commit.seq);
                versions.get(at).map(|(_, t)| *t)
            });
            let until = reached.unwrap_or_else(|| {
                never_reached += 1;
                end_us.max(commit.at_us)
            });
            let latency = (until - commit.at_us).max(0) as u64;
            let _ = per_sub.record(latency);
            worst[i] = worst[i].max(latency);
            intervals.push((commit.at_us, until));
        }
        stale_total += union_within(&mut intervals, start_us, end_us) as f64 / window as f64;
    }
    for latency in worst {
        let _ = all.record(latency);
    }

    let n = subs.len();
    let mut rates = Vec::new();
    let (mut fetches, mut notices, mut coalesced, mut retries) = (0, 0, 0, 0);
    let (mut n2m50, mut n2m99) = (Vec::new(), Vec::new());
    for sub in subs {
        if let (Some((t0, r0)), Some((t1, [r1, f, nn, c, retried], p50, p99))) =
            (ready.get(&sub), finals.get(&sub))
        {
            n2m50.push(*p50 as f64 / 1000.0);
            n2m99.push(*p99 as f64 / 1000.0);
            let seconds = (t1 - t0) as f64 / 1e6;
            if seconds > 0.0 {
                rates.push(r1.saturating_sub(*r0) as f64 / seconds);
            }
            fetches += f;
            notices += nn;
            coalesced += c;
            retries += retried;
        }
    }
    let rate = mean(&rates);
    DesignStats {
        subscribers: n,
        commits: commits.len(),
        per_subscriber: Percentiles::of(&per_sub),
        all_subscribers: Percentiles::of(&all),
        stale_fraction: if n == 0 { 0.0 } else { stale_total / n as f64 },
        never_reached,
        requests_per_s: rate,
        total_requests_per_s: rate * n as f64,
        fetches_per_notice: if notices == 0 {
            0.0
        } else {
            fetches as f64 / notices as f64
        },
        notices,
        coalesced_notices: coalesced,
        retries,
        sdk_notice_to_mirror_p50: mean(&n2m50),
        sdk_notice_to_mirror_p99: mean(&n2m99),
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Total length of the union of `intervals`, clipped to `[start, end]`.
fn union_within(intervals: &mut [(i64, i64)], start: i64, end: i64) -> i64 {
    intervals.sort_unstable();
    let mut total = 0;
    let mut current: Option<(i64, i64)> = None;
    for &(a, b) in intervals.iter() {
        let (a, b) = (a.max(start), b.min(end));
        if b <= a {
            continue;
        }
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + current.map_or(0, |(a, b)| b - a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(lot: &str, seq: u64, at_us: i64) -> Commit {
        Commit {
            lot: lot.into(),
            seq,
            at_us,
        }
    }

    fn seen(sub: u32, lot: &str, seq: u64, observed_us: i64) -> Line {
        Line::Observed {
            sub,
            lot: lot.into(),
            seq,
            committed_us: 0,
            observed_us,
        }
    }

    #[test]
    fn union_merges_overlaps_and_clips() {
        let mut v = vec![(0, 10), (5, 20), (30, 40), (100, 200)];
        assert_eq!(union_within(&mut v, 0, 150), 20 + 10 + 50);
        assert_eq!(union_within(&mut [], 0, 10), 0);
    }

    #[test]
    fn skipped_versions_count_until_a_newer_one_arrives() {
        let commits = [
            commit("a", 1, 1_000),
            commit("a", 2, 2_000),
            commit("b", 3, 3_000),
        ];
        let lines = [
            // Subscriber 0 skips version 1 and gets 2 at 2 500; gets b at 3 100.
            seen(0, "a", 2, 2_500),
            seen(0, "b", 3, 3_100),
            // Subscriber 1 gets everything 200 µs late, and never gets b.
            seen(1, "a", 1, 1_200),
            seen(1, "a", 2, 2_200),
        ];
        let stats = analyse(&lines, 0..2, &commits, 0, 10_000);
        assert_eq!(stats.per_subscriber.count, 6);
        assert_eq!(stats.never_reached, 1);
        // Per commit worst: 1500 (a1 by sub 0), 500, 7000 (b never reached by sub 1).
        assert!((stats.all_subscribers.max - 7.0).abs() < 0.01);
        // Sub 0 stale [1000,2500) + [3000,3100) = 1600; sub 1: 200 + 200 + 7000.
        let expected = (1_600.0 / 10_000.0 + 7_400.0 / 10_000.0) / 2.0;
        assert!(
            (stats.stale_fraction - expected).abs() < 1e-9,
            "{}",
            stats.stale_fraction
        );
    }
}
