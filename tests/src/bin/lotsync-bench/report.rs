//! The report: the machine, Markdown tables of every figure with its target and
//! PASS/MISS, and the JSON written next to the chart.

use std::fmt::Write as _;

use serde::Serialize;

use crate::scenarios::{Comparison, Results};
use crate::stats::{DesignStats, Percentiles};

/// The machine the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// CPU model, from /proc/cpuinfo.
    pub cpu_model: String,
    /// Total memory, MiB, from /proc/meminfo.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Load average (1, 5, 15 minutes) when the run started: other work on the
    /// machine makes every figure noisier.
    pub load_average: [f64; 3],
}

/// The load average now (1, 5, 15 minutes), from /proc/loadavg.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text
        .split_ascii_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0));
    [(); 3].map(|()| values.next().unwrap_or(0.0))
}

impl Machine {
    /// Read what the system says about itself (Linux; blanks elsewhere).
    pub fn detect() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_mib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_mib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_average: load_average(),
        }
    }
}

/// One target of the issue and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is required.
    pub what: String,
    /// What was measured.
    pub measured: String,
    /// Met (`Some(true)`), missed (`Some(false)`), or not measured in this run.
    pub met: Option<bool>,
}

/// What bench.json holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Whether this was the `--quick` smoke run.
    pub quick: bool,
    /// The figures.
    pub results: Results,
    /// The targets.
    pub targets: Vec<Target>,
    /// Load average (1, 5, 15 minutes) when the run ended.
    pub load_average_after: [f64; 3],
}

pub fn target(what: &str, measured: String, met: Option<bool>) -> Target {
    Target {
        what: what.to_owned(),
        measured,
        met,
    }
}

/// Stale fraction of polling divided by ours (how many times less stale we are).
fn stale_ratio(c: &Comparison) -> f64 {
    c.poll_1000.stale_fraction / c.ours.stale_fraction.max(1e-9)
}

/// Evaluate every target against the results.
pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    if r.plan.core {
        t.extend(core_targets(r));
    }
    t.extend(crate::report_servers::targets(r));
    t
}

/// The targets of the SDK on the master.
fn core_targets(r: &Results) -> Vec<Target> {
    let l = &r.latency;
    let mut t = vec![
        target(
            "per-subscriber p50 <= 1 ms",
            format!("{:.2} ms", l.per_subscriber.p50),
            Some(l.per_subscriber.p50 <= 1.0),
        ),
        target(
            "per-subscriber p99 <= 5 ms",
            format!("{:.2} ms", l.per_subscriber.p99),
            Some(l.per_subscriber.p99 <= 5.0),
        ),
        target(
            "all-subscribers p99 <= 10 ms",
            format!("{:.2} ms", l.all_subscribers.p99),
            Some(l.all_subscribers.p99 <= 10.0),
        ),
    ];
    let big = r.fanout.iter().find(|f| f.subscribers >= 200);
    t.push(target(
        ">= 200 subscribers, all-subscribers p99 <= 50 ms",
        big.map_or("not run".into(), |f| {
            format!("{:.2} ms at {}", f.stats.all_subscribers.p99, f.subscribers)
        }),
        big.map(|f| f.stats.all_subscribers.p99 <= 50.0),
    ));
    for run in &r.throughput {
        if run.load == "group commit" {
            t.push(target(
                &format!(
                    ">= 5000 bids/s with replication ({}, group commit)",
                    run.storage
                ),
                format!("{:.0} bids/s at most", run.bids_per_s),
                Some(run.bids_per_s >= 5000.0),
            ));
        }
        if run.load == "sustained" {
            let held = run.bids_per_s >= 0.95 * run.offered_per_s && run.offered_per_s >= 5000.0;
            t.push(target(
                &format!(
                    "5000 bids/s sustained, replica lag p99 <= 5 ms ({}, offered {:.0}/s)",
                    run.storage, run.offered_per_s
                ),
                format!(
                    "{:.0} bids/s accepted, lag p99 {:.2} ms",
                    run.bids_per_s, run.replica_lag.p99
                ),
                Some(held && run.replica_lag.count > 0 && run.replica_lag.p99 <= 5.0),
            ));
        }
    }
    let b = &r.bursts.stats;
    t.push(target(
        "<= 0.3 fetches per notice in bursts",
        format!("{:.3}", b.fetches_per_notice),
        Some(b.notices > 0 && b.fetches_per_notice <= 0.3),
    ));
    for (name, c) in [("quiet", &r.quiet), ("busy", &r.busy)] {
        let ratio = stale_ratio(c);
        let fewer = c.ours.requests_per_s < c.poll_1000.requests_per_s;
        t.push(target(
            &format!(
                "stale fraction >= 50x lower than 1 s polling, with fewer requests ({name}, {} bids/s)",
                c.bid_rate
            ),
            format!(
                "{ratio:.0}x lower; {:.2} vs {:.2} requests/s per subscriber",
                c.ours.requests_per_s, c.poll_1000.requests_per_s
            ),
            Some(ratio >= 50.0 && fewer),
        ));
    }
    t
}

