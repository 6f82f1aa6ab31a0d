//! The store: write paths, the log, group commit, the replicator across a crash, epochs.
//! Every test runs on each engine pair (see `on_every_engine!`).

mod common;

use std::time::Duration;

use chrono::Utc;
use common::engines::{Databases, Db, Engine};
use common::{config, open_lot, replicated};
use lotsync::protocol::{ChaosPatch, LotStatus, OpKind};
use mock_master::AppState;
use mock_master::store::StoreError;
use mock_master::store::engine::Value;

crate::on_every_engine!(
    add_replace_and_status_only_paths,
    log_is_gap_free_and_rejected_commands_take_no_sequence,
    concurrent_bids_are_group_committed_and_strictly_rising,
    replicator_resumes_exactly_once_after_a_crash,
    epoch_is_kept_by_the_databases_and_new_elsewhere,
    a_replica_from_another_epoch_is_rebuilt,
    idempotent_bids_are_placed_once,
    idempotency_keys_expire_after_the_retention,
    keys_from_before_expiry_existed_are_kept_a_retention,
    anti_sniping_extends_and_the_closer_settles,
    old_history_is_pruned_but_not_past_the_replica,
);

async fn add_replace_and_status_only_paths(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    let store = &state.store;
    let (lot, created) = store.put_lot("car-1", open_lot("Volvo V70")).await.unwrap();
    assert!(created);
    assert_eq!((lot.seq, lot.current_price, lot.bid_count), (1, 100_000, 0));

    let bid = store
        .place_bid("alice", "car-1", 120_000, None)
        .await
        .unwrap()
        .bid;
    assert_eq!(bid.seq, 2);

    // Replace keeps the price state and the bids.
    let mut input = open_lot("Volvo V70 D4, new photos");
    input.increment = 10_000.into();
    let (lot, created) = store.put_lot("car-1", input).await.unwrap();
    assert!(!created);
    assert_eq!(lot.title, "Volvo V70 D4, new photos");
    assert_eq!((lot.seq, lot.current_price, lot.bid_count), (3, 120_000, 1));
    assert_eq!(lot.leading_bidder.as_deref(), Some("alice"));
    assert_eq!(lot.recent_bids, vec![bid]);
    assert_eq!(lot.min_next_bid(), 130_000);

    // Status only.
    let lot = store.set_status("car-1", LotStatus::Closed).await.unwrap();
    assert_eq!(
        (lot.status, lot.seq, lot.title.as_str()),
        (LotStatus::Closed, 4, "Volvo V70 D4, new photos")
    );
    let err = store
        .set_status("car-1", LotStatus::Open)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: LotStatus::Closed,
            to: LotStatus::Open
        }
    ));
    // A replace may not move the status backwards either.
    let err = store.put_lot("car-1", open_lot("again")).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err}");
    assert!(matches!(
        store.set_status("nope", LotStatus::Open).await,
        Err(StoreError::NotFound(_))
    ));

    replicated(&state, 4).await;
    assert_eq!(
        store.replica_lots(None).await.unwrap().1,
        store.primary_lots().await.unwrap()
    );
    state.store.shutdown().await;
}

async fn log_is_gap_free_and_rejected_commands_take_no_sequence(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    let store = &state.store;
    store.put_lot("a", open_lot("A")).await.unwrap();
    assert!(matches!(
        store.place_bid("alice", "a", 99_999, None).await,
        Err(StoreError::BidTooLow {
            min_next_bid: 100_000,
            field: "amount"
        })
    ));
    store.place_bid("alice", "a", 100_000, None).await.unwrap();
    assert!(matches!(
        store.place_bid("bob", "a", 104_999, None).await,
        Err(StoreError::BidTooLow {
            min_next_bid: 105_000,
            field: "amount"
        })
    ));
    assert!(matches!(
        store.place_bid("bob", "zz", 1, None).await,
        Err(StoreError::NotFound(_))
    ));
    store.place_bid("bob", "a", 105_000, None).await.unwrap();
    store.set_status("a", LotStatus::Withdrawn).await.unwrap();
    assert!(matches!(
        store.place_bid("alice", "a", 200_000, None).await,
        Err(StoreError::LotNotOpen {
            status: LotStatus::Withdrawn
        })
    ));
    let log = dbs.oplog();
    let expected = [(1, "upsert"), (2, "bid"), (3, "bid"), (4, "status")];
    assert_eq!(log.len(), expected.len());
    for ((seq, lot, kind), (want_seq, want_kind)) in log.iter().zip(expected) {
        assert_eq!(
            (*seq, lot.as_str(), kind.as_str()),
            (want_seq, "a", want_kind)
        );
    }
    let changes = store.changes(0, 100).unwrap();
    let kinds: Vec<OpKind> = changes.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        vec![OpKind::Upsert, OpKind::Bid, OpKind::Bid, OpKind::Status]
    );
    state.store.shutdown().await;
}

