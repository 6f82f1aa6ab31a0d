//! Bidding as car auctions run it, in the store on every engine pair: proxy bids
//! resolved into logged bids, the audit trail (durable across a restart, refused bids
//! included), maximums kept out of the replica, old rows read with a ladder and
//! `reserve_met`, and sequential lanes.

mod common;

use chrono::Utc;
use common::engines::{Databases, Db, Engine};
use common::{config, open_lot, replicated};
use lotsync::protocol::{
    AuditAction, AuditOrigin, BidRequest, IncrementBand, Ladder, LaneSettings, LotStatus, OpKind,
};
use mock_master::AppState;
use mock_master::store::StoreError;
use mock_master::store::engine::Value;

crate::on_every_engine!(
    maximums_bid_for_their_owner_and_everything_is_audited,
    rows_from_before_ladders_and_confidential_reserves_read_cleanly,
);

fn ladder() -> Ladder {
    Ladder::new(vec![
        IncrementBand {
            from: 0,
            step: 5_000,
        },
        IncrementBand {
            from: 200_000,
            step: 10_000,
        },
    ])
}

async fn maximums_bid_for_their_owner_and_everything_is_audited(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    let store = &state.store;
    let mut input = open_lot("Volvo XC60");
    input.increment = ladder();
    input.reserve_price = Some(250_000);
    store.put_lot("a", input).await.unwrap();

    // alice leaves 300,000: she opens at the starting price.
    let alice = store
        .bid("alice", "a", BidRequest::max(300_000), Some("k-a".into()))
        .await
        .unwrap();
    assert!(alice.receipt.leading);
    assert_eq!(
        (alice.receipt.current_price, alice.receipt.max_amount),
        (100_000, Some(300_000))
    );
    // bob's 195,000 is answered one step (of 195,000's band: 5,000) above.
    let bob = store.place_bid("bob", "a", 195_000, None).await.unwrap();
    assert!(!bob.receipt.leading);
    assert_eq!(bob.receipt.current_price, 200_000);
    // Too low: refused, audited, no sequence taken.
    let head = state.store.log_tail().head();
    assert!(matches!(
        store.place_bid("bob", "a", 200_000, None).await,
        Err(StoreError::BidTooLow {
            min_next_bid: 210_000,
            ..
        })
    ));
    assert_eq!(state.store.log_tail().head(), head);
    // bob's maximum of 260,000 loses to alice's: his becomes a bid, she leads above it.
    let bob = store
        .bid("bob", "a", BidRequest::max(260_000), None)
        .await
        .unwrap();
    assert!(!bob.receipt.leading);
    assert_eq!(bob.receipt.bid.amount, 260_000);
    assert_eq!(bob.receipt.current_price, 270_000);
    // A retried request is answered again and places nothing.
    let again = store
        .bid("alice", "a", BidRequest::max(300_000), Some("k-a".into()))
        .await
        .unwrap();
    assert!(again.replayed);
    // The owner reads her own maximum; bob reads his, never hers.
    let mine = store.max_status("a", "alice").await.unwrap().unwrap();
    assert_eq!((mine.max_amount, mine.leading), (Some(300_000), true));
    let his = store.max_status("a", "bob").await.unwrap().unwrap();
    assert_eq!((his.max_amount, his.leading), (Some(260_000), false));

    let kinds: Vec<OpKind> = state
        .store
        .changes(0, 100)
        .unwrap()
        .iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            OpKind::Upsert,
            OpKind::Bid,
            OpKind::Bid,
            OpKind::Bid,
            OpKind::Bid,
            OpKind::Bid
        ],
        "every price change is an operation of its own"
    );
    let head = state.store.log_tail().head();
    replicated(&state, head).await;
    let (_, lot) = store.replica_lot("a").await.unwrap();
    let lot = lot.unwrap();
    assert_eq!(lot.current_price, 270_000);
    assert_eq!(lot.reserve_met, Some(true));
    assert_eq!(lot.increment, 10_000);
    let bids: Vec<(String, i64, bool)> = lot
        .recent_bids
        .iter()
        .rev()
        .map(|b| (b.bidder.clone(), b.amount, b.proxy))
        .collect();
    assert_eq!(
        bids,
        [
            ("alice".to_owned(), 100_000, true),
            ("bob".to_owned(), 195_000, false),
            ("alice".to_owned(), 200_000, true),
            ("bob".to_owned(), 260_000, true),
            ("alice".to_owned(), 270_000, true),
        ]
    );
    state.store.shutdown().await;
    drop(state);

    // Maximums are primary only; the audit trail survives a restart.
    let replica_has_maxima = dbs
        .query(
            Db::Replica,
            "SELECT count(*) FROM lots WHERE data LIKE '%300000%'",
        )
        .first()
        .map(|r| r.int(0).unwrap());
    assert_eq!(replica_has_maxima, Some(0), "a maximum reached the replica");
    let state = AppState::open(dbs.config()).unwrap();
    let trail = state.store.audit("a", 0).await.unwrap().unwrap();
    type Line = (AuditAction, AuditOrigin, bool, Option<i64>, Option<i64>);
    let summary: Vec<Line> = trail
        .iter()
        .map(|e| (e.action, e.origin, e.accepted, e.amount, e.max_amount))
        .collect();
    use AuditAction::{Bid, Max};
    use AuditOrigin::{Direct, Proxy, Replay};
    assert_eq!(
        summary,
        [
            (Max, Direct, true, None, Some(300_000)),
            (Bid, Proxy, true, Some(100_000), None),
            (Bid, Direct, true, Some(195_000), None),
            (Bid, Proxy, true, Some(200_000), None),
            (Bid, Direct, false, Some(200_000), None),
            (Max, Direct, true, None, Some(260_000)),
            (Bid, Proxy, true, Some(260_000), None),
            (Bid, Proxy, true, Some(270_000), None),
            (Max, Replay, false, None, Some(300_000)),
        ]
    );
    assert!(
        trail
            .windows(2)
            .all(|w| w[0].id < w[1].id && w[0].at_us <= w[1].at_us)
    );
    assert!(
        trail[4]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("bid_too_low")
    );
    assert!(
        trail
            .iter()
            .filter(|e| e.accepted && e.action == Bid)
            .all(|e| e.seq.is_some())
    );
    // Paging from an id.
    let rest = state.store.audit("a", trail[6].id).await.unwrap().unwrap();
    assert_eq!(rest.len(), 2);
    assert!(state.store.audit("nope", 0).await.unwrap().is_none());
    state.store.shutdown().await;
}

