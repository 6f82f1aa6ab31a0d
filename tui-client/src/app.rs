//! Application state, the [`Action`]s that change it and the [`Effect`]s it asks for.
//!
//! [`App::update`] is pure: no I/O, no clock. The current time comes in with every
//! action, so key handling and rendering are deterministic in tests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lotsync::protocol::{Lot, LotStatus, Money};

pub use crate::action::{Action, Effect};
use crate::bid::{BidBox, BidOutcome, BidPhase};
use crate::format;
pub use crate::link::Link;
pub use crate::order::SortMode;
use crate::order::{matches, status_rank};
use crate::stats::Stats;

/// How long a changed row stays highlighted.
pub const FLASH: chrono::TimeDelta = chrono::TimeDelta::milliseconds(1_500);
/// Prices kept per lot for the sparkline.
pub const HISTORY: usize = 120;
/// How long a status message stays in the footer.
pub const STATUS_FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// Rows moved by PageUp / PageDown.
const PAGE: usize = 10;

/// The main screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Table of lots with a detail pane.
    Dashboard,
    /// One lot in big type, for a wall display.
    Floor,
}

/// What is drawn over the main screen and receives the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// Nothing: keys go to the screen.
    None,
    /// The filter prompt in the footer is taking text.
    Filter,
    /// The key reference.
    Help,
    /// The bid box.
    Bid(BidBox),
}

/// Which key map applies (see [`crate::keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Dashboard with no overlay.
    Dashboard,
    /// Floor display with no overlay.
    Floor,
    /// Typing a filter.
    Filter,
    /// Help is open.
    Help,
    /// The bid box is open.
    BidBox,
}

/// Tone of a status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Neutral information.
    Info,
    /// Something worked.
    Good,
    /// Something failed.
    Bad,
}

/// A message in the footer's status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The text.
    pub text: String,
    /// How to colour it.
    pub tone: Tone,
    /// When it was set (it fades after [`STATUS_FOR`]).
    pub at: DateTime<Utc>,
}

/// How the app starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Whether bids can be placed (a bidder token was given).
    pub bidder: bool,
    /// Start on the floor display.
    pub floor: bool,
    /// Lot the floor display shows, instead of following the one closing soonest.
    pub pinned: Option<String>,
    /// Only this lane (the floor follows its live lot; the table shows its lots).
    pub lane: Option<String>,
}

/// A lot the bidder bid on from this screen, and their own maximum on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mine {
    /// Their maximum, if they left one (only ever known to them).
    pub max_amount: Option<Money>,
}

/// Where the bidder stands on a lot they bid on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// They hold the highest bid.
    Leading,
    /// Someone bid more.
    Outbid,
}

/// The whole state of the screen.
#[derive(Debug, Clone)]
pub struct App {
    /// Every lot, by id.
    pub lots: BTreeMap<String, Arc<Lot>>,
    /// Selected lot id (by id, so the selection stays on its lot when rows reorder).
    pub selected: Option<String>,
    /// Table order.
    pub sort: SortMode,
    /// Case-insensitive filter on id, title, attributes, leader and status.
    pub filter: String,
    /// Main screen.
    pub screen: Screen,
    /// What is drawn on top and takes the keys.
    pub overlay: Overlay,
    /// When each lot last changed, for the row highlight.
    pub flashed: HashMap<String, DateTime<Utc>>,
    /// Recent prices per lot, oldest first, for the sparkline.
    pub history: HashMap<String, VecDeque<Money>>,
    /// Connection state.
    pub link: Link,
    /// Header numbers.
    pub stats: Stats,
    /// Footer message.
    pub status: Option<Status>,
    /// How the app was started.
    pub options: Options,
    /// The bidder's name, once the master told it (with the first accepted bid).
    pub me: Option<String>,
    /// Lots the bidder bid on, by id.
    pub mine: BTreeMap<String, Mine>,
    /// Time of the latest action; rendering reads the clock from here.
    pub now: DateTime<Utc>,
}

