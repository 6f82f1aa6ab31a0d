//! The proxy engine against a reference model: random sequences of bids, maximums and
//! raises from several bidders must give the model's leader, price and bid list, and no
//! maximum that still leads may show in what terminals see.

use std::collections::BTreeMap;

use lotsync::protocol::{Bid, IncrementBand, Ladder, Lot, Money};
use proptest::prelude::*;

use super::proxy::{Action, MaxBid, Placed, Refusal, Resolution, Standing, resolve};

/// The rules as a bidding war told one duel at a time: while some bidder other than the
/// leader can act on their maximum, the best of them meets the leader.
#[derive(Debug, Clone)]
struct Model {
    ladder: Ladder,
    starting: Money,
    price: Money,
    count: u32,
    leader: Option<String>,
    /// bidder → (maximum, when set).
    maxima: BTreeMap<String, (Money, u64)>,
    bids: Vec<Placed>,
}

impl Model {
    fn new(ladder: Ladder, starting: Money) -> Model {
        Model {
            ladder,
            starting,
            price: starting,
            count: 0,
            leader: None,
            maxima: BTreeMap::new(),
            bids: Vec::new(),
        }
    }

    fn min_next(&self) -> Money {
        if self.count == 0 {
            self.starting
        } else {
            self.price + self.ladder.step_at(self.price)
        }
    }

    fn bid(&mut self, who: &str, amount: Money, proxy: bool) {
        self.price = amount;
        self.count += 1;
        self.leader = Some(who.to_owned());
        self.bids.push(Placed {
            bidder: who.to_owned(),
            amount,
            proxy,
        });
    }

    fn act(&mut self, action: &Action, order: u64) -> Result<(), Refusal> {
        let min = self.min_next();
        match action {
            Action::Bid { bidder, amount } => {
                if *amount < min {
                    return Err(Refusal::TooLow {
                        field: "amount",
                        min,
                    });
                }
                self.bid(bidder, *amount, false);
            }
            Action::Max {
                bidder,
                max,
                amount,
            } => {
                let floor = if self.leader.as_ref() == Some(bidder) {
                    self.price
                } else {
                    min
                };
                if *max < floor {
                    return Err(Refusal::TooLow {
                        field: "max_amount",
                        min: floor,
                    });
                }
                if let Some(a) = amount {
                    if *a < min {
                        return Err(Refusal::TooLow {
                            field: "amount",
                            min,
                        });
                    }
                    self.bid(bidder, *a, false);
                }
                self.maxima.insert(bidder.clone(), (*max, order));
            }
        }
        loop {
            if self.leader.is_none() {
                let mut able: Vec<_> = self
                    .maxima
                    .iter()
                    .filter(|(_, (m, _))| *m >= self.starting)
                    .collect();
                able.sort_by_key(|(_, (m, o))| (-m, *o));
                let Some((who, _)) = able.first() else {
                    return Ok(());
                };
                let (who, start) = ((*who).clone(), self.starting);
                self.bid(&who, start, true);
            }
            let leader = self.leader.clone().expect("a leader");
            let ceiling = match self.maxima.get(&leader) {
                Some(&(m, o)) if m >= self.price => (m, o),
                _ => (self.price, u64::MAX),
            };
            let beats = |a: (Money, u64), b: (Money, u64)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
            let min = self.min_next();
            let mut challengers: Vec<(String, (Money, u64))> = self
                .maxima
                .iter()
                .filter(|(who, c)| **who != leader && (c.0 >= min || beats(**c, ceiling)))
                .map(|(w, c)| (w.clone(), *c))
                .collect();
            challengers.sort_by_key(|(_, (m, o))| (-m, *o));
            let Some((challenger, theirs)) = challengers.into_iter().next() else {
                return Ok(());
            };
            let (winner, high, loser, low) = if beats(theirs, ceiling) {
                (challenger, theirs.0, leader, ceiling.0)
            } else {
                (leader, ceiling.0, challenger, theirs.0)
            };
            if low > self.price {
                self.bid(&loser, low, true);
            }
            let above = low + self.ladder.step_at(low);
            self.bid(&winner, if above <= high { above } else { low }, true);
        }
    }

    /// The live maxima no one may see: the leader's, while above the price.
    fn secret(&self) -> Option<Money> {
        let leader = self.leader.as_ref()?;
        self.maxima
            .get(leader)
            .map(|(m, _)| *m)
            .filter(|m| *m > self.price)
    }
}

/// The engine, driven the way the writer drives it.
struct Engine {
    ladder: Ladder,
    starting: Money,
    price: Money,
    count: u32,
    leader: Option<String>,
    maxima: Vec<MaxBid>,
    bids: Vec<Placed>,
}

