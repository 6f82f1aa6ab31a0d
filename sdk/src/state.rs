//! Connection state, published on a `tokio::sync::watch` channel.

use std::fmt;
use std::time::Instant;

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
            ConnectionState::Failed => f.write_str("failed"),
            ConnectionState::Closed => f.write_str("closed"),
        }
    }
}
