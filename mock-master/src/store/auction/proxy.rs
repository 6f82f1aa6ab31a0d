//! Bids and maximum (proxy) bids, resolved as the field does.
//!
//! A bidder may leave a confidential **maximum**: the master bids for them only as far
//! as needed to lead, up to the maximum. Each bidder's **ceiling** is what they are
//! prepared to pay: the leader's is the higher of the price and their maximum, anyone
//! else's is their maximum. A challenger is a bidder (not the leader) whose maximum can
//! make a bid now (at least the minimum next bid) or beats the leader's ceiling.
//!
//! Two ceilings meet in one operation:
//! - the higher ceiling wins; equal ceilings go to the earlier maximum (a bid standing
//!   without a maximum counts as the latest);
//! - the loser's bid at their ceiling is recorded (when it is above the price), marked
//!   proxy if the master placed it;
//! - the winner leads at one step above the loser's ceiling (the step of the ladder band
//!   that ceiling is in), or at the loser's ceiling when the winner's is within one
//!   step of it.
//!
//! A maximum that still leads is never part of any bid; only a beaten maximum becomes
//! its owner's last bid.

use lotsync::protocol::{Ladder, Money};

/// What the lot looks like before the request.
#[derive(Debug, Clone)]
pub struct Standing<'a> {
    /// Minimum first bid.
    pub starting_price: Money,
    /// Increment ladder.
    pub ladder: &'a Ladder,
    /// Current price (the starting price while there is no bid).
    pub price: Money,
    /// Bids so far.
    pub bid_count: u32,
    /// Who leads.
    pub leader: Option<String>,
}

impl Standing<'_> {
    /// Smallest bid accepted now.
    pub fn min_next(&self) -> Money {
        if self.bid_count == 0 {
            self.starting_price
        } else {
            self.price.saturating_add(self.ladder.step_at(self.price))
        }
    }
}

/// A bidder's maximum on a lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxBid {
    /// Whose.
    pub bidder: String,
    /// The most the master may bid for them.
    pub amount: Money,
    /// When it was set, as a position in one increasing order (earlier wins ties).
    pub order: u64,
}

/// A bidder's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A bid of `amount`.
    Bid {
        /// Who bids.
        bidder: String,
        /// How much.
        amount: Money,
    },
    /// Set (raise, or lower while leading) a maximum, optionally with a bid now.
    Max {
        /// Whose maximum.
        bidder: String,
        /// The maximum.
        max: Money,
        /// A bid placed first, if given.
        amount: Option<Money>,
    },
}

impl Action {
    /// The bidder acting.
    pub fn bidder(&self) -> &str {
        match self {
            Action::Bid { bidder, .. } | Action::Max { bidder, .. } => bidder,
        }
    }
}

/// One bid the request places, in order (each is one operation with its own sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Whose bid.
    pub bidder: String,
    /// Amount.
    pub amount: Money,
    /// Placed by the master from the bidder's maximum.
    pub proxy: bool,
}

/// What a request leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Bids placed, in order.
    pub bids: Vec<Placed>,
    /// The maximum the request set, if it set one.
    pub max: Option<MaxBid>,
    /// The leader afterwards.
    pub leader: Option<String>,
    /// The price afterwards.
    pub price: Money,
    /// The bid count afterwards.
    pub bid_count: u32,
}

/// Why a request is refused (nothing happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The amount in `field` is below `min`.
    TooLow {
        /// `amount` or `max_amount`.
        field: &'static str,
        /// The smallest value accepted now.
        min: Money,
    },
}

/// A bidder's ceiling: what they are prepared to pay, and when they said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ceiling {
    amount: Money,
    order: u64,
}

impl Ceiling {
    /// Whether this ceiling wins against `other`: higher, or equal and earlier.
    fn beats(self, other: Ceiling) -> bool {
        self.amount > other.amount || (self.amount == other.amount && self.order < other.order)
    }
}

/// The state the resolution works on.
struct Book<'a> {
    ladder: &'a Ladder,
    starting_price: Money,
    price: Money,
    bid_count: u32,
    leader: Option<String>,
    bids: Vec<Placed>,
}