impl Engine {
    fn act(&mut self, action: &Action, order: u64) -> Result<Resolution, Refusal> {
        let standing = Standing {
            starting_price: self.starting,
            ladder: &self.ladder,
            price: self.price,
            bid_count: self.count,
            leader: self.leader.clone(),
        };
        let r = resolve(&standing, &self.maxima, action, order)?;
        if let Some(max) = &r.max {
            self.maxima.retain(|m| m.bidder != max.bidder);
            self.maxima.push(max.clone());
        }
        self.price = r.price;
        self.count = r.bid_count;
        self.leader.clone_from(&r.leader);
        self.bids.extend(r.bids.iter().cloned());
        Ok(r)
    }

    /// What a terminal would be sent: the lot with its recent bids.
    fn visible(&self) -> serde_json::Value {
        let mut lot = Lot::example("p");
        lot.starting_price = self.starting;
        lot.increment_ladder = self.ladder.bands().to_vec();
        lot.current_price = self.price;
        lot.bid_count = self.count;
        lot.leading_bidder.clone_from(&self.leader);
        lot.refresh_increment();
        lot.recent_bids = self
            .bids
            .iter()
            .rev()
            .take(10)
            .enumerate()
            .map(|(i, b)| Bid {
                lot_id: "p".into(),
                bidder: b.bidder.clone(),
                amount: b.amount,
                seq: i as u64 + 1,
                at: lot.updated_at,
                proxy: b.proxy,
            })
            .collect();
        serde_json::to_value(&lot).unwrap()
    }
}

fn numbers(value: &serde_json::Value, out: &mut Vec<i64>) {
    match value {
        serde_json::Value::Number(n) => out.extend(n.as_i64()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| numbers(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| numbers(v, out)),
        _ => {}
    }
}

const BIDDERS: [&str; 4] = ["ann", "bob", "cyd", "dee"];

/// Ladders with steps of whole hundreds and band edges of whole thousands.
fn ladders() -> impl Strategy<Value = Ladder> {
    prop_oneof![
        (1..5i64).prop_map(|s| Ladder::fixed(s * 100)),
        (1..4i64, 2..8i64, 1..5i64, 5..10i64).prop_map(|(s1, f2, s2, s3)| Ladder::new(vec![
            IncrementBand {
                from: 0,
                step: s1 * 100
            },
            IncrementBand {
                from: f2 * 1_000,
                step: s1 * 100 + s2 * 100
            },
            IncrementBand {
                from: f2 * 1_000 + 5_000,
                step: s3 * 100
            },
        ])),
    ]
}

/// Requests; amounts are offsets above the minimum next bid (some below it, to be
/// refused). Maximums end in 7 so a leak cannot hide behind a coincidence.
#[derive(Debug, Clone)]
enum Step {
    Bid(usize, i64),
    Max(usize, i64, Option<i64>),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        (0..4usize, -300..2_000i64).prop_map(|(b, o)| Step::Bid(b, o)),
        (0..4usize, -5..40i64, proptest::option::of(0..3i64))
            .prop_map(|(b, o, a)| Step::Max(b, o, a)),
    ];
    proptest::collection::vec(step, 1..40)
}