async fn concurrent_bids_are_group_committed_and_strictly_rising(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    let lots = ["l0", "l1", "l2", "l3"];
    for id in lots {
        state.store.put_lot(id, open_lot(id)).await.unwrap();
    }
    let bids = (0..200).map(|i| {
        let store = state.store.clone();
        let lot = lots[i % lots.len()];
        // Amounts in arrival order are not rising; the store decides which stand.
        let amount = 100_000 + ((i * 7919) % 200) as i64 * 5_000;
        async move {
            store
                .place_bid(if i % 2 == 0 { "alice" } else { "bob" }, lot, amount, None)
                .await
        }
    });
    let results = futures::future::join_all(bids).await;
    let accepted: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|o| o.bid.clone())
        .collect();
    assert!(!accepted.is_empty());
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, StoreError::BidTooLow { .. }), "{e}");
        }
    }
    for id in lots {
        let mut on_lot: Vec<_> = accepted.iter().filter(|b| b.lot_id == id).collect();
        on_lot.sort_by_key(|b| b.seq);
        assert!(
            on_lot.windows(2).all(|w| w[1].amount > w[0].amount),
            "{id}: {on_lot:?}"
        );
    }
    let log = dbs.oplog();
    let seqs: Vec<u64> = log.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=(4 + accepted.len() as u64)).collect::<Vec<_>>());
    // Far fewer commits than commands: they were grouped.
    let metrics = state.metrics.render(&state.replication());
    let commits: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lotsync_commit_batch_size_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(commits < 204, "{commits} commits for 204 commands");
    replicated(&state, *seqs.last().unwrap()).await;
    assert_eq!(
        state.store.replica_lots(None).await.unwrap().1,
        state.store.primary_lots().await.unwrap()
    );
    state.store.shutdown().await;
}

async fn replicator_resumes_exactly_once_after_a_crash(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let epoch;
    let head;
    {
        let state = AppState::open(dbs.config()).unwrap();
        epoch = state.store.epoch().to_owned();
        state.store.put_lot("a", open_lot("A")).await.unwrap();
        state.store.put_lot("b", open_lot("B")).await.unwrap();
        for i in 0..5 {
            state
                .store
                .place_bid("alice", "a", 100_000 + i * 5_000, None)
                .await
                .unwrap();
        }
        replicated(&state, 7).await;
        // The replica stops half way; the primary keeps taking bids.
        state
            .chaos
            .apply(&ChaosPatch {
                pause_replicator: Some(true),
                ..Default::default()
            })
            .unwrap();
        for i in 0..5 {
            state
                .store
                .place_bid("bob", "b", 100_000 + i * 5_000, None)
                .await
                .unwrap();
        }
        head = state.store.log_tail().head();
        assert_eq!(head, 12);
        // A paused replicator must not apply: wait on the applied watch for an advance
        // that must not come (a bounded window is the only way to observe "never").
        let mut applied = state.store.log_tail().watch_applied();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), applied.wait_for(|a| *a > 7))
                .await
                .is_err(),
            "the paused replicator applied past 7"
        );
        assert_eq!(state.store.log_tail().applied(), 7);
        state.store.shutdown().await;
    }
    assert_eq!(
        dbs.int(Db::Replica, "SELECT applied_seq FROM replication_state"),
        7
    );
    assert_eq!(dbs.int(Db::Replica, "SELECT count(*) FROM bids"), 5);

    let mut reopened = dbs.config();
    reopened.chaos = None;
    let state = AppState::open(reopened).unwrap();
    assert_eq!(state.store.epoch(), epoch, "same databases, same epoch");
    replicated(&state, head).await;
    let (applied, replica, _) = state.store.replica_lots(None).await.unwrap();
    assert_eq!(applied, head);
    assert_eq!(replica, state.store.primary_lots().await.unwrap());
    state.store.shutdown().await;
    assert_eq!(dbs.int(Db::Replica, "SELECT count(*) FROM bids"), 10);
    assert_eq!(
        dbs.int(Db::Replica, "SELECT count(DISTINCT seq) FROM bids"),
        10
    );
    assert_eq!(
        dbs.int(Db::Replica, "SELECT applied_seq FROM replication_state"),
        12
    );
}

