//! Wire types shared by the master and the SDK, so the two can never drift apart.
//!
//! Everything the master sends or accepts over HTTP and Server-Sent Events is defined
//! here, together with the validation rules for input bodies. PROTOCOL.md describes the
//! same contract in prose.
//!
//! Money is always an integer number of minor units (cents); sequence numbers are the
//! positions of operations in the master's gap-free operation log.
//!
//! ```
//! use lotsync::protocol::{Lot, LotStatus};
//!
//! let json = r#"{"id":"lot-1","title":"2015 Volvo V70","attributes":{"make":"Volvo"},
//!   "currency":"EUR","starting_price":500000,"increment":10000,"reserve_met":false,
//!   "current_price":500000,"bid_count":0,"leading_bidder":null,"status":"open",
//!   "starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z",
//!   "seq":7,"updated_at":"2026-01-01T10:00:00Z","recent_bids":[]}"#;
//! let lot: Lot = serde_json::from_str(json).unwrap();
//! assert_eq!(lot.status, LotStatus::Open);
//! assert_eq!(lot.min_next_bid(), 500000);
//! ```

//!
//! # Layout
//! - `lot`: lots, bids, statuses and the bodies that create or change them.
//! - `ladder`: increment ladders (the bid step by price band).
//! - `bidding`: bid and maximum requests, receipts, the audit trail, lane settings.
//! - `stream`: notices and the other notice-stream events, snapshots, change log.
//! - `ops`: replication status and fault-injection settings.
//! - `errors`: the error body, its codes, and field validation.
//! - `schema` (feature `server`): schemas of constrained fields for the OpenAPI derives.
//! - [`jetstream`]: names and bodies of the notice log on NATS JetStream.

mod bidding;
mod errors;
pub mod jetstream;
mod ladder;
mod lot;
mod ops;
#[cfg(feature = "server")]
mod schema;
mod stream;

pub use bidding::{
    AuditAction, AuditEntry, AuditOrigin, BidReceipt, BidRequest, Lane, LaneSettings, MaxStatus,
};
pub use errors::{ApiError, ErrorBody, FieldError, codes, validate_lot_id, validate_money};
pub use ladder::{IncrementBand, Ladder, MAX_BANDS};
pub use lot::{AdminLot, Bid, Lot, LotInput, LotStatus, StatusChange, validate_lane};
pub use ops::{ChaosPatch, ChaosSettings, MAX_FAULT_DELAY_MS, ReplicationStatus};
pub use stream::{ChangesResponse, Heartbeat, Hello, LotsResponse, Notice, OpKind, Reset};

/// Position of an operation in the master's operation log; also a lot's version.
pub type Seq = u64;

/// An amount of money in minor units (for example euro cents).
pub type Money = i64;

/// Largest amount accepted anywhere (10^13 minor units): far above any car's price,
/// far below `i64::MAX`, so `price + increment` can never overflow.
pub const MAX_MONEY: Money = 10_000_000_000_000;

/// Longest lot id accepted.
pub const MAX_LOT_ID_LEN: usize = 64;

/// Most bids carried in [`Lot::recent_bids`].
pub const RECENT_BIDS: usize = 10;

/// SSE event name of a [`Notice`].
pub const EVENT_NOTICE: &str = "notice";
/// SSE event name of a [`Heartbeat`].
pub const EVENT_HEARTBEAT: &str = "heartbeat";
/// SSE event name of a [`Hello`], the first event of every stream.
pub const EVENT_HELLO: &str = "hello";
/// SSE event name of a [`Reset`].
pub const EVENT_RESET: &str = "reset";

/// Header carrying a bid's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