impl App {
    /// An empty app at `now`.
    pub fn new(options: Options, now: DateTime<Utc>) -> App {
        App {
            lots: BTreeMap::new(),
            selected: None,
            sort: SortMode::EndsSoonest,
            filter: String::new(),
            screen: if options.floor {
                Screen::Floor
            } else {
                Screen::Dashboard
            },
            overlay: Overlay::None,
            flashed: HashMap::new(),
            history: HashMap::new(),
            link: Link::Connecting,
            stats: Stats::default(),
            status: None,
            options,
            me: None,
            mine: BTreeMap::new(),
            now,
        }
    }

    /// Which key map applies now.
    pub fn mode(&self) -> Mode {
        match (&self.overlay, self.screen) {
            (Overlay::Filter, _) => Mode::Filter,
            (Overlay::Help, _) => Mode::Help,
            (Overlay::Bid(_), _) => Mode::BidBox,
            (Overlay::None, Screen::Dashboard) => Mode::Dashboard,
            (Overlay::None, Screen::Floor) => Mode::Floor,
        }
    }

    /// Apply one action at time `now`; returns the effect the runtime must carry out.
    pub fn update(&mut self, now: DateTime<Utc>, action: Action) -> Option<Effect> {
        self.now = now;
        let effect = self.apply_action(action);
        // The first row shown is selected for real as soon as there is one, so the
        // selection follows that lot when the order changes instead of staying on
        // "whatever is in the first row" (which made the first key jump elsewhere).
        if self.selected.is_none()
            && let Some(first) = self.visible().first()
        {
            self.selected = Some(first.id.clone());
        }
        effect
    }

