//! `engine-bench`: write throughput and replica lag of the master per database engine.
//!
//! For each primary/replica pair it starts an in-process master on fresh databases
//! (SQLite files in a temporary directory, or throw-away databases on the local
//! PostgreSQL and MariaDB servers), lets many concurrent bidders place bids through the
//! master's handle for a few seconds, and meanwhile samples how long the replica takes
//! to apply what the primary has committed. Prints one table row per pair.
//!
//! ```text
//! cargo run --release -p lotsync-tests --bin engine-bench -- --seconds 5 --bidders 64
//! ```
//!
//! Servers: `LOTSYNC_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`) and
//! `LOTSYNC_TEST_MARIADB` (default `mysql://root@127.0.0.1:3306`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use lotsync::protocol::{LotInput, LotStatus};
use mock_master::config::DbUrl;
use mock_master::store::engine::scratch::ScratchDatabase;
use mock_master::{Master, MasterHandle};

/// Write throughput and replica lag per database engine pair.
#[derive(Debug, Parser)]
#[command(name = "engine-bench", about)]
struct Cli {
    /// Seconds of bidding per engine pair.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent bidders (each on its own lot, so every bid is accepted).
    #[arg(long, default_value_t = 64)]
    bidders: usize,
    /// Pairs to run, as PRIMARY/REPLICA with sqlite, postgres or mariadb.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sqlite/sqlite,postgres/postgres,mariadb/mariadb,mariadb/postgres,postgres/mariadb"
    )]
    pairs: Vec<String>,
}

/// One database of a pair, and what keeps it alive.
struct Place {
    url: DbUrl,
    _scratch: Option<ScratchDatabase>,
}

fn place(engine: &str, dir: &std::path::Path, file: &str) -> anyhow::Result<Place> {
    let server = match engine {
        "sqlite" => {
            return Ok(Place {
                url: DbUrl::Sqlite(dir.join(file)),
                _scratch: None,
            });
        }
        "postgres" => std::env::var("LOTSYNC_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
        "mariadb" => std::env::var("LOTSYNC_TEST_MARIADB")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into()),
        other => anyhow::bail!("unknown engine {other:?}: sqlite, postgres or mariadb"),
    };
    let db = ScratchDatabase::create(&server, "lotsync_bench").with_context(|| {
        let server = mock_master::store::engine::url::redact(&server);
        format!("creating a {engine} database on {server}")
    })?;
    Ok(Place {
        url: db.url().clone(),
        _scratch: Some(db),
    })
}

/// What one pair measured.
struct Figures {
    bids: u64,
    elapsed: Duration,
    lag_p50: Duration,
    lag_p99: Duration,
    samples: usize,
}

fn open_lot(title: &str) -> LotInput {
    let now = Utc::now();
    LotInput {
        title: title.into(),
        attributes: Default::default(),
        currency: "EUR".into(),
        starting_price: 100_000,
        increment: 100.into(),
        reserve_price: None,
        status: Some(LotStatus::Open),
        starts_at: now - chrono::Duration::minutes(1),
        ends_at: now + chrono::Duration::hours(1),
        lane: None,
        run_order: None,
    }
}

async fn bidder(handle: MasterHandle, i: usize, until: Instant, bids: Arc<AtomicU64>) {
    let (name, lot) = (format!("bidder-{i}"), format!("lot-{i}"));
    let mut amount = 100_000;
    while Instant::now() < until {
        match handle.place_bid(&name, &lot, amount).await {
            Ok(_) => {
                bids.fetch_add(1, Ordering::Relaxed);
                amount += 100;
            }
            Err(e) => panic!("bid on {lot} failed: {e}"),
        }
    }
}

/// Until `until`, every 5 ms: note the primary's head, wait for the replica to apply
/// it, record.
async fn lag_sampler(handle: MasterHandle, until: Instant) -> Vec<Duration> {
    let mut lags = Vec::new();
    // A sampling schedule: a sample every 5 ms; one outlasting its slot is followed at
    // once by the next, without a burst of back-to-back catch-up samples.
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        let head = handle.head();
        let start = Instant::now();
        if handle.wait_replicated(head, Duration::from_secs(10)).await {
            lags.push(start.elapsed());
        }
    }
    lags
}

async fn run_pair(pair: &str, cli: &Cli) -> anyhow::Result<Figures> {
    let (p, r) = pair
        .split_once('/')
        .with_context(|| format!("{pair:?} is not PRIMARY/REPLICA"))?;
    let dir = tempfile::tempdir()?;
    let primary = place(p, dir.path(), "primary.db")?;
    let replica = place(r, dir.path(), "replica.db")?;
    let master = Master::builder()
        .data_dir(dir.path())
        .primary(primary.url.clone())
        .replica(replica.url.clone())
        .anti_snipe(Duration::ZERO)
        .start()
        .await?;
    let handle = master.handle();
    for i in 0..cli.bidders {
        handle
            .put_lot(&format!("lot-{i}"), open_lot("bench"))
            .await?;
    }
    let start = Instant::now();
    let until = start + Duration::from_secs(cli.seconds);
    let bids = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..cli.bidders)
        .map(|i| tokio::spawn(bidder(handle.clone(), i, until, bids.clone())))
        .collect();
    let sampler = tokio::spawn(lag_sampler(handle.clone(), until));
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed();
    let mut lags = sampler.await?;
    lags.sort();
    let at = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let figures = Figures {
        bids: bids.load(Ordering::Relaxed),
        elapsed,
        lag_p50: at(0.50),
        lag_p99: at(0.99),
        samples: lags.len(),
    };
    master.shutdown().await;
    Ok(figures)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!(
        "{} s per pair, {} concurrent bidders through the master's handle",
        cli.seconds, cli.bidders
    );
    println!();
    println!("| primary / replica | bids/s | replica lag p50 | replica lag p99 | lag samples |");
    println!("|---|---:|---:|---:|---:|");
    let progress = lotsync_tests::progress::Progress::bar("engine-bench", cli.pairs.len() as u64);
    for pair in &cli.pairs {
        progress.stage(format!("{pair:?}"));
        let f = run_pair(pair, &cli).await?;
        progress.advance();
        println!(
            "| {pair} | {:.0} | {} | {} | {} |",
            f.bids as f64 / f.elapsed.as_secs_f64(),
            ms(f.lag_p50),
            ms(f.lag_p99),
            f.samples
        );
    }
    progress.finish();
    Ok(())
}
