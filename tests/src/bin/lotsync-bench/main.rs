//! lotsync-bench: notice-to-mirror latency, fan-out, master throughput, coalescing, and
//! the polling design side by side; terminal servers serving displays; nchan side by
//! side; all measured in one run on one machine (loopback).
//!
//! ```text
//! cargo run --release -p lotsync-tests --bin lotsync-bench -- [--quick] [--servers-only | --jetstream-only] [--out DIR]
//! ```
//!
//! Prints Markdown tables (each target of the benchmark issues with PASS/MISS) and
//! writes `DIR/bench.json` and `DIR/bench.png`. `--quick` is a smoke run for CI: every
//! figure, small and short; it checks only that samples were produced.
//!
//! # Layout
//! - `main.rs`: flags, logging, the run, output files, the smoke checks.
//! - `subscriber`: the hidden `subscriber` subcommand (a terminal server process: the
//!   SDK, or a poller) and the line format it reports observations in; `readers`: its
//!   raw stream readers (nchan, thousands of notice streams) over `raw_sse`.
//! - `fleet`: spawning subscriber processes and collecting their lines.
//! - `load`: bid generators (steady, bursts, saturation) and commit records.
//! - `master`: the master on a runtime of its own; `relay`: the `terminal-server`
//!   binary as a process; `nchan`: a private nginx with nchan and its publisher;
//!   `procfs`: CPU time, memory and the open-file limit from /proc.
//! - `measure`: fleets, load and CPU probes of one measured window.
//! - `stats`: latency, staleness, stale fraction and request rates from the records.
//! - `scenarios`: the plan (full or quick) and the scenarios of the SDK on the master;
//!   `servers`: the scenarios with terminal servers (`relayed`) and peers (`peers`).
//! - `report`, `report_servers`: machine description, targets, Markdown tables, JSON.
//! - `chart`: the PNG.
//! - `jetstream`: the notice log on NATS JetStream: clients following it against the
//!   master's streams, and publishing to R1 and R3 streams (`--jetstream-only`).

mod chart;
mod fleet;
mod jetstream;
mod load;
mod master;
mod measure;
mod nchan;
mod peers;
mod procfs;
mod raw_sse;
mod readers;
mod relay;
mod relayed;
mod report;
mod report_servers;
mod scenarios;
mod servers;
mod stats;
mod subscriber;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Benchmark lotsync on this machine: latency from a bid's commit to every terminal
/// server's mirror, against the polling design it replaces, plus fan-out, master
/// throughput and coalescing under bursts; terminal servers serving displays; nchan
/// side by side (when nginx with nchan is installed). Everything runs on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(
    name = "lotsync-bench",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// A short smoke run (about a minute): every figure, few samples, no targets.
    #[arg(long)]
    quick: bool,
    /// Directory for bench.json and bench.png.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: PathBuf,
    /// Only the terminal-server and side-by-side (nchan, polling) scenarios, with the
    /// loopback floor and the fan-out row of 1 they are judged against.
    #[arg(long)]
    servers_only: bool,
    /// Only the JetStream rows: SDK clients following JetStream against the master's
    /// notice streams, and publishing to R1 and R3 streams (needs nats-server).
    #[arg(long, conflicts_with = "servers_only")]
    jetstream_only: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run subscribers and report what they observe (started by the benchmark itself).
    #[command(hide = true)]
    Subscriber(subscriber::SubscriberArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,mock_master=warn,lotsync=warn,lotsync_bench=info")
        }))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Some(Command::Subscriber(args)) => {
            // Many of these run side by side on 2 cores: one thread each is enough.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(subscriber::run(args))
        }
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            if cli.jetstream_only {
                return runtime.block_on(jetstream_only(cli.quick, cli.out));
            }
            runtime.block_on(bench(cli.quick, cli.servers_only, cli.out))
        }
    }
}

/// The benchmark's progress on stderr (a spinner naming the scenario running; drawn
/// only when stderr is a terminal).
static PROGRESS: std::sync::OnceLock<lotsync_tests::progress::Progress> =
    std::sync::OnceLock::new();

/// Now running the scenario `what`.
fn stage(what: impl Into<String>) {
    PROGRESS
        .get_or_init(|| lotsync_tests::progress::Progress::spinner("lotsync-bench"))
        .stage(what);
}

