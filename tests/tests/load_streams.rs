//! Load held: the master keeps 1,000 open notice streams (raw HTTP/1.1 readers on
//! loopback) while bidders place a fixed number of bids and a fetcher asks for the
//! newest version throughout. Every stream must receive every notice committed after it
//! connected, in order and none twice, and every fetch must be answered. How fast that
//! went (bids per second, fetch latency p50/p99, memory per stream) depends on the
//! machine: it is printed, not asserted (`BENCHMARKS.md` holds the measured figures).
//!
//! The stream count is bounded by the open-file limit (two sockets per stream, both ends
//! in this process): with a soft limit below what 1,000 streams need, the test holds as
//! many as fit and says so. Memory per stream is the growth of this process's resident
//! set divided by the streams, so it counts both ends (reader and master).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lotsync_tests::create_lots;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

const WANTED_STREAMS: usize = 1000;
const LOTS: usize = 20;
/// Bids each of the three bidders places.
const BIDS_EACH: u64 = 250;
/// Generous bound on anything waited for: only a hang reaches it.
const HANG: Duration = Duration::from_secs(120);

/// A field of /proc/self/status or /proc/self/limits, as a number.
fn proc_number(file: &str, key: &str, column: usize) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(column)?
        .parse()
        .ok()
}

fn rss_kib() -> u64 {
    proc_number("/proc/self/status", "VmRSS:", 1).unwrap_or(0)
}

/// What one stream reader saw.
#[derive(Default)]
struct Seen {
    hello_head: AtomicU64,
    notices: AtomicU64,
    last_id: AtomicU64,
    out_of_order: AtomicU64,
    /// The stream's position: `None` before its hello, then the last id read. The test
    /// waits on it; one watch per stream, so the readers never contend.
    position: watch::Sender<Option<u64>>,
}

