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
//!   "currency":"EUR","starting_price":500000,"increment":10000,"reserve_price":null,
//!   "current_price":500000,"bid_count":0,"leading_bidder":null,"status":"open",
//!   "starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z",
//!   "seq":7,"updated_at":"2026-01-01T10:00:00Z","recent_bids":[]}"#;
//! let lot: Lot = serde_json::from_str(json).unwrap();
//! assert_eq!(lot.status, LotStatus::Open);
//! assert_eq!(lot.min_next_bid(), 500000);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// Status of a lot. Transitions: `scheduled → open → closed → sold | passed`, and
/// `withdrawn` from any status that is not final.
///
/// ```
/// use lotsync::protocol::LotStatus::*;
/// assert!(Scheduled.can_become(Open));
/// assert!(Open.can_become(Withdrawn));
/// assert!(!Sold.can_become(Open));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum LotStatus {
    /// Announced, not yet taking bids.
    Scheduled,
    /// Taking bids.
    Open,
    /// Bidding ended; the result is not settled yet.
    Closed,
    /// Settled to the leading bidder.
    Sold,
    /// Settled without a sale (no bid, or reserve not met).
    Passed,
    /// Taken out of the auction.
    Withdrawn,
}

impl LotStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [LotStatus; 6] = [
        LotStatus::Scheduled,
        LotStatus::Open,
        LotStatus::Closed,
        LotStatus::Sold,
        LotStatus::Passed,
        LotStatus::Withdrawn,
    ];

    /// Whether no further status change is possible.
    ///
    /// ```
    /// assert!(lotsync::protocol::LotStatus::Sold.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        matches!(
            self,
            LotStatus::Sold | LotStatus::Passed | LotStatus::Withdrawn
        )
    }

    /// Whether `self → next` is an allowed transition.
    ///
    /// ```
    /// use lotsync::protocol::LotStatus;
    /// assert!(LotStatus::Closed.can_become(LotStatus::Sold));
    /// assert!(!LotStatus::Scheduled.can_become(LotStatus::Closed));
    /// ```
    pub fn can_become(self, next: LotStatus) -> bool {
        use LotStatus::*;
        match (self, next) {
            (Scheduled, Open) | (Open, Closed) | (Closed, Sold) | (Closed, Passed) => true,
            (from, Withdrawn) => !from.is_final(),
            _ => false,
        }
    }

    /// The wire name (`"open"`, ...).
    ///
    /// ```
    /// assert_eq!(lotsync::protocol::LotStatus::Open.as_str(), "open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            LotStatus::Scheduled => "scheduled",
            LotStatus::Open => "open",
            LotStatus::Closed => "closed",
            LotStatus::Sold => "sold",
            LotStatus::Passed => "passed",
            LotStatus::Withdrawn => "withdrawn",
        }
    }
}

impl fmt::Display for LotStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LotStatus {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LotStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| FieldError::new("status", format!("unknown status {s:?}")))
    }
}

/// A lot as the master serves it: its data, its price state and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    /// Identifier: 1–64 characters of `A-Z a-z 0-9 - _`.
    pub id: String,
    /// Human title, for example "2017 Volvo V90 D4 Momentum".
    pub title: String,
    /// Descriptive attributes (make, model, year, mileage_km, ...): strings, integers or booleans.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Minimum amount of the first bid.
    pub starting_price: Money,
    /// Minimum step between consecutive bids.
    pub increment: Money,
    /// Lowest amount at which the lot sells, if any.
    pub reserve_price: Option<Money>,
    /// Highest accepted bid, or the starting price while there is none.
    pub current_price: Money,
    /// Number of accepted bids.
    pub bid_count: u32,
    /// Bidder holding the highest bid.
    pub leading_bidder: Option<String>,
    /// Lifecycle status.
    pub status: LotStatus,
    /// When bidding opens.
    pub starts_at: DateTime<Utc>,
    /// When bidding closes (moves later when a bid arrives in the last seconds).
    pub ends_at: DateTime<Utc>,
    /// Version: sequence number of the last operation that changed this lot.
    pub seq: Seq,
    /// Commit time of the operation that produced this version.
    pub updated_at: DateTime<Utc>,
    /// Most recent accepted bids, newest first, at most [`RECENT_BIDS`].
    pub recent_bids: Vec<Bid>,
}