impl Book<'_> {
    fn min_next(&self) -> Money {
        if self.bid_count == 0 {
            self.starting_price
        } else {
            self.price.saturating_add(self.ladder.step_at(self.price))
        }
    }

    fn place(&mut self, bidder: &str, amount: Money, proxy: bool) {
        self.price = amount;
        self.bid_count += 1;
        self.leader = Some(bidder.to_owned());
        self.bids.push(Placed {
            bidder: bidder.to_owned(),
            amount,
            proxy,
        });
    }

    /// The leader's ceiling, given the maxima.
    fn leader_ceiling(&self, maxima: &[MaxBid]) -> Option<Ceiling> {
        let leader = self.leader.as_deref()?;
        let own = maxima
            .iter()
            .find(|m| m.bidder == leader && m.amount >= self.price);
        Some(match own {
            Some(m) => Ceiling {
                amount: m.amount,
                order: m.order,
            },
            None => Ceiling {
                amount: self.price,
                order: u64::MAX,
            },
        })
    }
}

/// Resolve `action` against the lot's standing and the maxima on it (`order` is the
/// position a maximum set by this action takes). Returns the bids placed, the new
/// leader and price, or why nothing happens.
pub fn resolve(
    standing: &Standing<'_>,
    maxima: &[MaxBid],
    action: &Action,
    order: u64,
) -> Result<Resolution, Refusal> {
    let mut book = Book {
        ladder: standing.ladder,
        starting_price: standing.starting_price,
        price: standing.price,
        bid_count: standing.bid_count,
        leader: standing.leader.clone(),
        bids: Vec::new(),
    };
    let mut maxima = maxima.to_vec();
    let min_next = book.min_next();
    let mut set = None;
    match action {
        Action::Bid { bidder, amount } => {
            if *amount < min_next {
                return Err(Refusal::TooLow {
                    field: "amount",
                    min: min_next,
                });
            }
            book.place(bidder, *amount, false);
        }
        Action::Max {
            bidder,
            max,
            amount,
        } => {
            let leading = book.leader.as_deref() == Some(bidder.as_str());
            // A leader may lower their maximum, never below the amount they lead with.
            let floor = if leading { book.price } else { min_next };
            if *max < floor {
                return Err(Refusal::TooLow {
                    field: "max_amount",
                    min: floor,
                });
            }
            if let Some(amount) = *amount {
                if amount < min_next {
                    return Err(Refusal::TooLow {
                        field: "amount",
                        min: min_next,
                    });
                }
                book.place(bidder, amount, false);
            }
            let new = MaxBid {
                bidder: bidder.clone(),
                amount: *max,
                order,
            };
            maxima.retain(|m| m.bidder != *bidder);
            maxima.push(new.clone());
            set = Some(new);
        }
    }
    settle(&mut book, &maxima);
    Ok(Resolution {
        bids: book.bids,
        max: set,
        leader: book.leader,
        price: book.price,
        bid_count: book.bid_count,
    })
}

/// Let the maxima answer: rank every ceiling once, then let the best meet the best of
/// the rest.
fn settle(book: &mut Book<'_>, maxima: &[MaxBid]) {
    if book.leader.is_none() {
        // No bid yet: the best maximum opens at the starting price.
        let best = maxima
            .iter()
            .filter(|m| m.amount >= book.starting_price)
            .min_by_key(|m| (std::cmp::Reverse(m.amount), m.order));
        let Some(best) = best else { return };
        let (bidder, start) = (best.bidder.clone(), book.starting_price);
        book.place(&bidder, start, true);
    }
    let Some(leader_ceiling) = book.leader_ceiling(maxima) else {
        return;
    };
    let leader = book.leader.clone().unwrap_or_default();
    let min_next = book.min_next();
    // The leader and every bidder whose maximum can act now, best first.
    let mut ranked: Vec<(&str, Ceiling)> = vec![(leader.as_str(), leader_ceiling)];
    ranked.extend(
        maxima
            .iter()
            .filter(|m| m.bidder != leader)
            .map(|m| {
                (
                    m.bidder.as_str(),
                    Ceiling {
                        amount: m.amount,
                        order: m.order,
                    },
                )
            })
            .filter(|(_, c)| c.amount >= min_next || c.beats(leader_ceiling)),
    );
    if ranked.len() < 2 {
        return;
    }
    ranked.sort_by(|a, b| b.1.amount.cmp(&a.1.amount).then(a.1.order.cmp(&b.1.order)));
    let (winner, high) = (ranked[0].0.to_owned(), ranked[0].1);
    let (loser, low) = (ranked[1].0.to_owned(), ranked[1].1);
    if low.amount > book.price {
        // Above the price, a ceiling is always a maximum: the master bids it.
        book.place(&loser, low.amount, true);
    }
    let above = low.amount.saturating_add(book.ladder.step_at(low.amount));
    let price = if above <= high.amount {
        above
    } else {
        low.amount
    };
    book.place(&winner, price, true);
}
