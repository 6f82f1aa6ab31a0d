//! A ring of recent notices: the retained tail of one history, as a plain data structure.
//!
//! It is what a resume point is served from. The master fills it from its operation
//! log; a terminal server from the notices it has relayed. A position older than the
//! ring's start, or beyond its head, cannot be served: the caller answers `reset` (on a
//! stream) or 410 (on `/v1/changes`).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::protocol::{Notice, Seq};

/// The requested position is not in the retained history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// Oldest sequence retained (0 when nothing is retained).
    pub oldest: Seq,
    /// Last sequence of the history.
    pub head: Seq,
}

/// The last `capacity` notices of one history, contiguous in sequence.
///
/// ```
/// use lotsync::serve::NoticeRing;
/// # use lotsync::protocol::{Notice, OpKind};
/// # let notice = |seq| Notice { seq, lot_id: "a".into(), kind: OpKind::Bid, at: chrono::Utc::now(), lot: None };
/// let mut ring = NoticeRing::new(2, 10);
/// ring.extend((11..=13).map(notice));
/// assert_eq!(ring.head(), 13);
/// assert_eq!(ring.oldest(), 12);
/// assert_eq!(ring.after(11, 10).unwrap().len(), 2);
/// assert!(ring.after(10, 10).is_err(), "13 - 2 retained: 11 is gone");
/// ```
#[derive(Debug, Clone)]
pub struct NoticeRing {
    capacity: usize,
    /// The sequence just before the first retained entry.
    base: Seq,
    entries: VecDeque<Notice>,
}

impl NoticeRing {
    /// An empty ring at `head` (nothing retained yet) keeping at most `capacity` entries.
    pub fn new(capacity: usize, head: Seq) -> NoticeRing {
        NoticeRing {
            capacity: capacity.max(1),
            base: head,
            entries: VecDeque::new(),
        }
    }

    /// Last sequence of the history.
    pub fn head(&self) -> Seq {
        self.base + self.entries.len() as Seq
    }

    /// Oldest retained sequence, 0 when the ring is empty.
    pub fn oldest(&self) -> Seq {
        self.entries.front().map_or(0, |n| n.seq)
    }

    /// Append notices that continue the sequence. A notice that does not follow the
    /// head (a gap or a repeat) is ignored and reported: the ring never holds a gap.
    pub fn extend(&mut self, notices: impl IntoIterator<Item = Notice>) -> Result<(), Seq> {
        for notice in notices {
            if notice.seq != self.head() + 1 {
                return Err(notice.seq);
            }
            self.entries.push_back(notice);
        }
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
            self.base += 1;
        }
        Ok(())
    }

    /// Forget everything and continue at `head` (a new history, or a jump nobody can
    /// replay: resume points before it get reset).
    pub fn reset(&mut self, head: Seq) {
        self.entries.clear();
        self.base = head;
    }

    /// Entries after `after`, at most `limit`. Fails when `after` is older than the
    /// retained history or beyond the head (a position from another history).
    pub fn after(&self, after: Seq, limit: usize) -> Result<Vec<Notice>, Truncated> {
        let head = self.head();
        if after > head || after < self.base {
            return Err(Truncated {
                oldest: self.oldest(),
                head,
            });
        }
        let skip = (after - self.base) as usize;
        Ok(self
            .entries
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect())
    }

    /// Commit time of a retained entry.
    pub fn at_of(&self, seq: Seq) -> Option<DateTime<Utc>> {
        let index = seq.checked_sub(self.base + 1)?;
        self.entries.get(index as usize).map(|n| n.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::OpKind;

    fn notice(seq: Seq) -> Notice {
        Notice {
            seq,
            lot_id: format!("lot-{seq}"),
            kind: OpKind::Upsert,
            at: Utc::now(),
            lot: None,
        }
    }

    fn seqs(v: Vec<Notice>) -> Vec<Seq> {
        v.iter().map(|n| n.seq).collect()
    }

    #[test]
    fn serves_ranges_and_reports_truncation() {
        let mut ring = NoticeRing::new(3, 0);
        assert_eq!(ring.after(0, 10), Ok(vec![]));
        ring.extend((1..=5).map(notice)).unwrap();
        assert_eq!((ring.oldest(), ring.head()), (3, 5));
        assert_eq!(seqs(ring.after(2, 10).unwrap()), vec![3, 4, 5]);
        assert_eq!(seqs(ring.after(3, 1).unwrap()), vec![4]);
        assert_eq!(ring.after(5, 10), Ok(vec![]));
        let truncated = Err(Truncated { oldest: 3, head: 5 });
        assert_eq!(ring.after(1, 10), truncated);
        assert_eq!(ring.after(0, 10), truncated);
        assert_eq!(ring.after(6, 10), truncated);
        assert!(ring.at_of(4).is_some());
        assert!(ring.at_of(2).is_none());
        assert!(ring.at_of(6).is_none());
    }

    #[test]
    fn refuses_gaps_and_repeats() {
        let mut ring = NoticeRing::new(10, 4);
        assert_eq!(ring.extend([notice(6)]), Err(6));
        assert_eq!(ring.extend([notice(5), notice(5)]), Err(5));
        assert_eq!(ring.head(), 5);
        assert_eq!(seqs(ring.after(4, 10).unwrap()), vec![5]);
    }

    #[test]
    fn reset_moves_the_start() {
        let mut ring = NoticeRing::new(10, 0);
        ring.extend((1..=3).map(notice)).unwrap();
        ring.reset(100);
        assert_eq!(ring.head(), 100);
        assert_eq!(ring.after(100, 10), Ok(vec![]));
        assert!(
            ring.after(3, 10).is_err(),
            "positions before the jump are reset"
        );
        ring.extend([notice(101)]).unwrap();
        assert_eq!(seqs(ring.after(100, 10).unwrap()), vec![101]);
    }
}
