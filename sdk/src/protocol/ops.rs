//! Operational bodies: replication status and fault injection.

use serde::{Deserialize, Serialize};

use super::Seq;

/// Response of `GET /v1/replication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ReplicationStatus {
    /// Epoch of the master's history.
    pub epoch: String,
    /// Last sequence committed in the primary.
    pub primary_head: Seq,
    /// Last sequence applied to the replica.
    pub replica_applied: Seq,
    /// `primary_head - replica_applied`.
    pub lag_ops: u64,
    /// Age of the oldest unapplied operation, in milliseconds (0 when caught up).
    pub lag_ms: u64,
}

/// Body of `POST /v1/chaos`: every field left out keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChaosPatch {
    /// Delay, in ms, before the replicator applies each entry (0 turns off).
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::fault_delay_ms))]
    pub replica_lag_ms: Option<u64>,
    /// When true, the lag is random between 0 and `replica_lag_ms`.
    #[serde(default)]
    pub replica_lag_random: Option<bool>,
    /// Probability (0..=1) of dropping a notice on its way to a subscriber.
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::rate))]
    pub notice_drop_rate: Option<f64>,
    /// Probability (0..=1) of a fetch failing with 500.
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::rate))]
    pub fetch_error_rate: Option<f64>,
    /// Delay, in ms, added to every fetch (0 turns off).
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::fault_delay_ms))]
    pub fetch_delay_ms: Option<u64>,
    /// True: cut every open notice stream now (not remembered).
    #[serde(default)]
    pub cut_streams: Option<bool>,
    /// True: stop applying the log to the replica until set false.
    #[serde(default)]
    pub pause_replicator: Option<bool>,
    /// True: stop publishing the log to NATS JetStream until set false (committed
    /// entries are published, in order, once it is).
    #[serde(default)]
    pub pause_publisher: Option<bool>,
}

/// Faults currently active (`GET /v1/chaos`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ChaosSettings {
    /// Delay before the replicator applies each entry, ms.
    pub replica_lag_ms: u64,
    /// Whether the lag is random up to `replica_lag_ms`.
    pub replica_lag_random: bool,
    /// Probability of dropping a notice.
    pub notice_drop_rate: f64,
    /// Probability of a fetch failing with 500.
    pub fetch_error_rate: f64,
    /// Delay added to every fetch, ms.
    pub fetch_delay_ms: u64,
    /// Whether the replicator is paused.
    pub pause_replicator: bool,
    /// Whether publishing to NATS JetStream is paused.
    #[serde(default)]
    pub pause_publisher: bool,
}

/// Largest injected delay accepted (`replica_lag_ms`, `fetch_delay_ms`), in milliseconds.
pub const MAX_FAULT_DELAY_MS: u64 = 60_000;
