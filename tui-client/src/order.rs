//! Which lots the table shows and in which order: sort modes and the filter match.

use lotsync::protocol::{Lot, LotStatus};

use crate::format;

/// Order of the lot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortMode {
    /// Open lots closing soonest first, then scheduled lots opening soonest, then the rest.
    EndsSoonest,
    /// By lot id.
    Id,
    /// Highest current price first.
    Price,
    /// Most bids first.
    MostBids,
    /// Grouped by lane, each in run order (lots without a lane last).
    Lane,
}

impl SortMode {
    /// The next mode in the `s` cycle.
    pub fn next(self) -> SortMode {
        match self {
            SortMode::EndsSoonest => SortMode::Id,
            SortMode::Id => SortMode::Price,
            SortMode::Price => SortMode::MostBids,
            SortMode::MostBids => SortMode::Lane,
            SortMode::Lane => SortMode::EndsSoonest,
        }
    }

    /// Label for the footer.
    pub fn label(self) -> &'static str {
        match self {
            SortMode::EndsSoonest => "ends soonest",
            SortMode::Id => "id",
            SortMode::Price => "price",
            SortMode::MostBids => "most bids",
            SortMode::Lane => "lane",
        }
    }
}

/// Rank of a status in the "ends soonest" order: open first, withdrawn last.
pub fn status_rank(status: LotStatus) -> u8 {
    match status {
        LotStatus::Open => 0,
        LotStatus::Scheduled => 1,
        LotStatus::Closed => 2,
        LotStatus::Sold | LotStatus::Passed => 3,
        LotStatus::Withdrawn => 4,
    }
}

/// Whether `lot` matches a lower-case filter `needle` (empty matches everything).
pub fn matches(lot: &Lot, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let has = |text: &str| text.to_lowercase().contains(needle);
    has(&lot.id)
        || has(&lot.title)
        || has(lot.status.as_str())
        || lot.leading_bidder.as_deref().is_some_and(has)
        || lot.lane.as_deref().is_some_and(has)
        || lot
            .attributes
            .values()
            .any(|value| has(&format::attribute(value)))
}
