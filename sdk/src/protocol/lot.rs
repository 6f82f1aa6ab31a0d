//! Lots, bids, statuses, and the request bodies that create or change them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::errors::{printable, validate_text};
use super::ladder::{IncrementBand, Ladder};
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
    /// Minimum step above the current price: the step of the increment ladder's band
    /// the current price is in (so a client that only knows a fixed increment still
    /// computes the right next bid).
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money))]
    pub increment: Money,
    /// The whole increment ladder, bands in ascending `from` (one band from 0 for a
    /// fixed increment). Empty from a master that predates ladders.
    #[serde(default)]
    pub increment_ladder: Vec<IncrementBand>,
    /// Whether the confidential reserve is met by the highest bid; absent when the lot
    /// has no reserve. The reserve itself is only ever shown to the admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_met: Option<bool>,
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
    /// The lane (auction ring) the lot runs in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// Position in its lane's run list (lower runs first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_order: Option<u32>,
    /// Version: sequence number of the last operation that changed this lot.
    pub seq: Seq,
    /// Commit time of the operation that produced this version.
    pub updated_at: DateTime<Utc>,
    /// Most recent accepted bids, newest first, at most [`RECENT_BIDS`](super::RECENT_BIDS).
    #[cfg_attr(feature = "server", schema(max_items = 10))]
    pub recent_bids: Vec<Bid>,
}

impl Lot {
    /// The lot's increment ladder (a one-band ladder of `increment` when the master
    /// sent none).
    ///
    /// ```
    /// # let lot = lotsync::protocol::Lot::example("a");
    /// assert_eq!(lot.ladder().step_at(lot.current_price), lot.increment);
    /// ```
    pub fn ladder(&self) -> Ladder {
        if self.increment_ladder.is_empty() {
            Ladder::fixed(self.increment)
        } else {
            Ladder::new(self.increment_ladder.clone())
        }
    }

    /// Minimum step above `price`, by the ladder.
    pub fn step_at(&self, price: Money) -> Money {
        if self.increment_ladder.is_empty() {
            self.increment.max(1)
        } else {
            Ladder::new(self.increment_ladder.clone()).step_at(price)
        }
    }

    /// Smallest amount the next bid must reach: the starting price for the first bid,
    /// else the current price plus the step of the ladder band the price is in.
    ///
    /// ```
    /// use lotsync::protocol::IncrementBand;
    /// # let mut lot = lotsync::protocol::Lot::example("a");
    /// lot.bid_count = 0;
    /// assert_eq!(lot.min_next_bid(), lot.starting_price);
    /// lot.bid_count = 1;
    /// lot.increment_ladder = vec![IncrementBand { from: 0, step: 50 },
    ///                             IncrementBand { from: 2_000, step: 100 }];
    /// lot.current_price = 1_950;
    /// assert_eq!(lot.min_next_bid(), 2_000);
    /// lot.current_price = 2_000;
    /// assert_eq!(lot.min_next_bid(), 2_100);
    /// ```
    pub fn min_next_bid(&self) -> Money {
        if self.bid_count == 0 {
            self.starting_price
        } else {
            self.current_price
                .saturating_add(self.step_at(self.current_price))
        }
    }

    /// Set `increment` to the step of the band the current price is in; the master
    /// calls this after every change of price or ladder.
    pub fn refresh_increment(&mut self) {
        if !self.increment_ladder.is_empty() {
            self.increment = self.step_at(self.current_price);
        }
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
            increment_ladder: vec![IncrementBand {
                from: 0,
                step: 5_000,
            }],
            reserve_met: None,
            current_price: 100_000,
            bid_count: 0,
            leading_bidder: None,
            status: LotStatus::Open,
            starts_at: at,
            ends_at: at + chrono::Duration::hours(1),
            lane: None,
            run_order: None,
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
    /// True when the master placed the bid on the bidder's behalf, from their maximum.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy: bool,
}

/// A lot as the admin sees it: what terminals see plus the confidential reserve.
///
/// ```
/// # use lotsync::protocol::{AdminLot, Lot};
/// let mut lot = AdminLot { lot: Lot::example("a"), reserve_price: Some(150_000) };
/// lot.lot.bid_count = 1;
/// lot.lot.current_price = 150_000;
/// lot.refresh();
/// assert_eq!(lot.lot.reserve_met, Some(true));
/// // What a terminal receives carries no reserve price.
/// assert!(!serde_json::to_string(&lot.lot).unwrap().contains("reserve_price"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AdminLot {
    /// The lot as terminals see it.
    #[serde(flatten)]
    pub lot: Lot,
    /// Lowest amount at which the lot sells, if any. Confidential.
    #[serde(default)]
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::money_or_null))]
    pub reserve_price: Option<Money>,
}

