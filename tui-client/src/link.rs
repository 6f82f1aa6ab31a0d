//! The connection state as the screen shows it.

use chrono::{DateTime, Utc};

use crate::format;

/// Connection state as the screen shows it. Mirrors the SDK's state, with wall-clock
/// times so it renders the same in tests as live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Nothing received yet.
    Connecting,
    /// Loading a snapshot.
    Syncing,
    /// Up to date.
    Live,
    /// The notice stream is down and being re-established.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// When the stream went down.
        since: DateTime<Utc>,
    },
    /// Down long enough that the data may be old.
    Stale {
        /// When the stream went down.
        since: DateTime<Utc>,
    },
    /// Notices arrive but fetching the lots they name keeps failing: prices shown
    /// may trail them.
    Degraded {
        /// When fetches started failing.
        since: DateTime<Utc>,
    },
    /// The client stopped updating (an internal failure, in the log).
    Failed,
    /// The client has shut down.
    Closed,
}

impl Link {
    /// Whether the data on screen is current.
    pub fn is_live(self) -> bool {
        self == Link::Live
    }

    /// Short upper-case label for the header badge.
    pub fn label(self, now: DateTime<Utc>) -> String {
        let ago = |since: DateTime<Utc>| format::duration((now - since).num_seconds());
        match self {
            Link::Connecting => "CONNECTING".to_owned(),
            Link::Syncing => "SYNCING".to_owned(),
            Link::Live => "LIVE".to_owned(),
            Link::Reconnecting { attempt, since } => {
                format!("RECONNECTING #{attempt} · {}", ago(since))
            }
            Link::Stale { since } => format!("STALE · {}", ago(since)),
            Link::Degraded { since } => format!("DEGRADED · {}", ago(since)),
            Link::Failed => "FAILED".to_owned(),
            Link::Closed => "CLOSED".to_owned(),
        }
    }
}