    fn apply_action(&mut self, action: Action) -> Option<Effect> {
        match action {
            Action::Tick => {}
            Action::Up => self.move_by(-1, true),
            Action::Down => self.move_by(1, true),
            Action::PageUp => self.move_by(-(PAGE as isize), false),
            Action::PageDown => self.move_by(PAGE as isize, false),
            Action::Top => self.move_by(isize::MIN / 2, false),
            Action::Bottom => self.move_by(isize::MAX / 2, false),
            Action::StartFilter => self.overlay = Overlay::Filter,
            Action::FilterInput(c) if !c.is_control() && self.filter.chars().count() < 64 => {
                self.filter.push(c)
            }
            Action::FilterInput(_) => {}
            Action::FilterBackspace => {
                self.filter.pop();
            }
            Action::FilterDone => self.overlay = Overlay::None,
            Action::CycleSort => self.sort = self.sort.next(),
            Action::ToggleHelp => {
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                }
            }
            Action::ToggleFloor => {
                self.screen = match self.screen {
                    Screen::Dashboard => Screen::Floor,
                    Screen::Floor => Screen::Dashboard,
                }
            }
            Action::OpenBidBox => self.open_bid_box(),
            Action::BidUp
            | Action::BidDown
            | Action::BidDigit(_)
            | Action::BidBackspace
            | Action::BidToggleMax => self.edit_bid(&action),
            Action::CycleLane => self.cycle_lane(),
            Action::PlaceBid => return self.place_bid(),
            Action::Close => self.close(),
            Action::Quit => return Some(Effect::Quit),
            Action::Snapshot(lots) => self.replace_all(lots, false),
            Action::Resynced {
                lots,
                epoch_changed,
            } => {
                // The first load arrives as a resync of an empty mirror: nothing to report.
                let had_lots = !self.lots.is_empty();
                self.replace_all(lots, had_lots);
                if had_lots {
                    let why = if epoch_changed {
                        " (the master's history restarted)"
                    } else {
                        ""
                    };
                    self.say(Tone::Info, format!("Resynchronised from a snapshot{why}"));
                }
            }
            Action::LotChanged { lot, .. } => self.apply(lot),
            Action::Link(link) => self.link = link,
            Action::Metrics {
                seq,
                notices,
                mirror_p99,
            } => self.stats.metrics(self.now, seq, notices, mirror_p99),
            Action::BidResult {
                lot_id,
                amount,
                outcome,
            } => self.bid_answered(lot_id, amount, outcome),
        }
        None
    }

    /// Lots shown in the table, filtered and sorted.
    pub fn visible(&self) -> Vec<&Arc<Lot>> {
        let needle = self.filter.to_lowercase();
        let mut lots: Vec<&Arc<Lot>> = self
            .lots
            .values()
            .filter(|lot| matches(lot, &needle))
            .filter(|lot| self.in_lane(lot))
            .collect();
        match self.sort {
            SortMode::EndsSoonest => lots.sort_by_key(|lot| {
                let when = if lot.status == LotStatus::Scheduled {
                    lot.starts_at
                } else {
                    lot.ends_at
                };
                (status_rank(lot.status), when)
            }),
            SortMode::Id => {}
            SortMode::Price => lots.sort_by_key(|lot| std::cmp::Reverse(lot.current_price)),
            SortMode::MostBids => lots.sort_by_key(|lot| std::cmp::Reverse(lot.bid_count)),
            SortMode::Lane => lots.sort_by_key(|lot| {
                (
                    lot.lane.is_none(),
                    lot.lane.clone(),
                    lot.run_order.unwrap_or(u32::MAX),
                )
            }),
        }
        // Sorts are stable and the map is ordered by id, so ties stay in id order.
        lots
    }

    /// Index of the selected lot among [`App::visible`] (the first row if the
    /// selected lot is filtered out), or `None` when nothing is visible.
    pub fn selected_index(&self, visible: &[&Arc<Lot>]) -> Option<usize> {
        if visible.is_empty() {
            return None;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|id| visible.iter().position(|lot| &lot.id == id));
        Some(at.unwrap_or(0))
    }

    /// The lot the detail pane and the bid box are about.
    pub fn selected_lot(&self) -> Option<&Arc<Lot>> {
        let visible = self.visible();
        self.selected_index(&visible).map(|i| visible[i])
    }

    /// The lot the floor display shows: the pinned one, else the open lot closing
    /// soonest, else the scheduled lot opening soonest, else the latest change.
    pub fn floor_lot(&self) -> Option<&Arc<Lot>> {
        if let Some(pinned) = &self.options.pinned {
            return self.lots.get(pinned);
        }
        let soonest = |status: LotStatus| {
            self.lots
                .values()
                .filter(|lot| lot.status == status && self.in_lane(lot))
                .min_by_key(|lot| {
                    if status == LotStatus::Open {
                        lot.ends_at
                    } else {
                        lot.starts_at
                    }
                })
        };
        soonest(LotStatus::Open)
            .or_else(|| soonest(LotStatus::Scheduled))
            .or_else(|| {
                self.lots
                    .values()
                    .filter(|lot| self.in_lane(lot))
                    .max_by_key(|lot| lot.updated_at)
            })
    }

    /// Whether `lot` is in the lane shown (every lot when no lane is chosen).
    pub fn in_lane(&self, lot: &Lot) -> bool {
        self.options
            .lane
            .as_ref()
            .is_none_or(|lane| lot.lane.as_ref() == Some(lane))
    }

    /// Every lane some lot runs in, by name.
    pub fn lanes(&self) -> Vec<String> {
        let mut lanes: Vec<String> = self.lots.values().filter_map(|l| l.lane.clone()).collect();
        lanes.sort();
        lanes.dedup();
        lanes
    }

    /// Where the bidder stands on `lot`, if they bid on it from here.
    pub fn standing(&self, lot: &Lot) -> Option<Standing> {
        self.mine.get(&lot.id)?;
        let me = self.me.as_deref()?;
        Some(if lot.leading_bidder.as_deref() == Some(me) {
            Standing::Leading
        } else {
            Standing::Outbid
        })
    }

    fn cycle_lane(&mut self) {
        let lanes = self.lanes();
        let next = match &self.options.lane {
            None => lanes.first().cloned(),
            Some(current) => lanes.iter().skip_while(|l| *l != current).nth(1).cloned(),
        };
        let text = match &next {
            Some(lane) => format!("Showing lane {lane}"),
            None => "Showing every lane".to_owned(),
        };
        self.options.lane = next;
        self.say(Tone::Info, text);
    }

    /// Whether the lot's row should be highlighted as just changed.
    pub fn is_flashing(&self, id: &str) -> bool {
        self.flashed
            .get(id)
            .is_some_and(|at| self.now - *at < FLASH)
    }

    /// Whether anything on screen is animating (so the runtime keeps redrawing).
    pub fn animating(&self) -> bool {
        self.flashed.values().any(|at| self.now - *at < FLASH)
    }

    /// The status message, if it is recent enough to show.
    pub fn current_status(&self) -> Option<&Status> {
        self.status
            .as_ref()
            .filter(|s| self.now - s.at < STATUS_FOR)
    }

    /// The lot the bid box is about, if the box is open.
    pub fn bid_box(&self) -> Option<(&BidBox, Option<&Arc<Lot>>)> {
        match &self.overlay {
            Overlay::Bid(bid) => Some((bid, self.lots.get(&bid.lot_id))),
            _ => None,
        }
    }

    fn say(&mut self, tone: Tone, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            tone,
            at: self.now,
        });
    }

    fn move_by(&mut self, delta: isize, wrap: bool) {
        let visible = self.visible();
        let Some(current) = self.selected_index(&visible) else {
            return;
        };
        let len = visible.len() as isize;
        let target = current as isize + delta;
        let index = if wrap {
            target.rem_euclid(len)
        } else {
            target.clamp(0, len - 1)
        };
        self.selected = Some(visible[index as usize].id.clone());
    }

    fn close(&mut self) {
        match self.overlay {
            Overlay::Filter => {
                self.filter.clear();
                self.overlay = Overlay::None;
            }
            Overlay::Help | Overlay::Bid(_) => self.overlay = Overlay::None,
            Overlay::None if self.screen == Screen::Floor => self.screen = Screen::Dashboard,
            Overlay::None => self.filter.clear(),
        }
    }

    fn open_bid_box(&mut self) {
        if !self.options.bidder {
            self.say(
                Tone::Bad,
                "Bidding needs a bidder token (--bidder-token or LOTSYNC_BIDDER_TOKEN)",
            );
            return;
        }
        let lot = match self.screen {
            Screen::Dashboard => self.selected_lot(),
            Screen::Floor => self.floor_lot(),
        };
        let Some(lot) = lot.cloned() else {
            self.say(Tone::Bad, "No lot to bid on");
            return;
        };
        if lot.status != LotStatus::Open {
            self.say(
                Tone::Bad,
                format!("Lot {} is {}, not open for bids", lot.id, lot.status),
            );
            return;
        }
        self.overlay = Overlay::Bid(BidBox::open(&lot));
    }

    fn edit_bid(&mut self, action: &Action) {
        let Overlay::Bid(bid) = &mut self.overlay else {
            return;
        };
        let Some(lot) = self.lots.get(&bid.lot_id) else {
            return;
        };
        if bid.phase == BidPhase::Placing {
            return;
        }
        match action {
            Action::BidUp => bid.step_up(lot),
            Action::BidDown => bid.step_down(lot),
            Action::BidDigit(d) => bid.digit(lot, *d),
            Action::BidBackspace => bid.backspace(lot),
            Action::BidToggleMax => bid.toggle_max(),
            _ => {}
        }
    }

    fn place_bid(&mut self) -> Option<Effect> {
        let Overlay::Bid(bid) = &mut self.overlay else {
            return None;
        };
        if bid.phase == BidPhase::Placing {
            return None;
        }
        let Some(lot) = self.lots.get(&bid.lot_id) else {
            bid.phase = BidPhase::Refused("The lot is gone".to_owned());
            return None;
        };
        match bid.check(lot) {
            Ok(amount) => {
                bid.phase = BidPhase::Placing;
                let lot_id = bid.lot_id.clone();
                let max = bid.max;
                let what = if max { "a maximum of " } else { "" };
                let text = format!(
                    "Placing {what}{} on {lot_id}…",
                    format::money(&lot.currency, amount)
                );
                self.say(Tone::Info, text);
                Some(Effect::PlaceBid {
                    lot_id,
                    amount,
                    max,
                })
            }
            Err(why) => {
                // Help the bidder along: the next Enter offers the current minimum.
                if lot.status == LotStatus::Open {
                    bid.amount = bid.amount.max(lot.min_next_bid());
                }
                bid.phase = BidPhase::Refused(why.clone());
                self.say(Tone::Bad, why);
                None
            }
        }
    }

    fn bid_answered(&mut self, lot_id: String, amount: Money, outcome: BidOutcome) {
        let currency = self
            .lots
            .get(&lot_id)
            .map_or("", |lot| lot.currency.as_str())
            .to_owned();
        let placed = format::money(&currency, amount);
        let (tone, text) = match &outcome {
            BidOutcome::Accepted => (Tone::Good, format!("Bid {placed} on {lot_id} accepted")),
            BidOutcome::Standing {
                bidder,
                leading,
                current_price,
                max_amount,
            } => {
                self.me = Some(bidder.clone());
                let entry = self.mine.entry(lot_id.clone()).or_default();
                if max_amount.is_some() {
                    entry.max_amount = *max_amount;
                }
                let price = format::money(&currency, *current_price);
                if *leading {
                    (Tone::Good, format!("You lead {lot_id} at {price}"))
                } else {
                    (
                        Tone::Bad,
                        format!("Outbid on {lot_id}: a maximum answered, the price is {price}"),
                    )
                }
            }
            BidOutcome::TooLow { min_next_bid } => (
                Tone::Bad,
                format!(
                    "Bid {placed} on {lot_id} too low: the next bid must be at least {}",
                    format::money(&currency, *min_next_bid)
                ),
            ),
            BidOutcome::NotOpen { status } => (
                Tone::Bad,
                format!("Bid on {lot_id} refused: the lot is {status}"),
            ),
            BidOutcome::Failed(why) => (Tone::Bad, format!("Bid on {lot_id} failed: {why}")),
        };
        self.say(tone, text.clone());
        let Overlay::Bid(bid) = &mut self.overlay else {
            return;
        };
        if bid.lot_id != lot_id {
            return;
        }
        match outcome {
            BidOutcome::Accepted | BidOutcome::Standing { .. } => self.overlay = Overlay::None,
            BidOutcome::TooLow { min_next_bid } => {
                bid.amount = bid.amount.max(min_next_bid);
                bid.phase = BidPhase::Refused(text);
            }
            BidOutcome::NotOpen { .. } | BidOutcome::Failed(_) => {
                bid.phase = BidPhase::Refused(text)
            }
        }
    }

    fn replace_all(&mut self, lots: Vec<Arc<Lot>>, flash_changes: bool) {
        let old = std::mem::take(&mut self.lots);
        for lot in lots {
            let changed = old.get(&lot.id).is_none_or(|before| before.seq != lot.seq);
            if flash_changes && changed {
                self.flashed.insert(lot.id.clone(), self.now);
            }
            if !self.history.contains_key(&lot.id) {
                self.history.insert(lot.id.clone(), seed_history(&lot));
            } else if changed {
                self.record_price(&lot);
            }
            self.lots.insert(lot.id.clone(), lot);
        }
        self.flashed.retain(|id, _| self.lots.contains_key(id));
        self.history.retain(|id, _| self.lots.contains_key(id));
    }

    fn apply(&mut self, lot: Arc<Lot>) {
        if self
            .lots
            .get(&lot.id)
            .is_some_and(|before| before.seq >= lot.seq)
        {
            return; // never show an older version than one already shown
        }
        self.flashed.insert(lot.id.clone(), self.now);
        self.stats.changed(lot.updated_at);
        if self.history.contains_key(&lot.id) {
            self.record_price(&lot);
        } else {
            self.history.insert(lot.id.clone(), seed_history(&lot));
        }
        if let Overlay::Bid(bid) = &mut self.overlay
            && bid.lot_id == lot.id
        {
            bid.follow(&lot);
        }
        self.lots.insert(lot.id.clone(), lot);
    }

    fn record_price(&mut self, lot: &Lot) {
        let history = self.history.entry(lot.id.clone()).or_default();
        if history.back() != Some(&lot.current_price) {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(lot.current_price);
        }
    }
}

/// Price history for a lot first seen now: its recent bids, oldest first.
fn seed_history(lot: &Lot) -> VecDeque<Money> {
    let mut history: VecDeque<Money> = VecDeque::with_capacity(HISTORY);
    if lot.bid_count as usize > lot.recent_bids.len() || lot.recent_bids.is_empty() {
        history.push_back(lot.starting_price);
    }
    history.extend(lot.recent_bids.iter().rev().map(|bid| bid.amount));
    if history.back() != Some(&lot.current_price) {
        history.push_back(lot.current_price);
    }
    history
}