async fn epoch_is_kept_by_the_databases_and_new_elsewhere(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let first = AppState::open(dbs.config()).unwrap();
    let epoch = first.store.epoch().to_owned();
    first.store.put_lot("a", open_lot("A")).await.unwrap();
    first.store.shutdown().await;
    drop(first);
    let again = AppState::open(dbs.config()).unwrap();
    assert_eq!(again.store.epoch(), epoch);
    assert_eq!(again.store.log_tail().head(), 1);
    assert_eq!(
        again.store.changes(0, 10).unwrap().len(),
        1,
        "the ring is reloaded from the log"
    );
    again.store.shutdown().await;

    let other = Databases::new(p, r);
    let fresh = AppState::open(other.config()).unwrap();
    assert_ne!(fresh.store.epoch(), epoch);
    let memory = AppState::open(config()).unwrap();
    let memory2 = AppState::open(config()).unwrap();
    assert_ne!(memory.store.epoch(), memory2.store.epoch());
    for s in [fresh, memory, memory2] {
        s.store.shutdown().await;
    }
}

async fn a_replica_from_another_epoch_is_rebuilt(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    state.store.put_lot("a", open_lot("A")).await.unwrap();
    state
        .store
        .place_bid("alice", "a", 100_000, None)
        .await
        .unwrap();
    state.store.shutdown().await;
    drop(state);
    dbs.execute(
        Db::Replica,
        "UPDATE meta SET value = ? WHERE \"key\" = ?",
        &[Value::from("other"), Value::from("epoch")],
    );
    dbs.execute(Db::Replica, "DELETE FROM lots", &[]);
    let state = AppState::open(dbs.config()).unwrap();
    assert_eq!(state.store.log_tail().applied(), 2);
    assert_eq!(
        state.store.replica_lots(None).await.unwrap().1,
        state.store.primary_lots().await.unwrap()
    );
    state.store.shutdown().await;
}

async fn idempotent_bids_are_placed_once(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    let store = &state.store;
    store.put_lot("a", open_lot("A")).await.unwrap();
    let first = store
        .place_bid("alice", "a", 100_000, Some("k1".into()))
        .await
        .unwrap();
    let again = store
        .place_bid("alice", "a", 100_000, Some("k1".into()))
        .await
        .unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.bid, again.bid);
    assert_eq!(store.log_tail().head(), 2);
    assert!(matches!(
        store
            .place_bid("alice", "a", 110_000, Some("k1".into()))
            .await,
        Err(StoreError::IdempotencyConflict)
    ));
    // Keys belong to a bidder.
    assert!(
        !store
            .place_bid("bob", "a", 110_000, Some("k1".into()))
            .await
            .unwrap()
            .replayed
    );
    state.store.shutdown().await;
}

async fn anti_sniping_extends_and_the_closer_settles(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    let store = &state.store;
    let mut input = open_lot("Late");
    input.ends_at = Utc::now() + chrono::Duration::seconds(3);
    input.reserve_price = Some(150_000);
    store.put_lot("late", input.clone()).await.unwrap();
    let before = Utc::now();
    store
        .place_bid("alice", "late", 100_000, None)
        .await
        .unwrap();
    let lot = &store.primary_lots().await.unwrap()[0];
    assert!(
        lot.ends_at >= before + chrono::Duration::seconds(10),
        "{}",
        lot.ends_at
    );

    let mut scheduled = open_lot("Soon");
    scheduled.status = None;
    store.put_lot("soon", scheduled).await.unwrap();
    assert_eq!(
        store.run_due(Utc::now()).await.unwrap(),
        1,
        "the scheduled lot opens"
    );
    assert_eq!(
        store
            .run_due(Utc::now() + chrono::Duration::hours(2))
            .await
            .unwrap(),
        4
    );
    let lots = store.primary_lots().await.unwrap();
    assert_eq!(lots[0].status, LotStatus::Passed, "reserve not met");
    assert_eq!(lots[1].status, LotStatus::Passed, "no bids");
    let kinds: Vec<_> = store
        .changes(3, 10)
        .unwrap()
        .iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(kinds, vec![OpKind::Status; 5]);
    state.store.shutdown().await;
}

async fn old_history_is_pruned_but_not_past_the_replica(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let mut cfg = dbs.config();
    cfg.log_retention = 10;
    let state = AppState::open(cfg).unwrap();
    state.store.put_lot("a", open_lot("A")).await.unwrap();
    for i in 0..49 {
        state
            .store
            .place_bid("alice", "a", 100_000 + i * 5_000, None)
            .await
            .unwrap();
    }
    assert_eq!(state.store.log_tail().oldest(), 41);
    assert!(state.store.changes(39, 10).is_err());
    assert_eq!(state.store.changes(40, 100).unwrap().len(), 10);
    replicated(&state, 50).await;
    state.store.put_lot("b", open_lot("B")).await.unwrap();
    state.store.shutdown().await;
    let kept = dbs.int(Db::Primary, "SELECT count(*) FROM oplog");
    assert!((10..50).contains(&kept), "{kept} entries kept");
}

