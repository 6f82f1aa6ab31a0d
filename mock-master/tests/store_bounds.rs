//! The store's bounds and its health report: a full writer queue refuses at once (503)
//! and loses nothing it accepted, and `/healthz` tells when replication is stalled.
//! (The read pool's bound is tested next to it, in `store::replica`.)

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::engines::{Databases, Engine};
use common::{config, get, open_lot, replicated};
use lotsync::protocol::ChaosPatch;
use mock_master::AppState;
use mock_master::store::StoreError;
use mock_master::store::engine::{Access, Durability, connect};

/// Generous bound on anything waited for: only a hang reaches it.
const HANG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_queue_refuses_at_once_and_loses_nothing_it_took() {
    let dbs = Databases::new(Engine::Sqlite, Engine::Sqlite);
    let mut cfg = dbs.config();
    cfg.writer_queue = 4;
    let state = AppState::open(cfg).unwrap();
    // Another connection holds the primary's write lock: the writer's next batch waits
    // for it, so commands pile up in the queue.
    let mut lock = connect(&dbs.primary, Access::Write(Durability::Full)).unwrap();
    lock.begin_write().unwrap();

    let (refused_tx, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let writes: Vec<_> = (0..300)
        .map(|i| {
            let (store, refused_tx) = (state.store.clone(), refused_tx.clone());
            tokio::spawn(async move {
                let id = format!("lot-{i}");
                let result = store.put_lot(&id, open_lot(&id)).await;
                if matches!(result, Err(StoreError::Busy(_))) {
                    let _ = refused_tx.send(());
                }
                (id, result)
            })
        })
        .collect();
    tokio::time::timeout(HANG, refused.recv())
        .await
        .expect("a write refused while the queue is full");
    lock.rollback().unwrap();

    let mut taken = Vec::new();
    let mut busy = 0;
    for write in writes {
        let (id, result) = write.await.unwrap();
        match result {
            Ok((lot, _)) => taken.push((lot.seq, id)),
            Err(StoreError::Busy(_)) => busy += 1,
            // The lock outlived the database's lock timeout: the batch was refused whole.
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("{id}: {e}"),
        }
    }
    taken.sort();
    eprintln!(
        "writer queue of 4: {} writes taken, {busy} refused as busy",
        taken.len()
    );
    assert!(busy > 0);
    let log = dbs.oplog();
    let logged: Vec<(u64, String)> = log.iter().map(|(s, id, _)| (*s, id.clone())).collect();
    assert_eq!(
        logged, taken,
        "exactly the writes answered were written, in order"
    );
    state.store.shutdown().await;
}

#[tokio::test]
async fn healthz_reports_stalled_replication_and_recovery() {
    let mut cfg = config();
    cfg.replication_stall = Duration::ZERO;
    let state = AppState::open(cfg).unwrap();
    let (lot, _) = state.store.put_lot("a", open_lot("A")).await.unwrap();
    replicated(&state, lot.seq).await;
    let (status, _, body) = get(&state, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");

    state
        .chaos
        .apply(&ChaosPatch {
            pause_replicator: Some(true),
            ..Default::default()
        })
        .unwrap();
    let (lot, _) = state.store.put_lot("b", open_lot("B")).await.unwrap();
    let (status, headers, body) = get(&state, "/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["down"], serde_json::json!(["replication"]));
    assert!(headers.contains_key("retry-after"));
    let health = state.store.health(HANG).await;
    assert!(health.primary && health.replica && health.writer && health.replicator);
    assert!(health.replication_stalled && !health.replication_lag.is_zero());

    state
        .chaos
        .apply(&ChaosPatch {
            pause_replicator: Some(false),
            ..Default::default()
        })
        .unwrap();
    state.store.log_tail().wake();
    replicated(&state, lot.seq).await;
    let (status, _, body) = get(&state, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    state.store.shutdown().await;
}