pub fn pct_row(out: &mut String, name: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        p.count, p.p50, p.p90, p.p99, p.p999, p.max
    );
}

pub const PCT_HEADER: &str = "| | samples | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|";

fn comparison(out: &mut String, c: &Comparison, subscribers: u32) {
    let _ = writeln!(
        out,
        "\n{subscribers} subscribers per design, {} bids/s:\n",
        c.bid_rate
    );
    let _ = writeln!(
        out,
        "| design | staleness p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | stale fraction | requests/s per subscriber |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let row = |out: &mut String, name: &str, d: &DesignStats| {
        let p = &d.per_subscriber;
        let _ = writeln!(
            out,
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.5} | {:.2} |",
            p.p50, p.p90, p.p99, p.p999, p.max, d.stale_fraction, d.requests_per_s
        );
    };
    row(out, "notify, then fetch (ours)", &c.ours);
    row(out, "polling every 1 s", &c.poll_1000);
    row(out, "polling every 250 ms", &c.poll_250);
    for (name, poll) in [("1 s", &c.poll_1000), ("250 ms", &c.poll_250)] {
        let _ = writeln!(
            out,
            "\nvs polling every {name}: staleness p50 {:.0}x lower, p99 {:.0}x lower, stale fraction {:.0}x lower, requests x{:.2}",
            poll.per_subscriber.p50 / c.ours.per_subscriber.p50.max(1e-6),
            poll.per_subscriber.p99 / c.ours.per_subscriber.p99.max(1e-6),
            poll.stale_fraction / c.ours.stale_fraction.max(1e-9),
            c.ours.requests_per_s / poll.requests_per_s.max(1e-9),
        );
    }
}

/// The whole report as Markdown.
pub fn render(report: &Report) -> String {
    let (m, r) = (&report.machine, &report.results);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {} MiB RAM, Linux {}. Everything on 127.0.0.1. Load average (1/5/15 min): {:.2} {:.2} {:.2} at the start, {:.2} {:.2} {:.2} at the end.{}",
        m.cpus,
        m.cpu_model,
        m.memory_mib,
        m.kernel,
        m.load_average[0],
        m.load_average[1],
        m.load_average[2],
        report.load_average_after[0],
        report.load_average_after[1],
        report.load_average_after[2],
        if report.quick {
            " QUICK smoke run: small and short, not comparable."
        } else {
            ""
        }
    );

    let _ = writeln!(
        out,
        "\n### Loopback floor (GET /healthz, one at a time, kept-alive)\n\n{PCT_HEADER}"
    );
    pct_row(&mut out, "round trip", &r.floor);

    if r.plan.core {
        latency(&mut out, r);
    }
    fanout(&mut out, r);
    if r.plan.core {
        throughput_and_bursts(&mut out, r);
    }

    crate::report_servers::render(&mut out, r);

    let _ = writeln!(
        out,
        "\n### Targets\n\n| target | measured | |\n|---|---|---|"
    );
    for t in &report.targets {
        let verdict = match t.met {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a",
        };
        let _ = writeln!(out, "| {} | {} | {verdict} |", t.what, t.measured);
    }
    out
}

