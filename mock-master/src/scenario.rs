//! Scenario files: QA drives the master from a TOML file instead of code.
//!
//! `mock-master --scenario FILE [--seed N]` loads the file, checks it (an error names
//! the line and the field), then plays it while the master serves: lots are created,
//! statuses change, bids are placed and faults are switched on and off at the given
//! offsets from the start. Every step is logged (target `mock_master::scenario`) with
//! its outcome. The same file and seed play the same operations in the same order.
//!
//! # Format
//!
//! ```toml
//! name = "two lots, a bidding war, some faults"  # optional, shown in the logs
//! seed = 7             # default seed of random_bids; --seed overrides it
//! on_end = "serve"     # "serve" (default): keep serving; "exit": stop the master
//!
//! [[lanes]]            # optional: lane settings, applied before anything else
//! lane = "A"
//! sequential = true    # one live lot at a time, in run_order
//! gap_ms = 2000        # pause between a lot settling and the next opening
//!
//! [[lots]]             # created at `at_ms` (default 0)
//! id = "saab-93"
//! title = "2015 Saab 9-3 Aero"
//! starting_price = 500000          # minor units; currency defaults to EUR
//! increment = 10000                # or a ladder: [{ from = 0, step = 10000 }, { from = 1000000, step = 25000 }]
//! reserve_price = 700000           # optional; terminals only see reserve_met
//! lane = "A"                       # optional, with run_order
//! run_order = 1
//! status = "open"                  # default: scheduled, opened at starts_at
//! opens_in_ms = 0                  # starts_at, from the scenario's start (may be < 0)
//! duration_ms = 600000             # ends_at = starts_at + duration (default 1 h)
//! attributes = { make = "Saab", year = 2015 }
//!
//! [[steps]]            # one action per step: bid, status, faults or random_bids
//! at_ms = 500
//! bid = { lot = "saab-93", bidder = "alice", amount = 500000 }  # amount left out: the minimum
//!
//! [[steps]]
//! at_ms = 600
//! max_bid = { lot = "saab-93", bidder = "carol", max_amount = 650000 }  # amount optional
//!
//! [[steps]]
//! at_ms = 800
//! faults = { notice_drop_rate = 0.3, replica_lag_ms = 40 }      # the fields of POST /v1/chaos
//!
//! [[steps]]
//! at_ms = 1000
//! random_bids = { lots = ["saab-93"], bidders = ["alice", "bob"], count = 20, every_ms = 50 }
//!
//! [[steps]]
//! at_ms = 3000
//! status = { lot = "saab-93", to = "closed" }
//! ```
//!
//! `random_bids` expands, from the seed, into `count` bids `every_ms` apart, each on a
//! lot and by a bidder drawn from the lists (all lots when `lots` is left out), raising
//! the minimum next bid by 0 to `max_raise` increments (default 3, each the step of the
//! lot's ladder at that price). A `max_bid` places a maximum the master bids up to for
//! that bidder (a proxy bid), against the bids that follow. Faults switch fault
//! injection on even without `--chaos`. A rejected bid or status change is logged and
//! the play goes on.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use chrono::Utc;
use lotsync::protocol::{
    BidRequest, ChaosPatch, LaneSettings, LotInput, LotStatus, Money, validate_lane,
    validate_lot_id, validate_money,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::config::{MasterConfig, validate_bidder_name};

mod play;
mod spec;
pub use play::run;
use spec::FileSpec;

/// Longest a scenario may run, and most bids one `random_bids` step may expand to.
const MAX_OFFSET_MS: i64 = 7 * 24 * 3_600_000;
const MAX_RANDOM_BIDS: u32 = 100_000;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type, missing or unknown (the message
    /// has the line and column).
    #[error("scenario {origin}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// Valid TOML that does not make sense (unknown lot, negative offset, rate above 1).
    #[error("scenario {origin}, line {line}: {field}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// Line of the lot or step at fault (1-based).
        line: usize,
        /// Path of the field at fault, such as `steps[2].faults.notice_drop_rate`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// What the master does when the last step has played.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnEnd {
    /// Keep serving until Ctrl-C or SIGTERM.
    #[default]
    Serve,
    /// Shut the master down gracefully.
    Exit,
}

/// How much a planned bid offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Amount {
    /// Exactly this.
    Fixed(Money),
    /// The minimum next bid plus this many increments.
    Raise(u32),
    /// A maximum (a proxy bid), with or without a bid of its own now.
    Max(BidRequest),
}

/// One action of the plan.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Lane(String, LaneSettings),
    Create(String, Box<LotSpecPlan>),
    Bid {
        lot: String,
        bidder: String,
        amount: Amount,
    },
    Status(String, LotStatus),
    Faults(ChaosPatch),
}

