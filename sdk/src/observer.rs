//! What a relay needs to know of the sync task: every notice it accepted, every
//! snapshot it loaded, every heartbeat, in order.

use crate::protocol::{Heartbeat, Notice, Seq};

/// Told what the sync task sees, in order: a terminal server relays it downstream.
pub(crate) trait SyncObserver: Send + Sync {
    /// The mirror was loaded from a snapshot of `epoch` consistent as of `seq`;
    /// `rewound` when it replaced a history that went back under the same epoch.
    fn resynced(&self, epoch: &str, seq: Seq, rewound: bool);
    /// The cursor accepted this notice (the next in sequence).
    fn noticed(&self, notice: Notice);
    /// A heartbeat of the current epoch arrived.
    fn heartbeat(&self, heartbeat: &Heartbeat);
}