impl Lot {
    /// Smallest amount the next bid must reach.
    ///
    /// ```
    /// # let mut lot = lotsync::protocol::Lot::example("a");
    /// lot.bid_count = 0;
    /// assert_eq!(lot.min_next_bid(), lot.starting_price);
    /// lot.bid_count = 1;
    /// lot.current_price = 1_000;
    /// lot.increment = 50;
    /// assert_eq!(lot.min_next_bid(), 1_050);
    /// ```
    pub fn min_next_bid(&self) -> Money {
        if self.bid_count == 0 {
            self.starting_price
        } else {
            self.current_price.saturating_add(self.increment)
        }
    }

    /// Whether the reserve price (if any) is met by the current highest bid.
    ///
    /// ```
    /// # let mut lot = lotsync::protocol::Lot::example("a");
    /// lot.reserve_price = None;
    /// lot.bid_count = 1;
    /// assert!(lot.reserve_met());
    /// ```
    pub fn reserve_met(&self) -> bool {
        self.bid_count > 0 && self.reserve_price.is_none_or(|r| self.current_price >= r)
    }

    /// A small valid lot for examples and tests.
    ///
    /// ```
    /// let lot = lotsync::protocol::Lot::example("lot-7");
    /// assert_eq!(lot.id, "lot-7");
    /// ```
    pub fn example(id: &str) -> Lot {
        let at = DateTime::<Utc>::from_timestamp(1_767_261_600, 0).unwrap_or_default();
        Lot {
            id: id.to_owned(),
            title: format!("Example car {id}"),
            attributes: BTreeMap::new(),
            currency: "EUR".to_owned(),
            starting_price: 100_000,
            increment: 5_000,
            reserve_price: None,
            current_price: 100_000,
            bid_count: 0,
            leading_bidder: None,
            status: LotStatus::Open,
            starts_at: at,
            ends_at: at + chrono::Duration::hours(1),
            seq: 1,
            updated_at: at,
            recent_bids: Vec::new(),
        }
    }
}

/// An accepted bid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// Lot the bid was placed on.
    pub lot_id: String,
    /// Name of the authenticated bidder.
    pub bidder: String,
    /// Amount in minor units.
    pub amount: Money,
    /// Sequence number of the operation that recorded the bid.
    pub seq: Seq,
    /// Commit time.
    pub at: DateTime<Utc>,
}

/// Body of `PUT /v1/lots/{id}`: create or replace a lot's data.
///
/// Price state (current price, bids, leader) is kept when a lot is replaced.
///
/// ```
/// use lotsync::protocol::LotInput;
/// let input: LotInput = serde_json::from_str(r#"{"title":"Saab 9-3","currency":"SEK",
///   "starting_price":2000000,"increment":50000,
///   "starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z"}"#).unwrap();
/// assert!(input.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotInput {
    /// Human title, 1–200 characters, no control characters.
    pub title: String,
    /// At most 32 attributes; keys `[a-z0-9_]{1,32}`; values strings (≤ 200 chars), integers or booleans.
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// ISO 4217 code: three upper-case letters.
    pub currency: String,
    /// Minimum first bid, 1..=[`MAX_MONEY`].
    pub starting_price: Money,
    /// Minimum step, 1..=[`MAX_MONEY`].
    pub increment: Money,
    /// Optional reserve, 1..=[`MAX_MONEY`].
    #[serde(default)]
    pub reserve_price: Option<Money>,
    /// Initial status (`scheduled` when left out). On replace, must equal the current
    /// status or be a valid transition from it.
    #[serde(default)]
    pub status: Option<LotStatus>,
    /// When bidding opens.
    pub starts_at: DateTime<Utc>,
    /// When bidding closes; must be after `starts_at`.
    pub ends_at: DateTime<Utc>,
}

impl LotInput {
    /// Check every field; the error names the first field that is wrong.
    ///
    /// ```
    /// # use lotsync::protocol::LotInput;
    /// # let mut input: LotInput = serde_json::from_str(r#"{"title":"x","currency":"EUR",
    /// #  "starting_price":1,"increment":1,
    /// #  "starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z"}"#).unwrap();
    /// input.increment = 0;
    /// assert_eq!(input.validate().unwrap_err().field, "increment");
    /// ```
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_text("title", &self.title, 200)?;
        if self.attributes.len() > 32 {
            return Err(FieldError::new("attributes", "at most 32 attributes"));
        }
        for (key, value) in &self.attributes {
            let key_ok = !key.is_empty()
                && key.len() <= 32
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !key_ok {
                return Err(FieldError::new(
                    format!("attributes.{}", printable(key)),
                    "attribute names are 1-32 characters of a-z, 0-9 and _",
                ));
            }
            match value {
                serde_json::Value::String(s) => {
                    validate_text(&format!("attributes.{key}"), s, 200)?
                }
                serde_json::Value::Bool(_) => {}
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {}
                _ => {
                    return Err(FieldError::new(
                        format!("attributes.{key}"),
                        "attribute values are strings, integers or booleans",
                    ));
                }
            }
        }
        let currency_ok =
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase());
        if !currency_ok {
            return Err(FieldError::new("currency", "an ISO 4217 code such as EUR"));
        }
        validate_money("starting_price", self.starting_price)?;
        validate_money("increment", self.increment)?;
        if let Some(reserve) = self.reserve_price {
            validate_money("reserve_price", reserve)?;
        }
        if self.ends_at <= self.starts_at {
            return Err(FieldError::new("ends_at", "must be after starts_at"));
        }
        Ok(())
    }
}