/// A lot to create, with times relative to the start.
#[derive(Debug, Clone, PartialEq)]
struct LotSpecPlan {
    input: LotInput,
    opens_in_ms: i64,
    duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct Planned {
    at_ms: i64,
    line: usize,
    action: Action,
}

/// A checked scenario, expanded into a plan of timed actions.
#[derive(Debug, Clone)]
pub struct Scenario {
    origin: String,
    name: Option<String>,
    on_end: OnEnd,
    seed: u64,
    plan: Vec<Planned>,
}

/// What a play did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Actions played.
    pub steps: usize,
    /// Lots created or replaced.
    pub lots: usize,
    /// Bids accepted.
    pub bids_accepted: usize,
    /// Bids and status changes the master refused.
    pub rejected: usize,
    /// Fault changes applied.
    pub faults: usize,
}

fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

impl Scenario {
    /// Read and check the scenario file at `path`; `seed` overrides the file's seed.
    pub fn load(path: &Path, seed: Option<u64>) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text, &path.display().to_string(), seed)
    }

    /// Check scenario `text` (from `origin`, used in errors). `seed` overrides the
    /// file's seed (which defaults to 0).
    pub fn parse(text: &str, origin: &str, seed: Option<u64>) -> Result<Scenario, ScenarioError> {
        let file: FileSpec = toml::from_str(text).map_err(|e| ScenarioError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let seed = seed.or(file.seed).unwrap_or(0);
        let invalid = |line: usize, field: String, message: &str| ScenarioError::Invalid {
            origin: origin.to_owned(),
            line,
            field,
            message: message.to_owned(),
        };
        let offset = |line: usize, field: String, ms: i64| {
            if (0..=MAX_OFFSET_MS).contains(&ms) {
                Ok(ms)
            } else {
                Err(invalid(line, field, "must be between 0 and 604800000 ms"))
            }
        };
        let mut plan = Vec::new();
        for (i, lane) in file.lanes.iter().enumerate() {
            let line = line_of(text, &lane.span());
            let lane = lane.get_ref();
            validate_lane(&lane.lane)
                .map_err(|e| invalid(line, format!("lanes[{i}].lane"), &e.message))?;
            let settings = LaneSettings {
                sequential: lane.sequential,
                gap_ms: lane.gap_ms,
            };
            settings
                .validate()
                .map_err(|e| invalid(line, format!("lanes[{i}].{}", e.field), &e.message))?;
            plan.push(Planned {
                at_ms: 0,
                line,
                action: Action::Lane(lane.lane.clone(), settings),
            });
        }
        // Lot id -> when it is created, to check that steps only use lots that exist.
        let mut created: HashMap<String, i64> = HashMap::new();
        for (i, lot) in file.lots.iter().enumerate() {
            let line = line_of(text, &lot.span());
            let lot = lot.get_ref();
            let path = |field: &str| format!("lots[{i}].{field}");
            let at_ms = offset(line, path("at_ms"), lot.at_ms)?;
            validate_lot_id(&lot.id).map_err(|e| invalid(line, path("id"), &e.message))?;
            if created.insert(lot.id.clone(), at_ms).is_some() {
                return Err(invalid(line, path("id"), "this lot id is defined twice"));
            }
            if lot.opens_in_ms.abs() > MAX_OFFSET_MS {
                return Err(invalid(line, path("opens_in_ms"), "at most a week away"));
            }
            if !(1..=MAX_OFFSET_MS).contains(&lot.duration_ms) {
                return Err(invalid(
                    line,
                    path("duration_ms"),
                    "between 1 ms and a week",
                ));
            }
            // Placeholder times: the real ones are set when the lot is created.
            let now = chrono::DateTime::<Utc>::UNIX_EPOCH;
            let input = LotInput {
                title: lot.title.clone(),
                attributes: lot.attributes.clone(),
                currency: lot.currency.clone(),
                starting_price: lot.starting_price,
                increment: lot.increment.clone(),
                reserve_price: lot.reserve_price,
                status: lot.status,
                starts_at: now,
                ends_at: now + chrono::Duration::milliseconds(lot.duration_ms),
                lane: lot.lane.clone(),
                run_order: lot.run_order,
            };
            input
                .validate()
                .map_err(|e| invalid(line, path(&e.field), &e.message))?;
            let plan_lot = LotSpecPlan {
                input,
                opens_in_ms: lot.opens_in_ms,
                duration_ms: lot.duration_ms,
            };
            plan.push(Planned {
                at_ms,
                line,
                action: Action::Create(lot.id.clone(), Box::new(plan_lot)),
            });
        }
        let known = |line: usize, field: String, id: &str, at_ms: i64| match created.get(id) {
            None => Err(invalid(line, field, &format!("no lot {id:?} in [[lots]]"))),
            Some(when) if *when > at_ms => Err(invalid(
                line,
                field,
                &format!("lot {id:?} is only created at {when} ms"),
            )),
            Some(_) => Ok(()),
        };
        let bidder = |line: usize, field: String, name: &str| {
            validate_bidder_name(name).map_err(|m| invalid(line, field, &m))
        };
        for (i, step) in file.steps.iter().enumerate() {
            let line = line_of(text, &step.span());
            let step = step.get_ref();
            let path = |field: &str| format!("steps[{i}].{field}");
            let at_ms = offset(line, path("at_ms"), step.at_ms)?;
            let actions = [
                step.bid.is_some(),
                step.max_bid.is_some(),
                step.status.is_some(),
                step.faults.is_some(),
                step.random_bids.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() != 1 {
                return Err(invalid(
                    line,
                    format!("steps[{i}]"),
                    "needs exactly one of bid, max_bid, status, faults, random_bids",
                ));
            }
            let mut push = |at_ms: i64, action: Action| {
                plan.push(Planned {
                    at_ms,
                    line,
                    action,
                })
            };
            if let Some(bid) = &step.bid {
                known(line, path("bid.lot"), &bid.lot, at_ms)?;
                bidder(line, path("bid.bidder"), &bid.bidder)?;
                let amount = match bid.amount {
                    Some(amount) => {
                        validate_money("amount", amount)
                            .map_err(|e| invalid(line, path("bid.amount"), &e.message))?;
                        Amount::Fixed(amount)
                    }
                    None => Amount::Raise(0),
                };
                push(
                    at_ms,
                    Action::Bid {
                        lot: bid.lot.clone(),
                        bidder: bid.bidder.clone(),
                        amount,
                    },
                );
            }
            if let Some(max) = &step.max_bid {
                known(line, path("max_bid.lot"), &max.lot, at_ms)?;
                bidder(line, path("max_bid.bidder"), &max.bidder)?;
                let request = BidRequest {
                    amount: max.amount,
                    max_amount: Some(max.max_amount),
                };
                request.validate().map_err(|e| {
                    invalid(line, path(&format!("max_bid.{}", e.field)), &e.message)
                })?;
                push(
                    at_ms,
                    Action::Bid {
                        lot: max.lot.clone(),
                        bidder: max.bidder.clone(),
                        amount: Amount::Max(request),
                    },
                );
            }
            if let Some(change) = &step.status {
                known(line, path("status.lot"), &change.lot, at_ms)?;
                push(at_ms, Action::Status(change.lot.clone(), change.to));
            }
            if let Some(patch) = &step.faults {
                for (field, rate) in [
                    ("notice_drop_rate", patch.notice_drop_rate),
                    ("fetch_error_rate", patch.fetch_error_rate),
                ] {
                    if rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                        return Err(invalid(
                            line,
                            path(&format!("faults.{field}")),
                            "a probability between 0 and 1",
                        ));
                    }
                }
                push(at_ms, Action::Faults(patch.clone()));
            }
            if let Some(random) = &step.random_bids {
                let lots = match &random.lots {
                    Some(lots) => lots.clone(),
                    None => file.lots.iter().map(|l| l.get_ref().id.clone()).collect(),
                };
                if lots.is_empty() {
                    return Err(invalid(line, path("random_bids.lots"), "no lots to bid on"));
                }
                if random.bidders.is_empty() {
                    return Err(invalid(line, path("random_bids.bidders"), "name a bidder"));
                }
                if !(1..=MAX_RANDOM_BIDS).contains(&random.count) {
                    return Err(invalid(
                        line,
                        path("random_bids.count"),
                        "between 1 and 100000",
                    ));
                }
                let every = offset(line, path("random_bids.every_ms"), random.every_ms)?;
                let last = at_ms + every * i64::from(random.count - 1);
                offset(line, path("random_bids.every_ms"), last)?;
                for (j, id) in lots.iter().enumerate() {
                    known(line, path(&format!("random_bids.lots[{j}]")), id, at_ms)?;
                }
                for (j, name) in random.bidders.iter().enumerate() {
                    bidder(line, path(&format!("random_bids.bidders[{j}]")), name)?;
                }
                // One RNG per step, so editing one step does not change the others.
                let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
                for n in 0..random.count {
                    push(
                        at_ms + every * i64::from(n),
                        Action::Bid {
                            lot: lots[rng.random_range(0..lots.len())].clone(),
                            bidder: random.bidders[rng.random_range(0..random.bidders.len())]
                                .clone(),
                            amount: Amount::Raise(rng.random_range(0..=random.max_raise)),
                        },
                    );
                }
            }
        }
        // Stable: actions at the same offset keep the file's order: lanes, lots, steps.
        plan.sort_by_key(|p| p.at_ms);
        Ok(Scenario {
            origin: origin.to_owned(),
            name: file.name,
            on_end: file.on_end,
            seed,
            plan,
        })
    }

    /// The seed the scenario plays with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// What happens after the last step.
    pub fn on_end(&self) -> OnEnd {
        self.on_end
    }

    /// Number of timed actions (random bids expanded).
    pub fn len(&self) -> usize {
        self.plan.len()
    }

    /// Whether the scenario has no action at all.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// Whether any step switches faults.
    pub fn uses_faults(&self) -> bool {
        self.plan
            .iter()
            .any(|p| matches!(p.action, Action::Faults(_)))
    }

    /// Adjust a master's settings for this scenario: enable fault injection when a step
    /// needs it, and seed the master (its faults) with the scenario's seed unless set.
    pub fn prepare(&self, config: &mut MasterConfig) {
        if self.uses_faults() && config.chaos.is_none() {
            tracing::info!("the scenario switches faults: fault injection enabled");
            config.chaos = Some(Default::default());
        }
        config.seed.get_or_insert(self.seed);
    }
}
