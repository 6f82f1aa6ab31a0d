//! Bidding bodies: bids and maximum (proxy) bids, their receipts, a bidder's view of
//! their own maximum, the audit trail, and lane settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Bid, FieldError, Money, Seq, validate_money};

/// Body of `POST /v1/lots/{id}/bids`: a bid (`amount`), a maximum (`max_amount`) the
/// master bids up to on the bidder's behalf, or both.
///
/// ```
/// use lotsync::protocol::BidRequest;
/// assert!(BidRequest::amount(150_000).validate().is_ok());
/// assert!(BidRequest::max(900_000).validate().is_ok());
/// assert!(BidRequest::amount(0).validate().is_err());
/// let both = BidRequest { amount: Some(500), max_amount: Some(400) };
/// assert_eq!(both.validate().unwrap_err().field, "max_amount");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BidRequest {
    /// A bid of this amount, 1..=[`MAX_MONEY`](super::MAX_MONEY), now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub amount: Option<Money>,
    /// The most the master may bid for this bidder, never shown to anyone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub max_amount: Option<Money>,
}

impl BidRequest {
    /// A plain bid.
    pub fn amount(amount: Money) -> BidRequest {
        BidRequest {
            amount: Some(amount),
            max_amount: None,
        }
    }

    /// A maximum alone: the master bids only as far as needed to lead.
    pub fn max(max_amount: Money) -> BidRequest {
        BidRequest {
            amount: None,
            max_amount: Some(max_amount),
        }
    }

    /// Check the amounts: at least one, each in range, the bid not above the maximum.
    pub fn validate(&self) -> Result<(), FieldError> {
        match (self.amount, self.max_amount) {
            (None, None) => Err(FieldError::new(
                "amount",
                "give an amount, a max_amount, or both",
            )),
            (Some(amount), None) => validate_money("amount", amount),
            (amount, Some(max)) => {
                if let Some(amount) = amount {
                    validate_money("amount", amount)?;
                }
                validate_money("max_amount", max)?;
                if amount.is_some_and(|a| a > max) {
                    return Err(FieldError::new("max_amount", "must be at least amount"));
                }
                Ok(())
            }
        }
    }
}

/// Answer to `POST /v1/lots/{id}/bids` (201): the caller's latest bid on the lot after
/// the request, and where they stand.
///
/// `lot_id, bidder, amount, seq, at` are the bid's, as before maximums existed. A
/// maximum that placed no bid (raised while leading) answers with the current price
/// and the lot's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct BidReceipt {
    /// The bid.
    #[serde(flatten)]
    pub bid: Bid,
    /// Whether this request placed `bid` (false when a maximum changed while the
    /// caller led: `bid` is then their standing bid, placed earlier).
    #[serde(default = "placed_default")]
    pub placed: bool,
    /// The caller's maximum on this lot, if they have one (only ever sent to them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub max_amount: Option<Money>,
    /// Whether the caller leads after the request.
    #[serde(default)]
    pub leading: bool,
    /// The lot's price after the request (maximums may have answered).
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub current_price: Money,
    /// The lot's version after the request: fetch with this `min_seq` to see it.
    #[serde(default)]
    pub lot_seq: Seq,
}

fn placed_default() -> bool {
    true
}

/// `GET /v1/lots/{id}/max` (the bidder's own): their maximum and where they stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct MaxStatus {
    /// The lot.
    pub lot_id: String,
    /// The caller.
    pub bidder: String,
    /// The caller's maximum, if they set one.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money_or_null))]
    pub max_amount: Option<Money>,
    /// Whether the caller leads.
    pub leading: bool,
    /// The lot's price.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub current_price: Money,
    /// The smallest bid accepted now.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub min_next_bid: Money,
    /// The lot's version this was read at.
    pub seq: Seq,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A bid (placed by the bidder or, with origin `proxy`, for them).
    Bid,
    /// A maximum set, raised or lowered.
    Max,
}

/// Where an audit entry's action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditOrigin {
    /// The bidder's own request.
    Direct,
    /// Placed by the master from the bidder's maximum.
    Proxy,
    /// A retried request with a known idempotency key: answered again, nothing placed.
    Replay,
}

