//! The SDK against the real mock master, in-process: coalescing, batching, resume,
//! resync, convergence of several clients and slow displays.

use std::time::Duration;

use lotsync::Update;
use lotsync::protocol::ChaosPatch;
use lotsync_tests::*;

const HEARTBEAT: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(15);

async fn assert_converged(master: &mock_master::Master, clients: &[lotsync::Client]) {
    let outcome = wait_converged(&master.handle(), clients, WAIT)
        .await
        .expect("replica caught up");
    assert_eq!(
        outcome,
        Ok(()),
        "mirror differs from the replica (id, mirror, replica)"
    );
}

#[tokio::test]
async fn a_burst_on_one_lot_causes_at_most_two_fetches() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let handle = master.handle();
    create_lots(&handle, 1).await.unwrap();
    let client = connect(&master).unwrap();
    assert!(client.wait_live(WAIT).await);
    let before = client.metrics();

    // Hold the replica so the first fetch waits while the whole burst is noticed.
    handle
        .set_chaos(ChaosPatch {
            pause_replicator: Some(true),
            ..Default::default()
        })
        .unwrap();
    for i in 0..50 {
        handle
            .place_bid("alice", "lot-0", 10_000 + i * 100)
            .await
            .unwrap();
    }
    handle
        .set_chaos(ChaosPatch {
            pause_replicator: Some(false),
            ..Default::default()
        })
        .unwrap();
    assert_converged(&master, std::slice::from_ref(&client)).await;

    let after = client.metrics();
    let notices = after.notices - before.notices;
    let fetches = after.fetches - before.fetches;
    assert_eq!(notices, 50, "{after:?}");
    assert!(
        fetches <= 2,
        "50 notices on one lot caused {fetches} fetches"
    );
    assert!(after.coalesced_notices - before.coalesced_notices >= 48);
    client.shutdown().await;
    master.shutdown().await;
}

#[tokio::test]
async fn notices_for_many_lots_are_fetched_in_batches() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, 40).await.unwrap();
    let client = lotsync::Client::builder(master.url())
        .token(master.terminal_token())
        .fetch_concurrency(1)
        .batch_size(64)
        .build()
        .unwrap();
    assert!(client.wait_live(WAIT).await);
    let before = client.metrics();

    handle
        .set_chaos(ChaosPatch {
            pause_replicator: Some(true),
            ..Default::default()
        })
        .unwrap();
    for id in &ids {
        handle.place_bid("bob", id, 10_000).await.unwrap();
    }
    handle
        .set_chaos(ChaosPatch {
            pause_replicator: Some(false),
            ..Default::default()
        })
        .unwrap();
    assert_converged(&master, std::slice::from_ref(&client)).await;

    let fetches = client.metrics().fetches - before.fetches;
    assert!(
        fetches <= 3,
        "40 lots took {fetches} fetches; expected batches"
    );
    client.shutdown().await;
    master.shutdown().await;
}

#[tokio::test]
async fn a_cut_stream_resumes_from_the_last_event_without_a_resync() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, 5).await.unwrap();
    let client = connect(&master).unwrap();
    assert!(client.wait_live(WAIT).await);

    for round in 0..5 {
        for id in &ids {
            handle
                .place_bid("alice", id, 10_000 + round * 1_000)
                .await
                .unwrap();
        }
        handle
            .set_chaos(ChaosPatch {
                cut_streams: Some(true),
                ..Default::default()
            })
            .unwrap();
    }
    assert_converged(&master, std::slice::from_ref(&client)).await;
    let metrics = client.metrics();
    assert!(metrics.reconnects >= 1, "{metrics:?}");
    assert_eq!(
        metrics.resyncs, 1,
        "only the first snapshot: resume needed no resync"
    );
    client.shutdown().await;
    master.shutdown().await;
}

