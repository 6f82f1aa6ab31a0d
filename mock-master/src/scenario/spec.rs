//! The file's shape as TOML gives it, before any check: [`super::Scenario::parse`]
//! checks every field and turns these into a plan.

use std::collections::BTreeMap;

use lotsync::protocol::{ChaosPatch, Ladder, LotStatus, Money};
use serde::Deserialize;
use toml::Spanned;

use super::OnEnd;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSpec {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) seed: Option<u64>,
    #[serde(default)]
    pub(super) on_end: OnEnd,
    #[serde(default)]
    pub(super) lanes: Vec<Spanned<LaneSpec>>,
    #[serde(default)]
    pub(super) lots: Vec<Spanned<LotSpec>>,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<StepSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LaneSpec {
    pub(super) lane: String,
    #[serde(default)]
    pub(super) sequential: bool,
    #[serde(default)]
    pub(super) gap_ms: u64,
}

fn eur() -> String {
    "EUR".into()
}

fn hour() -> i64 {
    3_600_000
}

fn three() -> u32 {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LotSpec {
    pub(super) id: String,
    #[serde(default)]
    pub(super) at_ms: i64,
    pub(super) title: String,
    #[serde(default)]
    pub(super) attributes: BTreeMap<String, serde_json::Value>,
    #[serde(default = "eur")]
    pub(super) currency: String,
    pub(super) starting_price: Money,
    pub(super) increment: Ladder,
    #[serde(default)]
    pub(super) reserve_price: Option<Money>,
    #[serde(default)]
    pub(super) lane: Option<String>,
    #[serde(default)]
    pub(super) run_order: Option<u32>,
    #[serde(default)]
    pub(super) status: Option<LotStatus>,
    #[serde(default)]
    pub(super) opens_in_ms: i64,
    #[serde(default = "hour")]
    pub(super) duration_ms: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StepSpec {
    pub(super) at_ms: i64,
    #[serde(default)]
    pub(super) bid: Option<BidSpec>,
    #[serde(default)]
    pub(super) max_bid: Option<MaxBidSpec>,
    #[serde(default)]
    pub(super) status: Option<StatusSpec>,
    #[serde(default)]
    pub(super) faults: Option<ChaosPatch>,
    #[serde(default)]
    pub(super) random_bids: Option<RandomBidsSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BidSpec {
    pub(super) lot: String,
    pub(super) bidder: String,
    #[serde(default)]
    pub(super) amount: Option<Money>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MaxBidSpec {
    pub(super) lot: String,
    pub(super) bidder: String,
    pub(super) max_amount: Money,
    #[serde(default)]
    pub(super) amount: Option<Money>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusSpec {
    pub(super) lot: String,
    pub(super) to: LotStatus,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RandomBidsSpec {
    #[serde(default)]
    pub(super) lots: Option<Vec<String>>,
    pub(super) bidders: Vec<String>,
    pub(super) count: u32,
    pub(super) every_ms: i64,
    #[serde(default = "three")]
    pub(super) max_raise: u32,
}