async fn rows_from_before_ladders_and_confidential_reserves_read_cleanly(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    let mut input = open_lot("Saab 9-3");
    input.reserve_price = Some(150_000);
    state.store.put_lot("old", input).await.unwrap();
    state
        .store
        .place_bid("alice", "old", 120_000, None)
        .await
        .unwrap();
    let head = state.store.log_tail().head();
    replicated(&state, head).await;
    state.store.shutdown().await;
    drop(state);
    // Rewrite both databases' rows as the previous version stored them: the reserve in
    // the data, no ladder, no reserve_met.
    for db in [Db::Primary, Db::Replica] {
        let data = dbs.query(db, "SELECT data FROM lots WHERE id = 'old'")[0]
            .text(0)
            .unwrap();
        let mut old: serde_json::Value = serde_json::from_str(&data).unwrap();
        let map = old.as_object_mut().unwrap();
        map.remove("increment_ladder");
        map.remove("reserve_met");
        assert_eq!(map["reserve_price"], 150_000);
        dbs.execute(
            db,
            "UPDATE lots SET data = ? WHERE id = 'old'",
            &[Value::from(old.to_string())],
        );
    }
    let state = AppState::open(dbs.config()).unwrap();
    let (_, lot) = state.store.replica_lot("old").await.unwrap();
    let lot = lot.unwrap();
    assert_eq!(lot.reserve_met, Some(false));
    assert_eq!(lot.increment_ladder, Ladder::fixed(5_000).bands());
    assert_eq!(lot.min_next_bid(), 125_000);
    let text = serde_json::to_string(&lot).unwrap();
    assert!(!text.contains("reserve_price"), "{text}");
    // A new bid on the old row meets the reserve.
    state
        .store
        .place_bid("bob", "old", 150_000, None)
        .await
        .unwrap();
    let lot = state.store.admin_lot("old").await.unwrap().unwrap();
    assert_eq!(
        (lot.reserve_price, lot.lot.reserve_met),
        (Some(150_000), Some(true))
    );
    state.store.shutdown().await;
}

/// A lot of a sequential lane opens only after the one before it settled, after the gap.
#[tokio::test]
async fn sequential_lanes_run_one_lot_at_a_time() {
    let state = AppState::open(config()).unwrap();
    let store = &state.store;
    store
        .set_lane(
            "A",
            LaneSettings {
                sequential: true,
                gap_ms: 0,
            },
        )
        .await
        .unwrap();
    let now = Utc::now();
    for (id, order, status) in [
        ("a1", 1, LotStatus::Open),
        ("a2", 2, LotStatus::Scheduled),
        ("a3", 3, LotStatus::Scheduled),
    ] {
        let mut input = open_lot(id);
        input.lane = Some("A".into());
        input.run_order = Some(order);
        input.status = Some(status);
        input.starts_at = now - chrono::Duration::minutes(5);
        input.ends_at = now + chrono::Duration::minutes(10);
        store.put_lot(id, input).await.unwrap();
    }
    let status = |lots: &[lotsync::protocol::Lot], id: &str| {
        lots.iter().find(|l| l.id == id).unwrap().status
    };
    // Every start has come, but a1 is still running: nothing else opens.
    store.run_due(now).await.unwrap();
    let lots = store.primary_lots().await.unwrap();
    assert_eq!(
        [status(&lots, "a2"), status(&lots, "a3")],
        [LotStatus::Scheduled, LotStatus::Scheduled]
    );
    // a1 ends and settles: a2 opens (gap 0) with its planned duration; a3 waits.
    store
        .run_due(now + chrono::Duration::minutes(11))
        .await
        .unwrap();
    let lots = store.primary_lots().await.unwrap();
    assert_eq!(status(&lots, "a1"), LotStatus::Passed);
    assert_eq!(status(&lots, "a2"), LotStatus::Open);
    assert_eq!(status(&lots, "a3"), LotStatus::Scheduled);
    let a2 = lots.iter().find(|l| l.id == "a2").unwrap();
    assert_eq!(a2.ends_at - a2.starts_at, chrono::Duration::minutes(15));
    assert!(a2.starts_at >= now, "a2 opens after a1 settled");
    assert_eq!(a2.lane.as_deref(), Some("A"));
    // With a gap, the next lot is scheduled after it rather than opened at once.
    store
        .set_lane(
            "A",
            LaneSettings {
                sequential: true,
                gap_ms: 60_000,
            },
        )
        .await
        .unwrap();
    store.set_status("a2", LotStatus::Withdrawn).await.unwrap();
    let lots = store.primary_lots().await.unwrap();
    let a3 = lots.iter().find(|l| l.id == "a3").unwrap();
    assert_eq!(a3.status, LotStatus::Scheduled);
    assert!(a3.starts_at >= Utc::now() + chrono::Duration::seconds(50));
    assert_eq!(store.lanes().await.unwrap()[0].gap_ms, 60_000);
    state.store.shutdown().await;
}
