//! The bid box: the amount a bidder is about to place, and what came of it.
//!
//! The amount only moves in ways that make sense for the lot: `+`/`-` step by the
//! lot's increment ladder (the step of the amount's band) and never go below its
//! minimum next bid; typed digits are whole currency units. `m` turns the amount into
//! a confidential maximum the master bids up to.

use lotsync::protocol::{Lot, LotStatus, MAX_MONEY, Money};

use crate::format;

/// State of the bid box while it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BidBox {
    /// Lot the bid is for (fixed when the box opens, even if the selection moves).
    pub lot_id: String,
    /// Amount in minor units.
    pub amount: Money,
    /// Whether the bidder has typed digits since the box opened (the first digit
    /// replaces the prefilled amount instead of appending to it).
    pub typed: bool,
    /// Where the bid stands.
    pub phase: BidPhase,
    /// The amount is a maximum (proxy bid), not a bid.
    pub max: bool,
}

/// Where a bid in the box stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BidPhase {
    /// Being edited.
    Editing,
    /// Sent to the master; waiting for its answer.
    Placing,
    /// Refused (locally or by the master); the message says why and what to do.
    Refused(String),
}

/// What came of a bid, as the master answered it. The runtime maps the SDK's error
/// type onto this so the app state stays independent of transport details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BidOutcome {
    /// Accepted at the amount placed.
    Accepted,
    /// Accepted; the master says where the bidder stands (maximums may have answered).
    Standing {
        /// The bidder's name, as the master knows it.
        bidder: String,
        /// Whether they lead now.
        leading: bool,
        /// The price now.
        current_price: Money,
        /// Their own maximum on the lot, if they have one.
        max_amount: Option<Money>,
    },
    /// Below the minimum next bid, which is now `min_next_bid`.
    TooLow {
        /// Smallest acceptable amount at the time of the answer.
        min_next_bid: Money,
    },
    /// The lot no longer takes bids.
    NotOpen {
        /// Its status.
        status: LotStatus,
    },
    /// Anything else (network, authorisation, ...), already phrased for a human.
    Failed(String),
}

impl BidBox {
    /// A box for `lot`, prefilled with its minimum next bid.
    pub fn open(lot: &Lot) -> BidBox {
        BidBox {
            lot_id: lot.id.clone(),
            amount: lot.min_next_bid(),
            typed: false,
            phase: BidPhase::Editing,
            max: false,
        }
    }

    /// Switch between a bid and a maximum.
    pub fn toggle_max(&mut self) {
        if !matches!(self.phase, BidPhase::Placing) {
            self.max = !self.max;
            self.phase = BidPhase::Editing;
        }
    }

    /// One increment up (at least the minimum next bid).
    pub fn step_up(&mut self, lot: &Lot) {
        let up = self
            .amount
            .saturating_add(lot.step_at(self.amount))
            .min(MAX_MONEY);
        self.set(up.max(lot.min_next_bid()));
    }

    /// One increment down, never below the minimum next bid.
    pub fn step_down(&mut self, lot: &Lot) {
        let down = self
            .amount
            .saturating_sub(lot.step_at(self.amount.saturating_sub(1)));
        self.set(down.max(lot.min_next_bid()));
    }

    /// Append a typed digit (whole currency units).
    pub fn digit(&mut self, lot: &Lot, digit: u8) {
        let per = format::minor_per_major(&lot.currency);
        let whole = if self.typed { self.amount / per } else { 0 };
        let next = whole
            .saturating_mul(10)
            .saturating_add(Money::from(digit.min(9)));
        self.typed = true;
        self.set(next.saturating_mul(per).min(MAX_MONEY));
    }

    /// Remove the last typed digit.
    pub fn backspace(&mut self, lot: &Lot) {
        let per = format::minor_per_major(&lot.currency);
        self.typed = true;
        self.set(self.amount / per / 10 * per);
    }

