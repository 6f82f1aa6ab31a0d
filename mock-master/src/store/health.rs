//! What is up and what is down: the writer's and the replicator's own view of their
//! connections, probes of the two databases, and whether replication is stalled.
//!
//! The background threads report here when they lose and regain their database;
//! [`crate::store::Store::health`] adds a probe of each database (an idle writer does
//! not notice a server that went away until its next write) and the replication lag.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A part of the store that can be down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The first database (lots, bids, the operation log).
    Primary,
    /// The second database, which fetches read.
    Replica,
    /// The thread that writes the primary.
    Writer,
    /// The thread that applies the log to the replica.
    Replicator,
}

impl Part {
    /// The part's name on the wire and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Primary => "primary",
            Part::Replica => "replica",
            Part::Writer => "writer",
            Part::Replicator => "replicator",
        }
    }
}

impl Part {
    /// What a caller is told when this part is unavailable.
    pub fn unavailable(self) -> &'static str {
        match self {
            Part::Primary => "the primary database is unreachable",
            Part::Replica => "the replica database is unreachable",
            Part::Writer => "the primary database is unreachable; nothing was written",
            Part::Replicator => "the replicator cannot reach its databases",
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Up or down since when, for one background thread.
#[derive(Debug, Default)]
struct PartState {
    /// `Some(since)` while down.
    down_since: Mutex<Option<Instant>>,
    /// Mirrors `down_since.is_some()`, read on every write without taking the lock.
    down: AtomicBool,
}

impl PartState {
    fn set_down(&self) -> bool {
        let mut since = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        let was_up = since.is_none();
        if was_up {
            *since = Some(Instant::now());
            self.down.store(true, Ordering::Release);
        }
        was_up
    }

    fn set_up(&self) -> Option<Duration> {
        let mut since = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        self.down.store(false, Ordering::Release);
        since.take().map(|s| s.elapsed())
    }
}

/// Shared between the store and its threads: each part's state and the stop flag.
///
/// The writer and the replicator report their own connections; the reader pools
/// report their database (the primary's pool, the replica's pool).
#[derive(Debug, Default)]
pub struct Monitor {
    primary: PartState,
    replica: PartState,
    writer: PartState,
    replicator: PartState,
    stopping: AtomicBool,
}

impl Monitor {
    fn state(&self, part: Part) -> &PartState {
        match part {
            Part::Primary => &self.primary,
            Part::Replica => &self.replica,
            Part::Writer => &self.writer,
            Part::Replicator => &self.replicator,
        }
    }

    /// The part lost its database. Returns true when it was up until now.
    pub fn set_down(&self, part: Part) -> bool {
        self.state(part).set_down()
    }

    /// The part has its database again. Returns how long it was down, if it was.
    pub fn set_up(&self, part: Part) -> Option<Duration> {
        self.state(part).set_up()
    }

    /// Whether the part was last reported down.
    pub fn is_down(&self, part: Part) -> bool {
        self.state(part).down.load(Ordering::Acquire)
    }

    /// Ask the threads to stop (they also get a message or a wake-up).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether the store is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// The store's health report: which parts are down, and the replication lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The primary database answered a probe.
    pub primary: bool,
    /// The replica database answered a probe.
    pub replica: bool,
    /// The writer holds a working connection to the primary.
    pub writer: bool,
    /// The replicator holds working connections to both databases.
    pub replicator: bool,
    /// How long the oldest operation the replica has not applied has been waiting;
    /// zero when the replica is caught up.
    #[serde(rename = "replication_lag_ms", serialize_with = "as_millis")]
    pub replication_lag: Duration,
    /// The lag is over the store's threshold: replication is stalled.
    pub replication_stalled: bool,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

impl Health {
    /// Nothing is down and replication is not stalled.
    pub fn is_ok(&self) -> bool {
        self.down().is_empty()
    }

    /// What is wrong, by name: `primary`, `replica`, `writer`, `replicator`, and
    /// `replication` when it is stalled.
    pub fn down(&self) -> Vec<&'static str> {
        let mut down: Vec<&'static str> = [
            (self.primary, Part::Primary),
            (self.replica, Part::Replica),
            (self.writer, Part::Writer),
            (self.replicator, Part::Replicator),
        ]
        .into_iter()
        .filter(|(up, _)| !up)
        .map(|(_, part)| part.as_str())
        .collect();
        if self.replication_stalled {
            down.push("replication");
        }
        down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_go_down_once_and_report_the_outage() {
        let monitor = Monitor::default();
        assert!(!monitor.is_down(Part::Writer));
        assert!(monitor.set_down(Part::Writer));
        assert!(!monitor.set_down(Part::Writer), "already down");
        assert!(monitor.is_down(Part::Writer) && !monitor.is_down(Part::Replicator));
        assert!(monitor.set_up(Part::Writer).is_some());
        assert!(monitor.set_up(Part::Writer).is_none(), "already up");

        let mut health = Health {
            primary: true,
            replica: true,
            writer: true,
            replicator: true,
            replication_lag: Duration::ZERO,
            replication_stalled: false,
        };
        assert!(health.is_ok());
        health.primary = false;
        health.writer = false;
        health.replication_stalled = true;
        assert_eq!(health.down(), vec!["primary", "writer", "replication"]);
    }
}