fn action(step: &Step, min_next: Money, price: Money) -> Action {
    match *step {
        Step::Bid(b, offset) => Action::Bid {
            bidder: BIDDERS[b].into(),
            amount: (min_next + offset).max(1),
        },
        Step::Max(b, offset, amount) => {
            let max = ((price + offset * 100) / 10 * 10 + 7).max(7);
            Action::Max {
                bidder: BIDDERS[b].into(),
                max,
                amount: amount.map(|k| (min_next + k * 100).min(max)),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn engine_matches_the_model(ladder in ladders(), start in 1..50i64, steps in steps()) {
        let starting = start * 100;
        let mut model = Model::new(ladder.clone(), starting);
        let mut engine = Engine {
            ladder,
            starting,
            price: starting,
            count: 0,
            leader: None,
            maxima: Vec::new(),
            bids: Vec::new(),
        };
        for (order, step) in steps.iter().enumerate() {
            let act = action(step, model.min_next(), model.price);
            let before = model.price;
            let expected = model.act(&act, order as u64);
            let got = engine.act(&act, order as u64);
            prop_assert_eq!(expected.err(), got.as_ref().err().copied(), "{:?}", act);
            prop_assert_eq!(&engine.bids, &model.bids, "{:?}", act);
            prop_assert_eq!(&engine.leader, &model.leader);
            prop_assert_eq!(engine.price, model.price);
            prop_assert_eq!(engine.count, model.count);
            prop_assert!(engine.price >= before, "the price never goes down");
            if let Some(secret) = model.secret() {
                let mut seen = Vec::new();
                numbers(&engine.visible(), &mut seen);
                prop_assert!(!seen.contains(&secret), "leading maximum {} leaked: {:?}", secret, seen);
                prop_assert!(engine.bids.iter().all(|b| b.amount != secret));
            }
        }
    }
}

fn fixed() -> Ladder {
    Ladder::fixed(100)
}

fn max(bidder: &str, max: Money) -> Action {
    Action::Max {
        bidder: bidder.into(),
        max,
        amount: None,
    }
}

fn bid(bidder: &str, amount: Money) -> Action {
    Action::Bid {
        bidder: bidder.into(),
        amount,
    }
}

fn run(actions: &[Action]) -> (Engine, Vec<Result<Resolution, Refusal>>) {
    let mut engine = Engine {
        ladder: fixed(),
        starting: 500,
        price: 500,
        count: 0,
        leader: None,
        maxima: Vec::new(),
        bids: Vec::new(),
    };
    let results = actions
        .iter()
        .enumerate()
        .map(|(i, a)| engine.act(a, i as u64))
        .collect();
    (engine, results)
}

fn placed(list: &[(&str, Money, bool)]) -> Vec<Placed> {
    list.iter()
        .map(|&(b, a, p)| Placed {
            bidder: b.into(),
            amount: a,
            proxy: p,
        })
        .collect()
}

#[test]
fn field_rules_by_example() {
    // A maximum alone opens at the starting price.
    let (e, _) = run(&[max("ann", 1_000)]);
    assert_eq!(e.bids, placed(&[("ann", 500, true)]));

    // A lower maximum is beaten: it becomes its owner's bid, the higher leads one step above.
    let (e, _) = run(&[max("ann", 1_000), max("bob", 800)]);
    assert_eq!(
        e.bids,
        placed(&[("ann", 500, true), ("bob", 800, true), ("ann", 900, true)])
    );

    // Within one step: the higher maximum leads at the lower one.
    let (e, _) = run(&[max("ann", 1_000), max("bob", 950)]);
    assert_eq!((e.leader.as_deref(), e.price), (Some("ann"), 950));

    // Equal maximums: the earlier one leads.
    let (e, _) = run(&[max("ann", 1_000), max("bob", 1_000)]);
    assert_eq!((e.leader.as_deref(), e.price), (Some("ann"), 1_000));

    // A direct bid is answered one step above, only as far as needed.
    let (e, _) = run(&[max("ann", 2_000), bid("bob", 700)]);
    assert_eq!(
        e.bids,
        placed(&[("ann", 500, true), ("bob", 700, false), ("ann", 800, true)])
    );

    // A direct bid above the maximum takes the lead; the maximum never became a bid.
    let (e, _) = run(&[max("ann", 1_000), bid("bob", 1_200)]);
    assert_eq!(e.bids, placed(&[("ann", 500, true), ("bob", 1_200, false)]));

    // The owner may raise while leading (no bid), not lower below the leading amount.
    let (e, results) = run(&[max("ann", 1_000), max("ann", 3_000), max("ann", 400)]);
    assert_eq!(e.bids, placed(&[("ann", 500, true)]));
    assert!(results[1].as_ref().unwrap().bids.is_empty());
    assert_eq!(
        results[2].as_ref().unwrap_err(),
        &Refusal::TooLow {
            field: "max_amount",
            min: 500
        }
    );

    // A maximum below the next bid is refused.
    let (_, results) = run(&[bid("ann", 600), max("bob", 650)]);
    assert_eq!(
        results[1].as_ref().unwrap_err(),
        &Refusal::TooLow {
            field: "max_amount",
            min: 700
        }
    );
}

#[test]
fn steps_follow_the_ladder_band_of_the_price() {
    let ladder = Ladder::new(vec![
        IncrementBand { from: 0, step: 100 },
        IncrementBand {
            from: 1_000,
            step: 250,
        },
    ]);
    let standing = Standing {
        starting_price: 500,
        ladder: &ladder,
        price: 950,
        bid_count: 1,
        leader: Some("ann".into()),
    };
    assert_eq!(standing.min_next(), 1_050);
    // bob's maximum of 1,400 beats ann's 950; he leads one step (band of 950: 100) above.
    let r = resolve(&standing, &[], &max("bob", 1_400), 1).unwrap();
    assert_eq!(r.bids, placed(&[("bob", 1_050, true)]));
    let at_edge = Standing {
        price: 1_000,
        ..standing.clone()
    };
    assert_eq!(at_edge.min_next(), 1_250);
}
