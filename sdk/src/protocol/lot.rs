//! Lots, bids, statuses, and the request bodies that create or change them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::errors::{printable, validate_text};
use super::{FieldError, Money, Seq, validate_money};

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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Lot {
    /// Identifier: 1–64 characters of `A-Z a-z 0-9 - _`.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::lot_id))]
    pub id: String,
    /// Human title, for example "2017 Volvo V90 D4 Momentum".
    pub title: String,
    /// Descriptive attributes (make, model, year, mileage_km, ...): strings, integers or booleans.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::attributes))]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Minimum amount of the first bid.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub starting_price: Money,
    /// Minimum step between consecutive bids.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub increment: Money,
    /// Lowest amount at which the lot sells, if any.
    pub reserve_price: Option<Money>,
    /// Highest accepted bid, or the starting price while there is none.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
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
    /// Most recent accepted bids, newest first, at most [`RECENT_BIDS`](super::RECENT_BIDS).
    #[cfg_attr(feature = "server", schema(max_items = 10))]
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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Bid {
    /// Lot the bid was placed on.
    pub lot_id: String,
    /// Name of the authenticated bidder.
    pub bidder: String,
    /// Amount in minor units.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LotInput {
    /// Human title, 1–200 characters, no control characters.
    #[cfg_attr(feature = "server", schema(min_length = 1, max_length = 200))]
    pub title: String,
    /// At most 32 attributes; keys `[a-z0-9_]{1,32}`; values strings (≤ 200 chars), integers or booleans.
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::attributes))]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// ISO 4217 code: three upper-case letters.
    #[cfg_attr(feature = "server", schema(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    /// Minimum first bid, 1..=[`MAX_MONEY`](super::MAX_MONEY).
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub starting_price: Money,
    /// Minimum step, 1..=[`MAX_MONEY`](super::MAX_MONEY).
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub increment: Money,
    /// Optional reserve, 1..=[`MAX_MONEY`](super::MAX_MONEY).
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money_or_null))]
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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BidRequest {
    /// Amount in minor units, 1..=[`MAX_MONEY`](super::MAX_MONEY).
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub amount: Money,
}

impl BidRequest {
    /// Check the amount.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_money("amount", self.amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MAX_MONEY, validate_lot_id};

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