/// Body of `POST /v1/lots/{id}/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// The new status.
    pub status: LotStatus,
}

/// Body of `POST /v1/lots/{id}/bids`.
///
/// ```
/// let bid = lotsync::protocol::BidRequest { amount: 1_500_00 };
/// assert!(bid.validate().is_ok());
/// assert!(lotsync::protocol::BidRequest { amount: 0 }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidRequest {
    /// Amount in minor units, 1..=[`MAX_MONEY`].
    pub amount: Money,
}

impl BidRequest {
    /// Check the amount.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_money("amount", self.amount)
    }
}

/// Kind of operation in the log, carried by a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
pub struct Notice {
    /// Sequence number of the operation (also the SSE event id).
    pub seq: Seq,
    /// Lot the operation changed.
    pub lot_id: String,
    /// What kind of operation it was.
    pub kind: OpKind,
    /// Commit time on the master's clock.
    pub at: DateTime<Utc>,
}

/// First event of every notice stream (SSE event `hello`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct Heartbeat {
    /// Epoch of the master's history.
    pub epoch: String,
    /// Last sequence committed.
    pub head: Seq,
    /// Master's clock.
    pub at: DateTime<Utc>,
}

/// The requested resume point cannot be served (SSE event `reset`): resynchronise from
/// a snapshot. The stream continues live after it, from `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct ChangesResponse {
    /// Epoch of the master's history.
    pub epoch: String,
    /// Last sequence committed.
    pub head: Seq,
    /// The entries, in sequence order, without gaps.
    pub changes: Vec<Notice>,
}

/// Response of `GET /v1/replication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[serde(deny_unknown_fields)]
pub struct ChaosPatch {
    /// Delay, in ms, before the replicator applies each entry (0 turns off).
    #[serde(default)]
    pub replica_lag_ms: Option<u64>,
    /// When true, the lag is random between 0 and `replica_lag_ms`.
    #[serde(default)]
    pub replica_lag_random: Option<bool>,
    /// Probability (0..=1) of dropping a notice on its way to a subscriber.
    #[serde(default)]
    pub notice_drop_rate: Option<f64>,
    /// Probability (0..=1) of a fetch failing with 500.
    #[serde(default)]
    pub fetch_error_rate: Option<f64>,
    /// Delay, in ms, added to every fetch (0 turns off).
    #[serde(default)]
    pub fetch_delay_ms: Option<u64>,
    /// True: cut every open notice stream now (not remembered).
    #[serde(default)]
    pub cut_streams: Option<bool>,
    /// True: stop applying the log to the replica until set false.
    #[serde(default)]
    pub pause_replicator: Option<bool>,
}

/// Faults currently active (`GET /v1/chaos`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
}

/// Error body of every non-2xx response: `{"error": {...}}`.
///
/// ```
/// let body: lotsync::protocol::ErrorBody = serde_json::from_str(
///     r#"{"error":{"code":"bid_too_low","message":"at least 1050","field":"amount","min_next_bid":1050}}"#).unwrap();
/// assert_eq!(body.error.min_next_bid, Some(1050));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// Details of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable code, one of [`codes`].
    pub code: String,
    /// Human explanation.
    pub message: String,
    /// The input field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `bid_too_low`: the smallest acceptable amount now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_next_bid: Option<Money>,
    /// For `lot_not_open` and `invalid_transition`: the lot's current status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LotStatus>,
}

