//! Terminal servers end to end: SDK clients behind a terminal server (and behind a
//! chain of two) converge on the master's replica under the fault schedule upstream;
//! a terminal server killed with SIGKILL and restarted on its port is followed again
//! by its clients; bids through it are placed once; ten clients behind it cost the
//! master the fetches of one.

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lotsync::protocol::IDEMPOTENCY_KEY_HEADER;
use lotsync_tests::faults::{all_clear, random_fault, watch_display};
use lotsync_tests::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HEARTBEAT: Duration = Duration::from_millis(250);
const LOTS: usize = 12;
/// Generous: only a hang fails it.
const CONVERGE: Duration = Duration::from_secs(30);

/// Bid on random lots from `bidder` until `bids` were accepted, switching a random
/// fault every few bids when `faults` is set. Returns the faults switched.
async fn bid_under_faults(
    master: &mock_master::Master,
    ids: &[String],
    bids: usize,
    seed: u64,
    faults: bool,
) -> u64 {
    let handle = master.handle();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut accepted, mut switched) = (0, 0);
    let mut next_fault = rng.random_range(5..20);
    while accepted < bids {
        let id = &ids[rng.random_range(0..ids.len())];
        let lot = handle
            .primary_lots()
            .await
            .unwrap()
            .into_iter()
            .find(|l| &l.id == id)
            .unwrap();
        if handle
            .place_bid("alice", id, lot.min_next_bid())
            .await
            .is_ok()
        {
            accepted += 1;
        }
        if faults && accepted >= next_fault {
            handle.set_chaos(random_fault(&mut rng)).unwrap();
            switched += 1;
            next_fault = accepted + rng.random_range(5..20);
        }
    }
    handle.set_chaos(all_clear()).unwrap();
    switched
}