async fn read_stream(url: &str, token: &str, seen: Arc<Seen>) -> std::io::Result<()> {
    let addr = url.trim_start_matches("http://");
    let mut socket = TcpStream::connect(addr).await?;
    socket
        .write_all(
            format!(
                "GET /v1/notices HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
                 accept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut lines = BufReader::new(socket).lines();
    let mut event = String::new();
    while let Some(line) = lines.next_line().await? {
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_owned();
        } else if let Some(id) = line.strip_prefix("id:") {
            let id: u64 = id.trim().parse().unwrap_or(0);
            let last = seen.last_id.swap(id, Ordering::Relaxed);
            if last != 0 && id != last + 1 {
                seen.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            seen.position.send_replace(Some(id));
        } else if let Some(data) = line.strip_prefix("data:") {
            match event.as_str() {
                "hello" => {
                    let hello: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
                    let head = hello["head"].as_u64().unwrap();
                    seen.hello_head.store(head, Ordering::Relaxed);
                    seen.last_id.store(head, Ordering::Relaxed);
                    seen.position.send_replace(Some(head));
                }
                "notice" => {
                    seen.notices.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Wait until every stream's position satisfies `reached`; woken by the readers.
async fn wait_for(
    what: &str,
    timeout: Duration,
    seen: &[Arc<Seen>],
    reached: impl Fn(Option<u64>) -> bool,
) {
    let all = async {
        for s in seen {
            let _ = s.position.subscribe().wait_for(|p| reached(*p)).await;
        }
    };
    tokio::time::timeout(timeout, all)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_holds_1000_streams_and_answers_fetches_while_bids_flow() {
    let soft_limit = proc_number("/proc/self/limits", "Max open files", 3).unwrap_or(1024);
    let streams = WANTED_STREAMS.min((soft_limit as usize).saturating_sub(256) / 2);
    if streams < WANTED_STREAMS {
        eprintln!(
            "load: open-file soft limit {soft_limit} allows {streams} streams, not {WANTED_STREAMS}"
        );
    }
    let master = mock_master::Master::builder()
        .in_memory()
        .heartbeat(Duration::from_millis(1000))
        .bidder("alice", "alice-token")
        .bidder("bob", "bob-token")
        .bidder("carol", "carol-token")
        .start()
        .await
        .unwrap();
    let handle = master.handle();
    let ids = create_lots(&handle, LOTS).await.unwrap();

    let rss_before = rss_kib();
    let started = Instant::now();
    let seen: Vec<Arc<Seen>> = (0..streams).map(|_| Arc::new(Seen::default())).collect();
    let readers: Vec<_> = seen
        .iter()
        .map(|s| {
            let (url, token, s) = (
                master.url().to_owned(),
                master.terminal_token().to_owned(),
                s.clone(),
            );
            tokio::spawn(async move { read_stream(&url, &token, s).await })
        })
        .collect();
    wait_for("every stream's hello", HANG, &seen, |position| {
        position.is_some()
    })
    .await;
    let opened_in = started.elapsed();
    let rss_streams = rss_kib();

    // Bids at a steady pace until each bidder has placed its share, and a fetcher
    // asking for the newest version until they are done.
    let load_started = Instant::now();
    let bidding = tokio_util::sync::CancellationToken::new();
    let bidders: Vec<_> = ["alice", "bob", "carol"]
        .into_iter()
        .enumerate()
        .map(|(n, bidder)| {
            let (handle, ids) = (handle.clone(), ids.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
                let mut amount = 10_000 + n as i64 * 100;
                let mut accepted = 0u64;
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                // Amounts only rise, so a bid refused as outbid is followed by a higher one.
                while accepted < BIDS_EACH {
                    tick.tick().await;
                    amount += 300;
                    let id = &ids[rng.random_range(0..ids.len())];
                    if handle.place_bid(bidder, id, amount).await.is_ok() {
                        accepted += 1;
                    }
                }
                accepted
            })
        })
        .collect();
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    // The fetch rate is a schedule: one fetch per 2 ms tick, a slow fetch delays the rest.
    let mut pace = tokio::time::interval(Duration::from_millis(2));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let all_bid = {
        let bidding = bidding.clone();
        tokio::spawn(async move {
            let mut bids = 0;
            for bidder in bidders {
                bids += bidder.await.unwrap();
            }
            bidding.cancel();
            bids
        })
    };
    let deadline = load_started + HANG;
    let mut replica_behind = 0;
    loop {
        assert!(Instant::now() < deadline, "the bidders hung");
        pace.tick().await;
        let id = &ids[rng.random_range(0..ids.len())];
        let url = format!("{}/v1/lots/{id}?min_seq={}", master.url(), handle.head());
        let asked = Instant::now();
        let response = http
            .get(url)
            .bearer_auth(master.terminal_token())
            .send()
            .await
            .unwrap();
        // Read-after-notify: the newest version, or, past the master's bounded wait for
        // its replica, 503 replica_behind (allowed; counted and printed).
        let status = response.status();
        let body = response.bytes().await.unwrap();
        latencies.push(asked.elapsed());
        if status == 503 {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(error["error"]["code"], "replica_behind", "{error}");
            replica_behind += 1;
        } else {
            assert_eq!(status, 200);
        }
        if bidding.is_cancelled() {
            break;
        }
    }
    let bids = all_bid.await.unwrap();
    let load_took = load_started.elapsed();
    let head = handle.head();
    wait_for("every notice on every stream", HANG, &seen, |position| {
        position.is_some_and(|id| id >= head)
    })
    .await;
    let rss_after = rss_kib();

    for (n, s) in seen.iter().enumerate() {
        let expected = head - s.hello_head.load(Ordering::Relaxed);
        assert_eq!(
            s.notices.load(Ordering::Relaxed),
            expected,
            "stream {n}: every notice after its hello, once"
        );
        assert_eq!(s.out_of_order.load(Ordering::Relaxed), 0, "stream {n}");
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let per_stream = (rss_streams.saturating_sub(rss_before)) as f64 / streams as f64;
    eprintln!(
        "load: {streams} streams opened in {opened_in:?}; {bids} bids in {load_took:?}, head {head}; \
         {} notices delivered; {} fetches ({replica_behind} replica_behind) p50 {p50:?} p99 {p99:?} max {:?}; \
         RSS {rss_before} KiB -> {rss_streams} KiB with streams ({per_stream:.1} KiB per stream, \
         both ends) -> {rss_after} KiB after the load",
        seen.iter()
            .map(|s| s.notices.load(Ordering::Relaxed))
            .sum::<u64>(),
        latencies.len(),
        latencies.last().unwrap()
    );
    assert_eq!(bids, 3 * BIDS_EACH);
    for reader in &readers {
        assert!(!reader.is_finished(), "a stream ended early");
    }
    master.shutdown().await;
    for reader in readers {
        // Shutdown ends every stream; the readers see a clean end or a reset.
        let _ = tokio::time::timeout(HANG, reader).await;
    }
}