/// `--jetstream-only`: the JetStream rows alone; writes `DIR/jetstream.json`.
async fn jetstream_only(quick: bool, out: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let plan = if quick {
        jetstream::JetStreamPlan::quick()
    } else {
        jetstream::JetStreamPlan::full()
    };
    let results = jetstream::run(&plan).await?;
    println!("{}", jetstream::render(&plan, &results));
    let json = out.join("jetstream.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("Wrote {}.", json.display());
    if quick {
        let mut empty = Vec::new();
        jetstream::smoke_checks(&results, &mut |name: &str, ok: bool| {
            if !ok {
                empty.push(name.to_owned());
            }
        });
        if !empty.is_empty() {
            bail!(
                "the smoke run produced no samples for: {}",
                empty.join(", ")
            );
        }
    }
    Ok(())
}

async fn bench(quick: bool, servers_only: bool, out: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let machine = report::Machine::detect();
    tracing::info!(
        cpus = machine.cpus,
        memory_mib = machine.memory_mib,
        quick,
        "benchmark starting"
    );
    let mut plan = if quick {
        scenarios::Plan::quick()
    } else {
        scenarios::Plan::full()
    };
    plan.core = !servers_only;
    let started = std::time::Instant::now();
    let results = scenarios::run_all(plan, &out).await?;
    if let Some(progress) = PROGRESS.get() {
        progress.finish();
    }
    let targets = report::targets(&results);
    let report = report::Report {
        machine,
        quick,
        results,
        targets,
        load_average_after: report::load_average(),
    };

    println!("{}", report::render(&report));
    if let (Some(plan), Some(results)) = (&report.results.plan.jetstream, &report.results.jetstream)
    {
        println!("{}", jetstream::render(plan, results));
    }
    let json = out.join("bench.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let png = out.join("bench.png");
    chart::draw(&report.results, &png)?;
    println!(
        "Wrote {} and {} in {:.0} s.",
        json.display(),
        png.display(),
        started.elapsed().as_secs_f64()
    );
    if quick {
        smoke_checks(&report.results)?;
    }
    Ok(())
}

/// What `--quick` guarantees: every scenario produced samples (no target is asserted).
fn smoke_checks(r: &scenarios::Results) -> anyhow::Result<()> {
    let mut empty = Vec::new();
    let mut check = |name: &str, ok: bool| {
        if !ok {
            empty.push(name.to_owned());
        }
    };
    check("loopback floor", r.floor.count > 0);
    check(
        "fan-out",
        !r.fanout.is_empty() && r.fanout.iter().all(|f| f.stats.per_subscriber.count > 0),
    );
    servers_checks(&r.servers, &mut check);
    if let Some(jetstream) = &r.jetstream {
        jetstream::smoke_checks(jetstream, &mut check);
    }
    if r.plan.core {
        core_checks(r, &mut check);
    }
    if !empty.is_empty() {
        bail!(
            "the smoke run produced no samples for: {}",
            empty.join(", ")
        );
    }
    println!("Smoke checks passed: every scenario produced samples.");
    Ok(())
}

/// Every design that ran has samples; the terminal server's rows ran (nchan's may be
/// skipped when it is not installed).
fn servers_checks(s: &servers::ServersResults, check: &mut impl FnMut(&str, bool)) {
    for set in [&s.busy, &s.wide, &s.bursts].into_iter().flatten() {
        for d in &set.designs {
            check(
                &format!("{} ({})", d.design.label(), set.load),
                d.stats.per_subscriber.count > 0,
            );
        }
    }
    check(
        "through a terminal server",
        s.busy
            .as_ref()
            .is_some_and(|b| b.get(peers::Design::Relay).is_some()),
    );
    check(
        "many streams",
        s.streams
            .as_ref()
            .is_some_and(|m| m.one.per_stream.count > 0 && m.many.per_stream.count > 0),
    );
    check(
        "tree",
        s.tree
            .as_ref()
            .is_some_and(|t| t.levels.iter().all(|l| l.stats.per_subscriber.count > 0)),
    );
}

/// The scenarios of the SDK on the master.
fn core_checks(r: &scenarios::Results, check: &mut impl FnMut(&str, bool)) {
    check("latency", r.latency.per_subscriber.count > 0);
    check("polling 1 s", r.busy.poll_1000.per_subscriber.count > 0);
    check("polling 250 ms", r.busy.poll_250.per_subscriber.count > 0);
    check(
        "quiet comparison",
        r.quiet.ours.per_subscriber.count > 0 && r.quiet.poll_1000.per_subscriber.count > 0,
    );
    check(
        "requests",
        r.latency.requests_per_s > 0.0 && r.busy.poll_1000.requests_per_s > 0.0,
    );
    check(
        "throughput",
        r.throughput.iter().all(|t| t.bids_per_s > 0.0),
    );
    check(
        "replica lag",
        r.throughput.iter().all(|t| t.replica_lag.count > 0),
    );
    check("bursts", r.bursts.stats.notices > 0);
}