impl AuditOrigin {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOrigin::Direct => "direct",
            AuditOrigin::Proxy => "proxy",
            AuditOrigin::Replay => "replay",
        }
    }
}

impl AuditAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Bid => "bid",
            AuditAction::Max => "max",
        }
    }
}

/// One line of a lot's audit trail (`GET /v1/lots/{id}/bids`, admin).
///
/// ```
/// let line = r#"{"id":3,"lot_id":"a","at":"2026-01-01T10:00:00.000001Z","at_us":1767261600000001,
///   "bidder":"bob","action":"bid","origin":"direct","accepted":false,"amount":100,
///   "reason":"bid_too_low: at least 150"}"#;
/// let entry: lotsync::protocol::AuditEntry = serde_json::from_str(line).unwrap();
/// assert!(!entry.accepted);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Position in the master's audit trail (ascending in the order things happened).
    pub id: u64,
    /// The lot.
    pub lot_id: String,
    /// Server time the master decided, microsecond precision.
    pub at: DateTime<Utc>,
    /// The same time in microseconds since the Unix epoch.
    pub at_us: i64,
    /// Whose bid or maximum.
    pub bidder: String,
    /// Bid or maximum.
    pub action: AuditAction,
    /// Direct, proxy or replay.
    pub origin: AuditOrigin,
    /// Whether it was accepted.
    pub accepted: bool,
    /// The bid's amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub amount: Option<Money>,
    /// The maximum asked for (admin only: the audit trail is never served to
    /// terminals or other bidders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub max_amount: Option<Money>,
    /// The operation's sequence, for an accepted bid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
    /// Why it was refused (`code: message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AuditEntry {
    /// Header of the CSV export.
    pub const CSV_HEADER: &'static str =
        "id,lot_id,at,at_us,bidder,action,origin,accepted,amount,max_amount,seq,reason";

    /// The entry as one CSV record (RFC 4180 quoting), without the line end.
    ///
    /// ```
    /// # let line = r#"{"id":1,"lot_id":"a","at":"2026-01-01T10:00:00Z","at_us":1,
    /// #   "bidder":"b","action":"bid","origin":"direct","accepted":false,"reason":"x, \"y\""}"#;
    /// # let entry: lotsync::protocol::AuditEntry = serde_json::from_str(line).unwrap();
    /// assert!(entry.to_csv().ends_with(r#","x, ""y""""#));
    /// ```
    pub fn to_csv(&self) -> String {
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        [
            self.id.to_string(),
            csv_field(&self.lot_id),
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            self.at_us.to_string(),
            csv_field(&self.bidder),
            self.action.as_str().to_owned(),
            self.origin.as_str().to_owned(),
            self.accepted.to_string(),
            opt(self.amount),
            opt(self.max_amount),
            opt(self.seq.map(|s| s as i64)),
            csv_field(self.reason.as_deref().unwrap_or("")),
        ]
        .join(",")
    }
}

/// Quote a CSV field when it needs it; a leading formula character is neutralised so a
/// spreadsheet never evaluates a bidder name.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Body of `PUT /v1/lanes/{lane}` (admin): how a lane runs its lots.
///
/// ```
/// let s: lotsync::protocol::LaneSettings =
///     serde_json::from_str(r#"{"sequential":true,"gap_ms":5000}"#).unwrap();
/// assert!(s.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LaneSettings {
    /// One live lot at a time, in `run_order`: the next lot opens when the previous one
    /// settles (plus the gap).
    pub sequential: bool,
    /// Pause between a lot settling and the next one opening, 0–3,600,000 ms.
    #[serde(default)]
    pub gap_ms: u64,
}

impl LaneSettings {
    /// Longest gap accepted.
    pub const MAX_GAP_MS: u64 = 3_600_000;

    /// Check the gap.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.gap_ms > Self::MAX_GAP_MS {
            return Err(FieldError::new(
                "gap_ms",
                format!("at most {}", Self::MAX_GAP_MS),
            ));
        }
        Ok(())
    }
}

/// A lane and its settings (`GET /v1/lanes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Lane {
    /// The lane's name.
    pub lane: String,
    /// Whether it runs one lot at a time (see [`LaneSettings::sequential`]).
    pub sequential: bool,
    /// Pause between a lot settling and the next one opening, ms.
    pub gap_ms: u64,
}