#[tokio::test]
async fn history_that_cannot_be_caught_up_leads_to_a_resync() {
    let master = mock_master::Master::builder()
        .in_memory()
        .heartbeat(HEARTBEAT)
        .chaos(true)
        .log_retention(10)
        .bidder("alice", "alice-token")
        .start()
        .await
        .unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, 3).await.unwrap();
    let client = connect(&master).unwrap();
    assert!(client.wait_live(WAIT).await);
    let mut display = client.subscribe();

    // The client sees none of these notices; only a heartbeat tells it it is behind,
    // by more than the master still remembers.
    handle
        .set_chaos(ChaosPatch {
            notice_drop_rate: Some(1.0),
            ..Default::default()
        })
        .unwrap();
    for round in 0..20 {
        for id in &ids {
            handle
                .place_bid("alice", id, 10_000 + round * 1_000)
                .await
                .unwrap();
        }
    }
    handle
        .set_chaos(ChaosPatch {
            notice_drop_rate: Some(0.0),
            ..Default::default()
        })
        .unwrap();
    assert_converged(&master, std::slice::from_ref(&client)).await;
    assert!(client.metrics().resyncs >= 2, "{:?}", client.metrics());
    while let Some(update) = display.try_recv() {
        if let Update::Resynced { lots, .. } | Update::Snapshot { lots, .. } = update {
            assert_eq!(lots.len(), 3, "the display is never blanked");
        }
    }
    client.shutdown().await;
    master.shutdown().await;
}

#[tokio::test]
async fn several_clients_converge_on_the_replica_under_concurrent_bids() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, 10).await.unwrap();
    let clients: Vec<_> = (0..3).map(|_| connect(&master).unwrap()).collect();
    for client in &clients {
        assert!(client.wait_live(WAIT).await);
    }
    let bidders = [("alice", 0i64), ("bob", 1)].map(|(bidder, offset)| {
        let handle = handle.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            let mut accepted = 0;
            for round in 0..20i64 {
                for id in &ids {
                    // The two bidders race; a bid overtaken by the other's is refused.
                    let amount = 10_000 + (round * 2 + offset) * 100;
                    if handle.place_bid(bidder, id, amount).await.is_ok() {
                        accepted += 1;
                    }
                }
            }
            accepted
        })
    });
    let mut accepted = 0;
    for bidder in bidders {
        accepted += bidder.await.unwrap();
    }
    assert!(accepted > 100, "only {accepted} bids accepted");
    assert_converged(&master, &clients).await;
    for client in clients {
        client.shutdown().await;
    }
    master.shutdown().await;
}

#[tokio::test]
async fn a_slow_display_does_not_stall_a_fast_one() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, 4).await.unwrap();
    let client = connect(&master).unwrap();
    assert!(client.wait_live(WAIT).await);
    let mut slow = client.subscribe();
    let mut fast = client.subscribe();

    for round in 0..50 {
        for id in &ids {
            handle
                .place_bid("alice", id, 10_000 + round * 100)
                .await
                .unwrap();
        }
    }
    assert_converged(&master, std::slice::from_ref(&client)).await;
    let replica = handle.replica_lots().await.unwrap();

    // The fast display reaches every final version while the slow one has read nothing.
    let mut newest = std::collections::HashMap::new();
    while newest.len() < ids.len() || replica.iter().any(|l| newest.get(&l.id) != Some(&l.seq)) {
        match tokio::time::timeout(WAIT, fast.recv())
            .await
            .expect("fast display fed")
        {
            Some(Update::LotChanged { lot, .. }) => {
                let previous = newest.insert(lot.id.clone(), lot.seq);
                assert!(previous.is_none_or(|p| p < lot.seq), "went back in time");
            }
            Some(Update::Snapshot { lots, .. }) => {
                newest.extend(lots.iter().map(|l| (l.id.clone(), l.seq)))
            }
            Some(_) => {}
            None => panic!("client closed"),
        }
    }

    // The slow display holds at most one entry per lot (plus snapshot and state) and
    // is told how much it skipped.
    assert!(
        slow.pending() <= ids.len() + 2,
        "{} pending",
        slow.pending()
    );
    let mut skipped = 0;
    while let Some(update) = slow.try_recv() {
        if let Update::LotChanged { skipped: s, .. } = update {
            skipped += s;
        }
    }
    assert!(skipped > 0 && slow.skipped() == skipped);
    assert!(
        client.metrics().display_skipped >= skipped,
        "the display_skipped metric counts what displays skipped"
    );
    client.shutdown().await;
    master.shutdown().await;
}
