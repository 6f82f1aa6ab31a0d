//! The notice stream's events, snapshots and batch fetches, and the change log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Lot, Seq};

/// Kind of operation in the log, carried by a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// A lot was created or its data replaced.
    Upsert,
    /// Only the lot's status changed (including automatic closes).
    Status,
    /// A bid was accepted.
    Bid,
}

impl OpKind {
    /// The wire name.
    ///
    /// ```
    /// assert_eq!(lotsync::protocol::OpKind::Bid.as_str(), "bid");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Upsert => "upsert",
            OpKind::Status => "status",
            OpKind::Bid => "bid",
        }
    }
}

/// A notice: "lot `lot_id` changed at sequence `seq`". SSE event `notice`, id = `seq`.
///
/// ```
/// let n: lotsync::protocol::Notice = serde_json::from_str(
///     r#"{"seq":42,"lot_id":"lot-1","kind":"bid","at":"2026-01-01T10:00:00.000123Z"}"#).unwrap();
/// assert_eq!(n.seq, 42);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Notice {
    /// Sequence number of the operation (also the SSE event id).
    pub seq: Seq,
    /// Lot the operation changed.
    pub lot_id: String,
    /// What kind of operation it was.
    pub kind: OpKind,
    /// Commit time on the master's clock.
    pub at: DateTime<Utc>,
    /// The lot itself, at this version or a newer one: only on streams opened with
    /// `?lots=inline`, so a display needs no fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<Box<Lot>>,
}

/// First event of every notice stream (SSE event `hello`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Hello {
    /// Identity of the master's history; a new epoch means old sequence numbers are void.
    pub epoch: String,
    /// Last sequence committed when the stream opened.
    pub head: Seq,
    /// Interval between heartbeats, in milliseconds.
    pub heartbeat_ms: u64,
}

/// Periodic liveness event (SSE event `heartbeat`). Every notice up to `head` has been
/// sent on this stream before the heartbeat, so `head` beyond the last notice seen
/// means notices were missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    /// Epoch of the master's history.
    pub epoch: String,
    /// Last sequence committed.
    pub head: Seq,
    /// Master's clock.
    pub at: DateTime<Utc>,
    /// Set by a terminal server that lost its upstream: what it serves may be old.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// The requested resume point cannot be served (SSE event `reset`): resynchronise from
/// a snapshot. The stream continues live after it, from `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Reset {
    /// Epoch of the master's history.
    pub epoch: String,
    /// Last sequence committed.
    pub head: Seq,
    /// Oldest sequence still retained in the log (0 when the log is empty).
    pub oldest_retained: Seq,
    /// Human explanation, for logs.
    pub reason: String,
}

/// Response of `GET /v1/lots` (a snapshot of every lot) and of the batch fetch
/// `GET /v1/lots?ids=...`: lots read from the replica in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct LotsResponse {
    /// Epoch of the master's history.
    pub epoch: String,
    /// The replica's applied sequence the read is consistent as of.
    pub seq: Seq,
    /// The lots, ordered by id.
    pub lots: Vec<Lot>,
    /// Requested ids that do not exist (batch fetch only).
    #[serde(default)]
    pub missing: Vec<String>,
}

/// Response of `GET /v1/changes?after=N`: log entries after N, for catching up on
/// notices that were missed. 410 `history_truncated` when N is older than the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ChangesResponse {
    /// Epoch of the master's history.
    pub epoch: String,
    /// Last sequence committed.
    pub head: Seq,
    /// The entries, in sequence order, without gaps.
    pub changes: Vec<Notice>,
}