impl std::ops::Deref for AdminLot {
    type Target = Lot;

    fn deref(&self) -> &Lot {
        &self.lot
    }
}

impl AdminLot {
    /// Whether the lot would sell now: it has a bid, and the bid meets the reserve (if
    /// there is one).
    pub fn sells(&self) -> bool {
        self.lot.bid_count > 0
            && self
                .reserve_price
                .is_none_or(|r| self.lot.current_price >= r)
    }

    /// Recompute what terminals see of the price state: `reserve_met` from the reserve
    /// and `increment` from the ladder.
    pub fn refresh(&mut self) {
        self.lot.reserve_met = self
            .reserve_price
            .map(|r| self.lot.bid_count > 0 && self.lot.current_price >= r);
        self.lot.refresh_increment();
    }
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
    /// Minimum step: an amount (1..=[`MAX_MONEY`](super::MAX_MONEY)) or an increment
    /// ladder `[{"from": 0, "step": N}, ...]`.
    #[cfg_attr(feature = "server", schema(schema_with = super::schema::ladder))]
    pub increment: Ladder,
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
    /// Lane (1–32 characters of `A-Z a-z 0-9 - _`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// Position in the lane's run list; needs a lane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_order: Option<u32>,
}

impl LotInput {
    /// Check every field; the error names the first field that is wrong.
    ///
    /// ```
    /// # use lotsync::protocol::LotInput;
    /// # let mut input: LotInput = serde_json::from_str(r#"{"title":"x","currency":"EUR",
    /// #  "starting_price":1,"increment":1,
    /// #  "starts_at":"2026-01-01T10:00:00Z","ends_at":"2026-01-01T11:00:00Z"}"#).unwrap();
    /// input.increment = 0.into();
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
        self.increment.validate("increment")?;
        if let Some(reserve) = self.reserve_price {
            validate_money("reserve_price", reserve)?;
        }
        if self.ends_at <= self.starts_at {
            return Err(FieldError::new("ends_at", "must be after starts_at"));
        }
        if let Some(lane) = &self.lane {
            validate_lane(lane)?;
        } else if self.run_order.is_some() {
            return Err(FieldError::new("run_order", "a run order needs a lane"));
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

/// Check a lane name: 1–32 characters of `A-Z a-z 0-9 - _`.
///
/// ```
/// assert!(lotsync::protocol::validate_lane("A").is_ok());
/// assert_eq!(lotsync::protocol::validate_lane("a b").unwrap_err().field, "lane");
/// ```
pub fn validate_lane(lane: &str) -> Result<(), FieldError> {
    let ok = !lane.is_empty()
        && lane.len() <= 32
        && lane
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "lane",
            "1-32 characters of A-Z, a-z, 0-9, - and _",
        ))
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
            (
                "increment",
                Box::new(|i| i.increment = (MAX_MONEY + 1).into()),
            ),
            (
                "increment[1].from",
                Box::new(|i| {
                    i.increment = Ladder::new(vec![
                        IncrementBand { from: 0, step: 10 },
                        IncrementBand { from: 0, step: 20 },
                    ])
                }),
            ),
            ("lane", Box::new(|i| i.lane = Some("A/B".into()))),
            ("run_order", Box::new(|i| i.run_order = Some(1))),
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
        let err = serde_json::from_str::<LotInput>(r#"{"title":"x","extra":1}"#).unwrap_err();
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