    /// The lot changed while the box was open: an amount the lot has overtaken moves
    /// up to the new minimum, so Enter never sends a bid that is already too low.
    pub fn follow(&mut self, lot: &Lot) {
        let min = lot.min_next_bid();
        if self.amount < min && !matches!(self.phase, BidPhase::Placing) {
            self.set(min);
        }
    }

    /// Check the amount before sending it: `Err` explains what is wrong.
    pub fn check(&self, lot: &Lot) -> Result<Money, String> {
        if lot.status != LotStatus::Open {
            return Err(format!(
                "Lot {} is {}, not open for bids",
                lot.id, lot.status
            ));
        }
        let min = lot.min_next_bid();
        if self.amount < min {
            return Err(format!(
                "Too low: the next bid must be at least {}",
                format::money(&lot.currency, min)
            ));
        }
        Ok(self.amount)
    }

    fn set(&mut self, amount: Money) {
        self.amount = amount;
        if !matches!(self.phase, BidPhase::Placing) {
            self.phase = BidPhase::Editing;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot() -> Lot {
        let mut lot = Lot::example("lot-1");
        lot.bid_count = 3;
        lot.current_price = 1_000_000;
        lot.increment = 10_000;
        lot.increment_ladder = lotsync::protocol::Ladder::fixed(10_000).bands().to_vec();
        lot
    }

    #[test]
    fn steps_follow_the_ladder_band_of_the_amount() {
        use lotsync::protocol::IncrementBand;
        let mut lot = lot();
        lot.increment_ladder = vec![
            IncrementBand {
                from: 0,
                step: 10_000,
            },
            IncrementBand {
                from: 1_020_000,
                step: 25_000,
            },
        ];
        let mut bid = BidBox::open(&lot);
        assert_eq!(bid.amount, 1_010_000);
        bid.step_up(&lot);
        assert_eq!(bid.amount, 1_020_000, "a step of the lower band");
        bid.step_up(&lot);
        assert_eq!(bid.amount, 1_045_000, "a step of the band 1,020,000 is in");
        bid.step_down(&lot);
        assert_eq!(bid.amount, 1_020_000);
        bid.step_down(&lot);
        assert_eq!(bid.amount, 1_010_000);
        bid.toggle_max();
        assert!(bid.max);
    }

    #[test]
    fn an_overtaken_amount_follows_the_new_minimum() {
        let mut lot = lot();
        let mut bid = BidBox::open(&lot);
        let opened_at = bid.amount;
        lot.bid_count += 1;
        lot.current_price = opened_at + 10 * lot.increment;
        bid.follow(&lot);
        assert_eq!(bid.amount, lot.min_next_bid());
        // A higher amount the bidder chose is kept.
        bid.amount = lot.min_next_bid() + 5 * lot.increment;
        let chosen = bid.amount;
        bid.follow(&lot);
        assert_eq!(bid.amount, chosen);
    }

    #[test]
    fn steps_never_go_below_the_minimum() {
        let lot = lot();
        let mut bid = BidBox::open(&lot);
        assert_eq!(bid.amount, 1_010_000);
        bid.step_down(&lot);
        assert_eq!(bid.amount, 1_010_000);
        bid.step_up(&lot);
        bid.step_up(&lot);
        assert_eq!(bid.amount, 1_030_000);
        bid.step_down(&lot);
        assert_eq!(bid.amount, 1_020_000);
    }

    #[test]
    fn typed_digits_are_whole_units_replacing_the_prefill() {
        let lot = lot();
        let mut bid = BidBox::open(&lot);
        for d in [1, 2, 5, 0, 0] {
            bid.digit(&lot, d);
        }
        assert_eq!(bid.amount, 1_250_000);
        bid.backspace(&lot);
        assert_eq!(bid.amount, 125_000);
        assert!(bid.check(&lot).unwrap_err().contains("EUR 10,100.00"));
    }
}