async fn converge(master: &mock_master::Master, clients: &[lotsync::Client]) {
    let result = wait_converged(&master.handle(), clients, CONVERGE)
        .await
        .unwrap();
    assert_eq!(
        result,
        Ok(()),
        "a client behind the terminal server did not converge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_terminal_server_converge_under_upstream_faults() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let ids = create_lots(&master.handle(), LOTS).await.unwrap();
    let relay = start_terminal_server(master.url(), master.terminal_token(), |b| b)
        .await
        .unwrap();
    let clients: Vec<lotsync::Client> = (0..4)
        .map(|i| relay.connect_with(|b| b.inline_lots(i % 2 == 0)).unwrap())
        .collect();
    let regressions = Arc::new(AtomicU64::new(0));
    let watchers: Vec<_> = clients
        .iter()
        .map(|c| watch_display(c, regressions.clone()))
        .collect();
    for client in &clients {
        assert!(client.wait_live(CONVERGE).await);
    }
    let faults = bid_under_faults(&master, &ids, 300, 7, true).await;
    converge(&master, &clients).await;
    assert!(faults > 5, "the schedule switched faults ({faults})");
    assert_eq!(
        regressions.load(Ordering::Relaxed),
        0,
        "a display went back in time"
    );
    let inline: u64 = clients.iter().map(|c| c.metrics().inline_lots).sum();
    assert!(inline > 0, "clients asking for inline lots got them");
    for client in &clients {
        client.shutdown().await;
    }
    for watcher in watchers {
        watcher.await.unwrap();
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_level_chain_converges() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let ids = create_lots(&master.handle(), LOTS).await.unwrap();
    let hall = start_terminal_server(master.url(), master.terminal_token(), |b| b)
        .await
        .unwrap();
    let wing = start_terminal_server(&hall.url, &hall.token, |b| {
        b.client(|c| c.inline_lots(true))
    })
    .await
    .unwrap();
    let clients = vec![
        wing.connect().unwrap(),
        wing.connect_with(|b| b.inline_lots(true)).unwrap(),
        hall.connect().unwrap(),
    ];
    bid_under_faults(&master, &ids, 150, 11, true).await;
    converge(&master, &clients).await;
    assert_eq!(
        wing.server.client().metrics().fetches,
        0,
        "the second level needs no fetch with inline lots"
    );
    let (epoch, head) = hall.server.position();
    assert!(
        wing.server.wait_served(head, CONVERGE).await,
        "the second level caught up with the first"
    );
    assert_eq!(
        wing.server.position().0,
        epoch,
        "both levels serve the same history"
    );
}

const ENV_UPSTREAM: &str = "LOTSYNC_RELAY_CHILD_UPSTREAM";
const ENV_TOKEN: &str = "LOTSYNC_RELAY_CHILD_TOKEN";
const ENV_LISTEN: &str = "LOTSYNC_RELAY_CHILD_LISTEN";

/// Not a test of its own: the terminal-server process of
/// `a_killed_terminal_server_restarted_on_its_port_is_followed_again`. Does nothing
/// unless started by it.
#[test]
fn terminal_server_child() {
    let (Ok(upstream), Ok(token), Ok(listen)) = (
        std::env::var(ENV_UPSTREAM),
        std::env::var(ENV_TOKEN),
        std::env::var(ENV_LISTEN),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = lotsync_tests::child_listener(&listen).await;
        let relay = start_terminal_server_on(listener, &upstream, &token, |b| b).unwrap();
        std::future::pending::<()>().await;
        drop(relay);
    });
}

fn spawn_terminal_server(upstream: &str, token: &str, listen: &str) -> (Child, String) {
    spawn_test_child(
        "terminal_server_child",
        &[
            (ENV_UPSTREAM, upstream),
            (ENV_TOKEN, token),
            (ENV_LISTEN, listen),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_terminal_server_restarted_on_its_port_is_followed_again() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let ids = create_lots(&master.handle(), LOTS).await.unwrap();
    let (mut child, url) =
        spawn_terminal_server(master.url(), master.terminal_token(), "127.0.0.1:0");
    let listen = url.trim_start_matches("http://").to_owned();
    let connect = |inline: bool| {
        lotsync::Client::builder(&url)
            .token("display-token")
            .inline_lots(inline)
            .reconnect_delay(Duration::from_millis(20), Duration::from_millis(300))
            .retry_delay(Duration::from_millis(10), Duration::from_millis(200))
            .build()
            .unwrap()
    };
    let clients = vec![connect(false), connect(true)];
    let regressions = Arc::new(AtomicU64::new(0));
    let _watchers: Vec<_> = clients
        .iter()
        .map(|c| watch_display(c, regressions.clone()))
        .collect();
    for client in &clients {
        assert!(client.wait_live(CONVERGE).await);
    }
    bid_under_faults(&master, &ids, 60, 3, false).await;
    converge(&master, &clients).await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Changes while the terminal server is down are caught up after the restart.
    bid_under_faults(&master, &ids, 60, 4, false).await;
    let (mut child, again) = spawn_terminal_server(master.url(), master.terminal_token(), &listen);
    assert_eq!(again, url, "restarted on the same port");
    bid_under_faults(&master, &ids, 60, 5, false).await;
    converge(&master, &clients).await;
    assert_eq!(
        regressions.load(Ordering::Relaxed),
        0,
        "a display went back in time"
    );
    let resyncs: u64 = clients.iter().map(|c| c.metrics().resyncs).sum();
    assert!(
        resyncs >= 2,
        "a restarted terminal server has no ring to resume from: its clients resync"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_through_a_terminal_server_are_placed_once() {
    let master = start_master(HEARTBEAT).await.unwrap();
    create_lots(&master.handle(), 1).await.unwrap();
    let relay = start_terminal_server(master.url(), master.terminal_token(), |b| b)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let bid = |token: &'static str, key: &'static str, amount: i64| {
        http.post(format!("{}/v1/lots/lot-0/bids", relay.url))
            .bearer_auth(token)
            .header(IDEMPOTENCY_KEY_HEADER, key)
            .json(&serde_json::json!({ "amount": amount }))
            .send()
    };
    let first = bid("alice-token", "key-1", 10_000).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    // A retry through the relay with the same key is the same bid, not a second one.
    let retry = bid("alice-token", "key-1", 10_000).await.unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.json::<serde_json::Value>().await.unwrap(), first);
    // The upstream's refusals come back as they were.
    let low = bid("bob-token", "key-2", 10_000).await.unwrap();
    assert_eq!(low.status(), 409);
    assert_eq!(
        low.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "bid_too_low"
    );
    let stranger = bid("display-token", "key-3", 20_000).await.unwrap();
    assert_eq!(
        stranger.status(),
        401,
        "the terminal server lends no token of its own"
    );
    let lot = master.handle().primary_lots().await.unwrap().remove(0);
    assert_eq!(
        (lot.bid_count, lot.current_price),
        (1, 10_000),
        "placed once"
    );
    let display = relay.connect().unwrap();
    assert!(display.wait_live(CONVERGE).await);
    // With the master gone, the bidder is told to retry, not left hanging.
    let url = relay.url.clone();
    let token = relay.token.clone();
    master.shutdown().await;
    let gone = http
        .post(format!("{url}/v1/lots/lot-0/bids"))
        .bearer_auth("alice-token")
        .header(IDEMPOTENCY_KEY_HEADER, "key-4")
        .json(&serde_json::json!({ "amount": 20_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 502);
    assert!(gone.headers().contains_key("retry-after"));
    // The mirror is still served, marked stale in the health report once noticed.
    let health = http
        .get(format!("{url}/healthz"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "a terminal server with a mirror keeps serving it"
    );
    // Its terminals are told the data may be old, through the heartbeats.
    let mut state = display.state();
    let stale = tokio::time::timeout(
        CONVERGE,
        state.wait_for(|s| matches!(s, lotsync::ConnectionState::Stale { .. })),
    )
    .await;
    assert!(
        matches!(stale, Ok(Ok(_))),
        "a display behind a cut-off terminal server turns stale"
    );
    assert!(!display.mirror().is_empty(), "and keeps its lots");
    let lots = http
        .get(format!("{url}/v1/lots"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(lots.status(), 200);
    relay.stop().await;
}

/// Sum of `lotsync_fetches_total` (every status) in a Prometheus text.
fn fetches_served(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_behind_a_terminal_server_cost_the_master_one_clients_fetches() {
    let master = start_master(HEARTBEAT).await.unwrap();
    let ids = create_lots(&master.handle(), LOTS).await.unwrap();
    let relay = start_terminal_server(master.url(), master.terminal_token(), |b| b)
        .await
        .unwrap();
    let clients: Vec<lotsync::Client> = (0..10).map(|_| relay.connect().unwrap()).collect();
    bid_under_faults(&master, &ids, 100, 9, false).await;
    converge(&master, &clients).await;
    let http = reqwest::Client::new();
    let text = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let master_fetches = fetches_served(
        &text(format!("{}/metrics", master.url())).await,
        "lotsync_fetches_total",
    );
    let upstream = relay.server.client().metrics();
    // Everything the master answered was the terminal server's own snapshot and fetches.
    assert_eq!(
        master_fetches,
        upstream.fetches + upstream.resyncs,
        "only the terminal server fetches from the master"
    );
    let downstream = fetches_served(
        &text(format!("{}/metrics", relay.url)).await,
        "lotsync_downstream_fetches_total",
    );
    let clients_fetches: u64 = clients
        .iter()
        .map(|c| c.metrics().fetches + c.metrics().resyncs)
        .sum();
    // (Snapshots refused while the terminal server was still starting count too.)
    assert!(
        downstream >= clients_fetches,
        "the ten clients fetched from the terminal server ({downstream} < {clients_fetches})"
    );
    assert!(
        downstream > master_fetches,
        "the fan-out happened downstream ({downstream} vs {master_fetches})"
    );
}