/// Latency of the SDK on the master, and polling side by side.
fn latency(out: &mut String, r: &Results) {
    let l = &r.latency;
    let _ = writeln!(
        out,
        "\n### Notice-to-mirror latency: {} subscriber processes, {} bids/s on {} lots, {} s\n\nCommit on the master to the lot (that version or newer) reaching a display of the subscriber.\n\n{PCT_HEADER}",
        l.subscribers, r.plan.busy_rate, r.plan.lots, r.plan.busy_s
    );
    pct_row(out, "per subscriber", &l.per_subscriber);
    pct_row(out, "all subscribers", &l.all_subscribers);
    pct_row(
        out,
        "diagnostic: notice arrival (1 raw stream reader)",
        &r.notice_arrival.per_subscriber,
    );
    let _ = writeln!(
        out,
        "\nCommits: {}; never reached: {}; requests/s per subscriber: {:.1}; fetches per notice: {:.3}; the SDK's own notice-to-mirror time (the fetch): p50 {:.3} ms, p99 {:.3} ms; per-subscriber p50 = {:.1}x the loopback floor's p50, p99 = {:.1}x its p99.",
        l.commits,
        l.never_reached,
        l.requests_per_s,
        l.fetches_per_notice,
        l.sdk_notice_to_mirror_p50,
        l.sdk_notice_to_mirror_p99,
        l.per_subscriber.p50 / r.floor.p50.max(1e-6),
        l.per_subscriber.p99 / r.floor.p99.max(1e-6),
    );

    let _ = writeln!(
        out,
        "\n### Against polling, at the busy rate (polling fleets run after ours, same load)"
    );
    comparison(out, &r.busy, r.plan.subscribers);
    let _ = writeln!(
        out,
        "\n### Against polling, at a hall's bid rate (all three fleets on one master, same bids)"
    );
    comparison(out, &r.quiet, r.plan.subscribers);
}

/// Latency against the number of subscribers.
fn fanout(out: &mut String, r: &Results) {
    let _ = writeln!(
        out,
        "\n### Fan-out ({} bids/s on {} lots, {} s each; above 50 subscribers they run as tasks, several per process)\n\n| subscribers | processes x per process | per-sub p50 ms | per-sub p99 ms | all-subs p50 ms | all-subs p99 ms | all-subs max ms | never reached |\n|---:|---|---:|---:|---:|---:|---:|---:|",
        r.plan.fanout_rate, r.plan.lots, r.plan.fanout_s
    );
    for f in &r.fanout {
        let (p, a) = (&f.stats.per_subscriber, &f.stats.all_subscribers);
        let _ = writeln!(
            out,
            "| {} | {} x {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            f.subscribers,
            f.processes,
            f.per_process,
            p.p50,
            p.p99,
            a.p50,
            a.p99,
            a.max,
            f.stats.never_reached
        );
    }
}

/// The master's throughput, and coalescing under bursts.
fn throughput_and_bursts(out: &mut String, r: &Results) {
    let _ = writeln!(
        out,
        "\n### Master throughput (256 lots, bids through the in-process handle, {} s each; closed-loop bidders as fast as they are answered, or an open-loop offered rate)\n\n| storage | load | bids/s accepted | replica lag p50 ms | p99 ms | max ms | commit wait p50 ms | p99 ms |\n|---|---|---:|---:|---:|---:|---:|---:|",
        r.plan.throughput_s
    );
    for t in &r.throughput {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            t.storage,
            match t.load.as_str() {
                "sustained" => format!("{:.0} bids/s offered (open loop)", t.offered_per_s),
                "one bid per commit" => "1 bidder: one bid per commit".to_owned(),
                _ => format!("{} bidders: group commit", t.bidders),
            },
            t.bids_per_s,
            t.replica_lag.p50,
            t.replica_lag.p99,
            t.replica_lag.max,
            t.commit_wait.p50,
            t.commit_wait.p99
        );
    }

    let b = &r.bursts.stats;
    let _ = writeln!(
        out,
        "\n### Coalescing under bursts ({} hot lots, {} bids per lot every {} ms = {:.0} bids/s, {} subscribers)\n\n{PCT_HEADER}",
        r.plan.hot_lots, r.plan.per_burst, r.plan.burst_period_ms, r.bursts.bid_rate, b.subscribers
    );
    pct_row(out, "staleness per subscriber", &b.per_subscriber);
    pct_row(out, "staleness all subscribers", &b.all_subscribers);
    pct_row(
        out,
        "diagnostic: notice arrival (1 raw stream reader)",
        &r.bursts.notice_arrival,
    );
    let _ = writeln!(
        out,
        "\nBids refused: {}; notices: {}; coalesced: {}; fetches per notice: {:.3}; fetch retries: {}; stale fraction: {:.4}; the SDK's notice-to-mirror p50 {:.3} ms, p99 {:.3} ms.",
        r.bursts.rejected,
        b.notices,
        b.coalesced_notices,
        b.fetches_per_notice,
        b.retries,
        b.stale_fraction,
        b.sdk_notice_to_mirror_p50,
        b.sdk_notice_to_mirror_p99
    );
}