/// A day and a bit, in milliseconds: moves a key past the default retention.
const PAST_RETENTION_MS: i64 = 25 * 3600 * 1000;

async fn idempotency_keys_expire_after_the_retention(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    let store = &state.store;
    store.put_lot("a", open_lot("A")).await.unwrap();
    let bid = |bidder: &'static str, amount: i64, key: &'static str| {
        store.place_bid(bidder, "a", amount, Some(key.into()))
    };
    let first = bid("alice", 100_000, "k1").await.unwrap();
    // Within the retention a retry gets the first answer.
    let again = bid("alice", 100_000, "k1").await.unwrap();
    assert!(again.replayed && again.bid == first.bid);
    assert!(matches!(
        bid("alice", 105_000, "k1").await,
        Err(StoreError::IdempotencyConflict)
    ));

    // Past the retention the key is forgotten: the same key is a new request.
    dbs.execute(
        Db::Primary,
        "UPDATE idempotency SET created_ms = created_ms - ?",
        &[Value::Int(PAST_RETENTION_MS)],
    );
    let newer = bid("alice", 105_000, "k1").await.unwrap();
    assert!(!newer.replayed);
    assert_eq!(newer.bid.seq, first.bid.seq + 1);
    let retried = bid("alice", 105_000, "k1").await.unwrap();
    assert!(retried.replayed && retried.bid == newer.bid);
    bid("bob", 110_000, "k2").await.unwrap();
    assert_eq!(dbs.int(Db::Primary, "SELECT count(*) FROM idempotency"), 2);
    state.store.shutdown().await;

    // Expired keys are deleted, so the table does not grow without bound (swept at
    // open, then every tenth of the retention while writes come).
    dbs.execute(
        Db::Primary,
        "UPDATE idempotency SET created_ms = created_ms - ? WHERE bidder = ?",
        &[Value::Int(PAST_RETENTION_MS), Value::from("bob")],
    );
    let state = AppState::open(dbs.config()).unwrap();
    let keys = dbs.query(Db::Primary, "SELECT bidder FROM idempotency");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].text(0).unwrap(), "alice");
    // A shorter retention forgets sooner.
    state.store.shutdown().await;
    let mut short = dbs.config();
    short.idempotency_retention = Duration::ZERO;
    let state = AppState::open(short).unwrap();
    assert_eq!(dbs.int(Db::Primary, "SELECT count(*) FROM idempotency"), 0);
    state.store.shutdown().await;
}

async fn keys_from_before_expiry_existed_are_kept_a_retention(p: Engine, r: Engine) {
    let dbs = Databases::new(p, r);
    let state = AppState::open(dbs.config()).unwrap();
    state.store.put_lot("a", open_lot("A")).await.unwrap();
    let first = state
        .store
        .place_bid("alice", "a", 100_000, Some("k1".into()))
        .await
        .unwrap();
    state.store.shutdown().await;
    drop(state);
    // The table as it was before keys expired: no creation time.
    let row = dbs.query(
        Db::Primary,
        "SELECT request_hash, response FROM idempotency",
    );
    let (hash, response) = (row[0].text(0).unwrap(), row[0].text(1).unwrap());
    dbs.batch(Db::Primary, "DROP TABLE idempotency");
    let old = dbs.dialect(Db::Primary).ddl(
        "CREATE TABLE idempotency (bidder {key} NOT NULL, \"key\" {key} NOT NULL, \
         request_hash {text} NOT NULL, response {text} NOT NULL, PRIMARY KEY (bidder, \"key\")){opts}",
    );
    dbs.batch(Db::Primary, &old);
    dbs.execute(
        Db::Primary,
        "INSERT INTO idempotency (bidder, \"key\", request_hash, response) VALUES (?, ?, ?, ?)",
        &[
            Value::from("alice"),
            Value::from("k1"),
            Value::from(hash),
            Value::from(response),
        ],
    );
    let state = AppState::open(dbs.config()).unwrap();
    let again = state
        .store
        .place_bid("alice", "a", 100_000, Some("k1".into()))
        .await
        .unwrap();
    assert!(again.replayed && again.bid == first.bid, "{again:?}");
    state.store.shutdown().await;
}
