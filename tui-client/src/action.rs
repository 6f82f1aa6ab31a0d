//! The vocabulary of change: every [`Action`] the app understands and every
//! [`Effect`] it can ask the runtime for.

use std::sync::Arc;
use std::time::Duration;

use lotsync::protocol::{Lot, Money, Seq};

use crate::bid::BidOutcome;
use crate::link::Link;

/// Everything that can happen to the app: keys (mapped by [`crate::keys`]), updates
/// from the SDK, and results of effects.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Time passed (redraw countdowns, expire highlights).
    Tick,
    /// Selection up one row (wraps to the bottom).
    Up,
    /// Selection down one row (wraps to the top).
    Down,
    /// Selection up a page (stops at the top).
    PageUp,
    /// Selection down a page (stops at the bottom).
    PageDown,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Start typing a filter.
    StartFilter,
    /// A character typed into the filter.
    FilterInput(char),
    /// Delete the filter's last character.
    FilterBackspace,
    /// Keep the filter and stop typing.
    FilterDone,
    /// Next sort mode.
    CycleSort,
    /// Open or close help.
    ToggleHelp,
    /// Switch between dashboard and floor display.
    ToggleFloor,
    /// Open the bid box for the current lot.
    OpenBidBox,
    /// Bid box: one increment up.
    BidUp,
    /// Bid box: one increment down (never below the minimum).
    BidDown,
    /// Bid box: a typed digit.
    BidDigit(u8),
    /// Bid box: delete a digit.
    BidBackspace,
    /// Bid box: switch between a bid and a maximum (proxy bid).
    BidToggleMax,
    /// Show only the next lane (all lanes after the last one).
    CycleLane,
    /// Bid box: place the bid.
    PlaceBid,
    /// Close whatever is open (overlay, filter, floor).
    Close,
    /// Leave the program.
    Quit,
    /// The SDK's first view of every lot.
    Snapshot(Vec<Arc<Lot>>),
    /// One lot changed.
    LotChanged {
        /// The lot now.
        lot: Arc<Lot>,
        /// Versions skipped since the last one shown.
        skipped: u64,
    },
    /// Everything was reloaded.
    Resynced {
        /// Every lot.
        lots: Vec<Arc<Lot>>,
        /// Whether the master's history restarted.
        epoch_changed: bool,
    },
    /// The connection state changed.
    Link(Link),
    /// A sample of the SDK's metrics.
    Metrics {
        /// Sequence the mirror is at.
        seq: Seq,
        /// Notices received so far (a counter).
        notices: u64,
        /// Notice-to-mirror latency, 99th percentile.
        mirror_p99: Duration,
    },
    /// The master answered a bid.
    BidResult {
        /// The lot.
        lot_id: String,
        /// The amount placed.
        amount: Money,
        /// What came of it.
        outcome: BidOutcome,
    },
}

/// Work [`App::update`](crate::app::App::update) asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Place a bid; the answer comes back as [`Action::BidResult`].
    PlaceBid {
        /// The lot.
        lot_id: String,
        /// Amount in minor units.
        amount: Money,
        /// The amount is a maximum the master bids up to.
        max: bool,
    },
    /// Stop and restore the terminal.
    Quit,
}