/// Values of [`ApiError::code`].
pub mod codes {
    /// 401: no or unknown bearer token.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: the token's role may not do this.
    pub const FORBIDDEN: &str = "forbidden";
    /// 404: no such lot or route.
    pub const NOT_FOUND: &str = "not_found";
    /// 400: the body is not valid JSON or has the wrong shape.
    pub const INVALID_BODY: &str = "invalid_body";
    /// 400/422: a field has a bad value (see `field`).
    pub const INVALID_FIELD: &str = "invalid_field";
    /// 413: the body is too large.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 409: the bid is below the minimum next bid (see `min_next_bid`).
    pub const BID_TOO_LOW: &str = "bid_too_low";
    /// 409: the lot is not open for bids (see `status`).
    pub const LOT_NOT_OPEN: &str = "lot_not_open";
    /// 409: the status change is not allowed from the current status.
    pub const INVALID_TRANSITION: &str = "invalid_transition";
    /// 409: an idempotency key was reused with a different request.
    pub const IDEMPOTENCY_CONFLICT: &str = "idempotency_conflict";
    /// 503: the replica has not reached `min_seq` in time (see Retry-After).
    pub const REPLICA_BEHIND: &str = "replica_behind";
    /// 410: `after` is older than the retained history; resynchronise.
    pub const HISTORY_TRUNCATED: &str = "history_truncated";
    /// 404: fault injection is not enabled on this master.
    pub const CHAOS_DISABLED: &str = "chaos_disabled";
    /// 500: injected or internal failure.
    pub const INTERNAL: &str = "internal";
}

/// A validation failure naming the field at fault.
///
/// ```
/// let err = lotsync::protocol::validate_lot_id("a/b").unwrap_err();
/// assert_eq!(err.field, "id");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Build one.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Check a lot id: 1–[`MAX_LOT_ID_LEN`] characters of `A-Z a-z 0-9 - _`.
///
/// ```
/// assert!(lotsync::protocol::validate_lot_id("lot-17_b").is_ok());
/// assert!(lotsync::protocol::validate_lot_id("").is_err());
/// ```
pub fn validate_lot_id(id: &str) -> Result<(), FieldError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_LOT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "id",
            format!("lot ids are 1-{MAX_LOT_ID_LEN} characters of A-Z, a-z, 0-9, - and _"),
        ))
    }
}

/// Check an amount of money: 1..=[`MAX_MONEY`].
///
/// ```
/// assert!(lotsync::protocol::validate_money("amount", -5).is_err());
/// ```
pub fn validate_money(field: &str, amount: Money) -> Result<(), FieldError> {
    if (1..=MAX_MONEY).contains(&amount) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be between 1 and {MAX_MONEY} minor units"),
        ))
    }
}

fn validate_text(field: &str, value: &str, max_chars: usize) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A short, printable rendering of untrusted text for error messages.
fn printable(text: &str) -> String {
    text.chars()
        .take(40)
        .flat_map(char::escape_default)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LotInput {
        serde_json::from_str(
            r#"{"title":"Volvo","currency":"EUR","starting_price":100,"increment":10,
                "starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z"}"#,
        )
        .unwrap()
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        use LotStatus::*;
        let allowed: Vec<(LotStatus, LotStatus)> = LotStatus::ALL
            .iter()
            .flat_map(|a| LotStatus::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Scheduled, Open),
                (Scheduled, Withdrawn),
                (Open, Closed),
                (Open, Withdrawn),
                (Closed, Sold),
                (Closed, Passed),
                (Closed, Withdrawn),
            ]
        );
    }

    #[test]
    fn lot_input_names_the_bad_field() {
        type Mutation = Box<dyn Fn(&mut LotInput)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("title", Box::new(|i| i.title = " ".into())),
            ("title", Box::new(|i| i.title = "a\u{7}b".into())),
            ("title", Box::new(|i| i.title = "x".repeat(201))),
            ("currency", Box::new(|i| i.currency = "eur".into())),
            ("starting_price", Box::new(|i| i.starting_price = 0)),
            ("increment", Box::new(|i| i.increment = MAX_MONEY + 1)),
            ("reserve_price", Box::new(|i| i.reserve_price = Some(-1))),
            ("ends_at", Box::new(|i| i.ends_at = i.starts_at)),
            (
                "attributes.Make",
                Box::new(|i| {
                    i.attributes.insert("Make".into(), "Volvo".into());
                }),
            ),
            (
                "attributes.km",
                Box::new(|i| {
                    i.attributes.insert("km".into(), serde_json::json!(1.5));
                }),
            ),
        ];
        assert!(input().validate().is_ok());
        for (field, mutate) in cases {
            let mut bad = input();
            mutate(&mut bad);
            assert_eq!(bad.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<BidRequest>(r#"{"amount":5,"extra":1}"#).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn lot_ids_reject_separators_and_length() {
        for bad in ["a/b", "..", "a b", "é", &"x".repeat(65), "a\nb"] {
            assert!(validate_lot_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_lot_id(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn status_parses_from_wire_names() {
        for status in LotStatus::ALL {
            assert_eq!(status.as_str().parse::<LotStatus>().unwrap(), status);
        }
        assert_eq!("OPEN".parse::<LotStatus>().unwrap_err().field, "status");
    }
}
