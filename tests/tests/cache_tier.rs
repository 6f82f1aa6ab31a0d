//! The Memcache cache tier against real memcached servers: the warm path, version
//! races, a server going down, fallback to the master, and a restarted warmer.
//!
//! Needs two memcached servers: `LOTSYNC_MEMCACHED` (default
//! `127.0.0.1:21211,127.0.0.1:21212`, which `scripts/test.sh` starts). The down-server
//! test starts and kills a memcached of its own.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lotsync::cache::{Cache, StoreOutcome, Warmer, WarmerStats};
use lotsync::protocol::Lot;
use lotsync_tests::*;

const WAIT: Duration = Duration::from_secs(15);

fn servers() -> Vec<String> {
    std::env::var("LOTSYNC_MEMCACHED")
        .unwrap_or_else(|_| "127.0.0.1:21211,127.0.0.1:21212".into())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A unique epoch per test, so tests sharing the servers never see each other's keys.
fn test_epoch(name: &str) -> String {
    format!(
        "test-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )
}

async fn cached_versions(cache: &Cache, epoch: &str, ids: &[String]) -> Vec<Option<u64>> {
    let mut versions = Vec::new();
    for id in ids {
        versions.push(
            cache
                .get(epoch, id)
                .await
                .expect("memcached reachable")
                .map(|l| l.seq),
        );
    }
    versions
}

/// Wait until the cache holds each of `ids` at the replica's version, checking again
/// after every write of the warmer whose `progress` is given; on timeout, returns what
/// the cache held last.
async fn wait_cache_matches_replica(
    cache: &Cache,
    handle: &mock_master::MasterHandle,
    ids: &[String],
    mut progress: tokio::sync::watch::Receiver<WarmerStats>,
) -> Result<(), Vec<Option<u64>>> {
    assert!(handle.wait_replicated(handle.head(), WAIT).await);
    let replica = handle.replica_lots().await.unwrap();
    let want: Vec<Option<u64>> = ids
        .iter()
        .map(|id| replica.iter().find(|l| &l.id == id).map(|l| l.seq))
        .collect();
    let epoch = handle.epoch();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let held = cached_versions(cache, &epoch, ids).await;
        if held == want {
            return Ok(());
        }
        if !matches!(
            tokio::time::timeout_at(deadline, progress.changed()).await,
            Ok(Ok(()))
        ) {
            let held = cached_versions(cache, &epoch, ids).await;
            return if held == want { Ok(()) } else { Err(held) };
        }
    }
}

#[tokio::test]
async fn the_servers_are_up() {
    let cache = Cache::new(servers()).unwrap();
    let epoch = test_epoch("up");
    let lot = Lot::example("probe");
    assert_eq!(
        cache
            .store(&epoch, &lot)
            .await
            .expect("memcached must be running"),
        StoreOutcome::Stored
    );
    assert_eq!(cache.get(&epoch, "probe").await.unwrap(), Some(lot));
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_one() {
    let cache = Cache::new(servers()).unwrap();
    let epoch = test_epoch("race");
    for round in 0..20u64 {
        let id = format!("lot-{round}");
        let versions: Vec<Lot> = (1..=10u64)
            .map(|seq| {
                let mut lot = Lot::example(&id);
                lot.seq = seq * 10 + round;
                lot
            })
            .collect();
        // Ten writers race with versions in every order; the newest must win.
        let writes = versions.iter().rev().map(|lot| cache.store(&epoch, lot));
        for outcome in futures::future::join_all(writes).await {
            outcome.expect("write succeeds");
        }
        assert_eq!(
            cache.get(&epoch, &id).await.unwrap().unwrap().seq,
            100 + round
        );
        let stale = cache.store(&epoch, &versions[0]).await.unwrap();
        assert_eq!(stale, StoreOutcome::KeptNewer { held: 100 + round });
    }
}

#[tokio::test]
async fn the_warmer_fills_the_cache_and_clients_read_from_it() {
    let master = start_master(Duration::from_millis(200)).await.unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, 10).await.unwrap();
    let cache = Cache::new(servers()).unwrap();
    let warmer = Warmer::start(connect(&master).unwrap(), cache.clone());
    let client = lotsync::Client::builder(master.url())
        .token(master.terminal_token())
        .memcached(servers())
        // The client and the warmer hear each notice together; on a miss the client
        // waits this long for the warmer before asking the master. Long enough that a
        // busy machine still gives the warmer its turn (20 ms did not always).
        .cache_grace(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(client.wait_live(WAIT).await);

    for round in 0..10 {
        for id in &ids {
            handle
                .place_bid("alice", id, 10_000 + round * 1_000)
                .await
                .unwrap();
        }
    }
    assert_eq!(
        wait_converged(&handle, std::slice::from_ref(&client), WAIT)
            .await
            .unwrap(),
        Ok(())
    );
    let metrics = client.metrics();
    assert!(metrics.cache_hits > 0, "{metrics:?}");
    assert!(metrics.fetches_saved > 0, "{metrics:?}");

    // The cache holds every lot at the replica's version.
    let outcome = wait_cache_matches_replica(&cache, &handle, &ids, warmer.progress()).await;
    assert_eq!(
        outcome,
        Ok(()),
        "cache never caught up: {:?}",
        warmer.stats()
    );
    assert!(warmer.stats().stored >= ids.len() as u64);
    warmer.shutdown().await;
    client.shutdown().await;
    master.shutdown().await;
}

#[tokio::test]
async fn with_no_cache_reachable_clients_fall_back_to_the_master() {
    let master = start_master(Duration::from_millis(200)).await.unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, 3).await.unwrap();
    let nowhere = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let client = lotsync::Client::builder(master.url())
        .token(master.terminal_token())
        .memcached([nowhere])
        .build()
        .unwrap();
    assert!(client.wait_live(WAIT).await);
    for id in &ids {
        handle.place_bid("bob", id, 50_000).await.unwrap();
    }
    assert_eq!(
        wait_converged(&handle, std::slice::from_ref(&client), WAIT)
            .await
            .unwrap(),
        Ok(())
    );
    let metrics = client.metrics();
    assert!(
        metrics.cache_errors > 0 && metrics.cache_hits == 0,
        "{metrics:?}"
    );
    client.shutdown().await;
    master.shutdown().await;
}

/// A private memcached on a free port, killed on drop.
struct OwnMemcached {
    child: Child,
    addr: String,
}

impl OwnMemcached {
    /// Start it and return once it says it is listening (memcached -vv prints
    /// "server listening" on stderr).
    fn start() -> OwnMemcached {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut child = Command::new("memcached")
            .args([
                "-vv",
                "-u",
                "root",
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "16",
                "-U",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("memcached is installed (scripts/test.sh installs it)");
        let stderr = child.stderr.take().unwrap();
        let (listening_tx, listening) = std::sync::mpsc::channel();
        // Drains stderr for the server's whole life so -vv logging never blocks it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("server listening") {
                    let _ = listening_tx.send(());
                }
            }
        });
        listening
            .recv_timeout(WAIT)
            .expect("private memcached never said it was listening");
        OwnMemcached {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for OwnMemcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_server_that_goes_down_is_skipped_not_fatal() {
    let own = OwnMemcached::start();
    let mut addresses = vec![own.addr.clone()];
    addresses.extend(servers());
    let cache = Cache::with_timeouts(
        addresses.clone(),
        Duration::from_millis(200),
        Duration::from_millis(500),
    )
    .unwrap();
    let epoch = test_epoch("down");
    // The private server is listening (start waited for it): write through it.
    let ids: Vec<String> = (0..60).map(|i| format!("lot-{i}")).collect();
    for id in &ids {
        cache
            .store(&epoch, &Lot::example(id))
            .await
            .expect("every server is up");
    }
    let only_own = Cache::new([own.addr.clone()]).unwrap();
    let (on_own, _) = only_own.get_many(&epoch, &ids).await;
    assert!(
        !on_own.is_empty() && on_own.len() < ids.len(),
        "keys are spread over the servers"
    );
    drop(own);

    // Reads of keys the dead server owned fail once, then go to the next server on
    // the ring (a miss there); nothing panics and every other key still reads.
    let mut errors = 0;
    let mut hits = 0;
    for _ in 0..3 {
        let (lots, errs) = cache.get_many(&epoch, &ids).await;
        errors += errs.len();
        hits = lots.len();
    }
    assert!(errors > 0, "the dead server's failure is reported");
    assert!(
        hits > 0 && hits < ids.len(),
        "{hits} of {} keys still served",
        ids.len()
    );
    // Writes to the dead server's keys land on the next server.
    for id in &ids {
        cache
            .store(&epoch, &Lot::example(id))
            .await
            .expect("written to a live server");
    }
    assert_eq!(cache.get_many(&epoch, &ids).await.0.len(), ids.len());
}

#[tokio::test]
async fn a_restarted_warmer_leaves_no_stale_entry() {
    let master = start_master(Duration::from_millis(200)).await.unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, 5).await.unwrap();
    let cache = Cache::new(servers()).unwrap();
    let first = Warmer::start(connect(&master).unwrap(), cache.clone());
    let filled = wait_cache_matches_replica(&cache, &handle, &ids, first.progress()).await;
    assert_eq!(filled, Ok(()), "the first warmer never filled the cache");
    first.shutdown().await;

    // Bids while no warmer runs leave the cache behind...
    for id in &ids {
        handle.place_bid("alice", id, 90_000).await.unwrap();
    }
    // ...until a new warmer's snapshot brings every entry up to date.
    let second = Warmer::start(connect(&master).unwrap(), cache.clone());
    let outcome = wait_cache_matches_replica(&cache, &handle, &ids, second.progress()).await;
    assert_eq!(
        outcome,
        Ok(()),
        "stale entries remained: {:?}",
        second.stats()
    );
    second.shutdown().await;
    master.shutdown().await;
}

#[tokio::test]
async fn a_master_started_with_memcached_keeps_the_cache_warm() {
    let master = mock_master::Master::builder()
        .in_memory()
        .memcached(servers())
        .bidder("alice", "alice-token")
        .start()
        .await
        .unwrap();
    let handle = master.handle();
    let progress = handle.cache_warmer_progress();
    let ids = create_lots(&handle, 4).await.unwrap();
    for id in &ids {
        handle.place_bid("alice", id, 77_700).await.unwrap();
    }
    let cache = Cache::new(servers()).unwrap();
    let outcome = wait_cache_matches_replica(&cache, &handle, &ids, progress).await;
    assert_eq!(
        outcome,
        Ok(()),
        "the master's warmer never filled the cache"
    );
    master.shutdown().await;
}

/// The raw value memcached holds under `key` on any of the servers, asked over the
/// text protocol (so nothing on the way could drop a field).
async fn raw_values(key: &str) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut values = Vec::new();
    for server in servers() {
        let mut socket = tokio::net::TcpStream::connect(&server).await.unwrap();
        socket
            .write_all(format!("get {key}\r\n").as_bytes())
            .await
            .unwrap();
        let mut reply = Vec::new();
        while !reply.ends_with(b"END\r\n") {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, socket.read(&mut chunk))
                .await
                .expect("memcached answers")
                .unwrap();
            assert!(n > 0, "memcached closed the connection");
            reply.extend_from_slice(&chunk[..n]);
        }
        values.push(String::from_utf8_lossy(&reply).into_owned());
    }
    values
}

