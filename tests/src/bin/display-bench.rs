//! Wall display latency: a bid committed on the master → that version applied to the
//! DOM of a browser page, with 1 and with 10 pages open on one terminal server.
//!
//! The master's commit time is the bid's `at`; the page stamps the moment it applied
//! each version in `window.lotsyncApplied` (`performance.timeOrigin +
//! performance.now()`). Both are this machine's clock.
//!
//! ```text
//! cargo run --release -p lotsync-tests --bin display-bench
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use lotsync_tests::browser::Browser;
use lotsync_tests::create_lots;
use lotsync_tests::hall::Hall;
use serde_json::json;

/// Measure commit-to-DOM latency of the wall display.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Page counts to measure, one run each, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    pages: Vec<usize>,
    /// Lots receiving bids (all on the board).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=200))]
    lots: u64,
    /// Bids per second on the master.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rate: u32,
    /// Seconds of bidding per run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
}

/// Ready and drain waits: pages are on one shared machine.
const WAIT: Duration = Duration::from_secs(60);

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.pages.iter().any(|&p| p == 0 || p > 50) {
        bail!("--pages takes counts from 1 to 50");
    }
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build; run with --release for figures worth keeping");
    }
    let master = mock_master::Master::builder()
        .in_memory()
        .bidder("bench", "bench-token")
        .start()
        .await?;
    let handle = master.handle();
    let ids = create_lots(&handle, args.lots as usize).await?;
    let mut amounts: Vec<i64> = vec![10_000; ids.len()];
    let hall = Hall::start(
        master.url(),
        master.terminal_token(),
        "127.0.0.1:0",
        Duration::from_secs(2),
    )
    .await?;
    let ready = format!(
        r#"return document.body.dataset.connection === "live"
            && document.querySelectorAll('.tile[data-seq]').length === {};"#,
        ids.len()
    );
    println!(
        "wall display, commit on the master to DOM update: {} lots, {} bids/s for {} s per run",
        args.lots, args.rate, args.seconds
    );
    println!("pages  samples  missing  p50 ms  p99 ms  max ms");
    // One browser per page, as each screen of a hall runs its own: a browser also
    // keeps at most six connections per server, and each page holds one open.
    let mut browsers: Vec<Browser> = Vec::new();
    let mut next_bid = 0usize;
    let progress = lotsync_tests::progress::Progress::bar("display-bench", args.pages.len() as u64);
    for &pages in &args.pages {
        progress.stage(format!("{pages} pages"));
        while browsers.len() < pages {
            let browser = Browser::start(1280, 720).await?;
            browser.goto(&hall.display_url("layout=board")).await?;
            browsers.push(browser);
        }
        for browser in browsers.iter().take(pages) {
            browser
                .wait_for(&ready, WAIT)
                .await
                .context("a page never got live")?;
        }

        // The load: bids spread over the lots at a steady rate.
        let mut commits: Vec<(u64, f64)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for _ in 0..args.seconds * u64::from(args.rate) {
            tick.tick().await;
            let lot = next_bid % ids.len();
            next_bid += 1;
            let bid = handle.place_bid("bench", &ids[lot], amounts[lot]).await?;
            amounts[lot] += 100;
            let at_ms = bid.at.timestamp_micros() as f64 / 1000.0;
            commits.push((bid.seq, at_ms));
        }
        let last = commits.last().map_or(0, |c| c.0);
        let seqs: Vec<u64> = commits.iter().map(|c| c.0).collect();

        let mut latencies = Vec::new();
        let mut missing = 0usize;
        for browser in browsers.iter().take(pages) {
            browser
                .wait_for(
                    &format!("return window.lotsyncApplied[{last}] !== undefined;"),
                    WAIT,
                )
                .await
                .context("a page never applied the last bid")?;
            let stamps = browser
                .execute(
                    "return arguments[0].map((s) => window.lotsyncApplied[s] ?? null);",
                    json!([seqs]),
                )
                .await?;
            for ((_, at_ms), stamp) in commits.iter().zip(stamps.as_array().into_iter().flatten()) {
                match stamp.as_f64() {
                    Some(applied) => latencies.push(applied - at_ms),
                    None => missing += 1,
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        if latencies.is_empty() {
            bail!("no page stamped any bid");
        }
        println!(
            "{pages:>5}  {:>7}  {missing:>7}  {:>6.1}  {:>6.1}  {:>6.1}",
            latencies.len(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1],
        );
        progress.advance();
    }
    progress.finish();
    for browser in browsers {
        browser.close().await;
    }
    hall.stop().await;
    master.shutdown().await;
    Ok(())
}
