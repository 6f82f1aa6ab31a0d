//! Master fetches saved by the Memcache cache tier: the same bid load and the same
//! number of subscribers, once reading from memcached first and once asking only the
//! master, in one run on one machine.
//!
//! ```text
//! cargo run --release -p lotsync-tests --bin cache-bench -- --memcached 127.0.0.1:21211,127.0.0.1:21212
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use lotsync_tests::{create_lots, wait_converged};

/// Compare master fetches with and without the memcached tier.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// memcached servers, HOST:PORT, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:21211,127.0.0.1:21212"
    )]
    memcached: Vec<String>,
    /// Subscribers (terminal servers), as tasks in this process.
    #[arg(long, default_value_t = 50)]
    subscribers: usize,
    /// Lots receiving bids.
    #[arg(long, default_value_t = 20)]
    lots: usize,
    /// Bids per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds of bidding per run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Grace the SDK gives the warmer after a cache miss, in milliseconds.
    #[arg(long, default_value_t = 3)]
    grace_ms: u64,
}

struct RunFigures {
    notices: u64,
    master_fetches: u64,
    lots_fetched: u64,
    cache_hits: u64,
    latency_p50: Duration,
    latency_p99: Duration,
}

async fn run(args: &Args, cached: bool) -> anyhow::Result<RunFigures> {
    let mut builder = mock_master::Master::builder()
        .in_memory()
        .heartbeat(Duration::from_millis(500))
        .bidder("bench", "bench-token");
    if cached {
        builder = builder.memcached(args.memcached.clone());
    }
    let master = builder.start().await?;
    let handle = master.handle();
    let ids = create_lots(&handle, args.lots).await?;
    let mut clients = Vec::new();
    for _ in 0..args.subscribers {
        let mut client = lotsync::Client::builder(master.url())
            .token(master.terminal_token())
            .cache_grace(Duration::from_millis(args.grace_ms));
        if cached {
            client = client.memcached(args.memcached.clone());
        }
        clients.push(client.build()?);
    }
    for client in &clients {
        anyhow::ensure!(
            client.wait_live(Duration::from_secs(10)).await,
            "subscriber not live"
        );
    }
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let mut tick = tokio::time::interval(interval);
    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let mut amount = 10_000;
    let mut n = 0usize;
    while Instant::now() < stop {
        tick.tick().await;
        amount += 100;
        handle
            .place_bid("bench", &ids[n % ids.len()], amount)
            .await?;
        n += 1;
    }
    let converged = wait_converged(&handle, &clients, Duration::from_secs(20)).await?;
    anyhow::ensure!(
        converged.is_ok(),
        "subscribers did not converge: {converged:?}"
    );
    let mut figures = RunFigures {
        notices: 0,
        master_fetches: 0,
        lots_fetched: 0,
        cache_hits: 0,
        latency_p50: Duration::ZERO,
        latency_p99: Duration::ZERO,
    };
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for client in &clients {
        let m = client.metrics();
        figures.notices += m.notices;
        figures.master_fetches += m.fetches;
        figures.lots_fetched += m.fetched_lots;
        figures.cache_hits += m.cache_hits;
        p50s.push(m.notice_to_mirror.p50);
        p99s.push(m.notice_to_mirror.p99);
        client.shutdown().await;
    }
    p50s.sort();
    p99s.sort();
    figures.latency_p50 = p50s[p50s.len() / 2];
    figures.latency_p99 = p99s[p99s.len() / 2];
    master.shutdown().await;
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    lotsync::cache::Cache::new(args.memcached.clone()).context("bad --memcached")?;
    println!(
        "cache tier: {} subscribers, {} lots, {} bids/s for {} s, grace {} ms",
        args.subscribers, args.lots, args.rate, args.seconds, args.grace_ms
    );
    let progress = lotsync_tests::progress::Progress::bar("cache-bench", 2);
    progress.stage("master only");
    let direct = run(&args, false).await.context("run without the cache")?;
    progress.advance();
    progress.stage("with memcached");
    let cached = run(&args, true).await.context("run with the cache")?;
    progress.finish();
    println!(
        "| run | notices | master fetches | lots from master | lots from cache | notice-to-mirror p50 | p99 (median subscriber) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, f) in [("master only", &direct), ("with memcached", &cached)] {
        println!(
            "| {name} | {} | {} | {} | {} | {:.2} ms | {:.2} ms |",
            f.notices,
            f.master_fetches,
            f.lots_fetched,
            f.cache_hits,
            f.latency_p50.as_secs_f64() * 1e3,
            f.latency_p99.as_secs_f64() * 1e3
        );
    }
    let saved = 1.0 - cached.master_fetches as f64 / direct.master_fetches.max(1) as f64;
    println!("master fetches saved by the cache: {:.1}%", saved * 100.0);
    Ok(())
}