#[tokio::test]
async fn cached_lots_carry_no_reserve_and_no_maximum() {
    use lotsync::protocol::BidRequest;
    const RESERVE: i64 = 777_777;
    const MAX: i64 = 123_457;
    let master = mock_master::Master::builder()
        .in_memory()
        .memcached(servers())
        .bidder("alice", "alice-token")
        .start()
        .await
        .unwrap();
    let handle = master.handle();
    let progress = handle.cache_warmer_progress();
    let mut input = lot_input("Confidential", 10_000);
    input.reserve_price = Some(RESERVE);
    handle.put_lot("secret", input).await.unwrap();
    handle
        .bid("alice", "secret", BidRequest::max(MAX))
        .await
        .unwrap();
    handle.place_bid("bob", "secret", 20_000).await.unwrap();
    let ids = vec!["secret".to_owned()];
    let cache = Cache::new(servers()).unwrap();
    let outcome = wait_cache_matches_replica(&cache, &handle, &ids, progress).await;
    assert_eq!(outcome, Ok(()), "the warmer never cached the lot");
    let key = Cache::key(&handle.epoch(), "secret").unwrap();
    let values = raw_values(&key).await;
    assert!(
        values.iter().any(|v| v.contains("\"reserve_met\":false")),
        "the cached lot says whether the reserve is met: {values:?}"
    );
    for value in &values {
        for secret in ["reserve_price", &RESERVE.to_string(), &MAX.to_string()] {
            assert!(!value.contains(secret), "memcached holds {secret}: {value}");
        }
    }
    master.shutdown().await;
}
