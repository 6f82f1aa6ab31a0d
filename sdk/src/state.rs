//! Connection state, published on a `tokio::sync::watch` channel.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::mirror::Mirror;

/// Where the client stands with the master. Observe it through
/// [`Client::state`](crate::Client::state).
///
/// ```
/// use lotsync::ConnectionState;
/// let state = ConnectionState::Live;
/// assert!(state.is_live());
/// assert_eq!(state.to_string(), "live");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Starting up: nothing received yet.
    Connecting,
    /// Loading a snapshot (first start, or a resync). The mirror keeps what it had.
    Syncing,
    /// Subscribed and up to date as far as the client can tell.
    Live,
    /// The notice stream is down; reconnecting with backoff.
    Reconnecting {
        /// Reconnect attempts so far (1 on the first retry).
        attempt: u32,
        /// When the stream went down.
        since: Instant,
    },
    /// Down for longer than the stale threshold: what displays show may be old.
    Stale {
        /// When the stream went down.
        since: Instant,
    },
    /// Notices arrive, but fetching the lots they name has kept failing for longer
    /// than the degraded threshold (a stalled replica, 503s): the mirror trails them.
    Degraded {
        /// When the first of the failing fetches failed.
        since: Instant,
    },
    /// A background task of the client stopped unexpectedly (a bug, reported in the
    /// logs): the mirror no longer changes.
    Failed,
    /// The client was shut down.
    Closed,
}

impl ConnectionState {
    /// Whether the client is live.
    pub fn is_live(&self) -> bool {
        matches!(self, ConnectionState::Live)
    }

    /// Whether displays should mark their data as possibly old.
    ///
    /// ```
    /// use lotsync::ConnectionState;
    /// assert!(ConnectionState::Syncing.is_stale());
    /// assert!(!ConnectionState::Live.is_stale());
    /// ```
    pub fn is_stale(&self) -> bool {
        !self.is_live()
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionState::Connecting => f.write_str("connecting"),
            ConnectionState::Syncing => f.write_str("syncing"),
            ConnectionState::Live => f.write_str("live"),
            ConnectionState::Reconnecting { attempt, since } => {
                write!(
                    f,
                    "reconnecting (attempt {attempt}, {}s)",
                    since.elapsed().as_secs()
                )
            }
            ConnectionState::Stale { since } => write!(f, "stale ({}s)", since.elapsed().as_secs()),
            ConnectionState::Degraded { since } => {
                write!(f, "degraded ({}s)", since.elapsed().as_secs())
            }
            ConnectionState::Failed => f.write_str("failed"),
            ConnectionState::Closed => f.write_str("closed"),
        }
    }
}

#[derive(Debug)]
struct Inputs {
    /// What the notice stream's task says.
    stream: ConnectionState,
    /// Since when fetches have failed without a success in between.
    failing_since: Option<Instant>,
    /// A background task died: nothing changes the mirror any more.
    failed: bool,
    /// What was last announced.
    published: ConnectionState,
}

/// Combines what the stream task and the fetcher know into one announced state:
/// `Live` only while both the notices and the fetches of what they name work.
#[derive(Debug)]
pub(crate) struct StatePublisher {
    inputs: Mutex<Inputs>,
    sender: watch::Sender<ConnectionState>,
    mirror: Mirror,
    degraded_after: Duration,
}

impl StatePublisher {
    pub fn new(
        mirror: Mirror,
        degraded_after: Duration,
    ) -> (Arc<Self>, watch::Receiver<ConnectionState>) {
        let (sender, receiver) = watch::channel(ConnectionState::Connecting);
        let publisher = StatePublisher {
            inputs: Mutex::new(Inputs {
                stream: ConnectionState::Connecting,
                failing_since: None,
                failed: false,
                published: ConnectionState::Connecting,
            }),
            sender,
            mirror,
            degraded_after,
        };
        (Arc::new(publisher), receiver)
    }

    /// The stream task's view changed.
    pub fn set_stream(&self, state: ConnectionState) {
        self.update(|inputs| inputs.stream = state);
    }

    /// A fetch failed (an error, a 503, an answer older than needed).
    pub fn fetch_failed(&self) {
        let now = Instant::now();
        self.update(|inputs| {
            inputs.failing_since.get_or_insert(now);
        });
    }

    /// A fetch (or a snapshot) was answered in full: the master serves again.
    pub fn fetch_succeeded(&self) {
        self.update(|inputs| inputs.failing_since = None);
    }

    /// A background task stopped unexpectedly: `Failed` from now on.
    pub fn fail(&self) {
        self.update(|inputs| inputs.failed = true);
    }

    /// The current announced state.
    #[cfg(test)]
    pub fn current(&self) -> ConnectionState {
        *self.sender.borrow()
    }

    fn update(&self, change: impl FnOnce(&mut Inputs)) {
        let mut inputs = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut inputs);
        let effective = match (inputs.stream, inputs.failing_since) {
            (ConnectionState::Closed, _) => ConnectionState::Closed,
            _ if inputs.failed => ConnectionState::Failed,
            (ConnectionState::Live, Some(since)) if since.elapsed() >= self.degraded_after => {
                ConnectionState::Degraded { since }
            }
            (stream, _) => stream,
        };
        if effective == inputs.published {
            return;
        }
        inputs.published = effective;
        // Announced under the lock, so two writers never publish out of order.
        self.mirror.set_state(effective);
        self.sender.send_replace(effective);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_fetches_degrade_a_live_state_past_the_threshold_only() {
        let (publisher, receiver) = StatePublisher::new(Mirror::default(), Duration::ZERO);
        publisher.set_stream(ConnectionState::Live);
        assert_eq!(*receiver.borrow(), ConnectionState::Live);
        publisher.fetch_failed();
        assert!(matches!(
            publisher.current(),
            ConnectionState::Degraded { .. }
        ));
        assert!(!publisher.current().is_live());
        publisher.set_stream(ConnectionState::Live);
        assert!(
            matches!(publisher.current(), ConnectionState::Degraded { .. }),
            "a healthy stream does not hide failing fetches"
        );
        publisher.fetch_succeeded();
        assert_eq!(publisher.current(), ConnectionState::Live);

        let (patient, _receiver) =
            StatePublisher::new(Mirror::default(), Duration::from_secs(3600));
        patient.set_stream(ConnectionState::Live);
        patient.fetch_failed();
        assert_eq!(
            patient.current(),
            ConnectionState::Live,
            "one failure is not degraded"
        );
    }

    #[test]
    fn a_stream_outage_outranks_failing_fetches() {
        let mirror = Mirror::default();
        let (publisher, _receiver) = StatePublisher::new(mirror.clone(), Duration::ZERO);
        publisher.fetch_failed();
        let since = Instant::now();
        publisher.set_stream(ConnectionState::Stale { since });
        assert_eq!(publisher.current(), ConnectionState::Stale { since });
        assert!(mirror.is_stale());
    }
}
