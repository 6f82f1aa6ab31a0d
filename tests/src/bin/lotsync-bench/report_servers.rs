//! The report's sections on terminal servers and the peer designs, and their targets.

use std::fmt::Write as _;

use crate::peers::{Design, DesignRun, PeerSet};
use crate::relayed::{Delivery, ManyStreams, Tree};
use crate::report::{PCT_HEADER, Target, pct_row, target};
use crate::scenarios::Results;

/// `a / b`, guarded against an empty `b`.
fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(1e-9)
}

/// The fan-out row of one subscriber, the baseline of "through a terminal server".
fn alone(r: &Results) -> Option<f64> {
    r.fanout
        .iter()
        .find(|f| f.subscribers == 1)
        .map(|f| f.stats.per_subscriber.p50)
}

/// The targets of terminal servers (issue 11) and of the nchan comparison (issue 17).
pub fn targets(r: &Results) -> Vec<Target> {
    let s = &r.servers;
    let mut t = Vec::new();
    let busy = s.busy.as_ref();
    let relay = busy.and_then(|b| b.get(Design::Relay));
    let direct = busy.and_then(|b| b.get(Design::Direct));
    let n = r.plan.subscribers;

    let p50 = relay.zip(alone(r)).map(|(relay, one)| {
        let p = relay.stats.per_subscriber.p50;
        (p, one, ratio(p, one))
    });
    t.push(target(
        &format!(
            "{n} displays through one terminal server: per-display p50 <= 1.5x one terminal server alone (fan-out row of 1)"
        ),
        p50.map_or("not run".into(), |(p, one, x)| {
            format!("{p:.2} ms vs {one:.2} ms: {x:.2}x")
        }),
        p50.map(|(_, _, x)| x <= 1.5),
    ));
    let all = relay.zip(direct).map(|(relay, direct)| {
        let (a, b) = (
            relay.stats.all_subscribers.p99,
            direct.stats.all_subscribers.p99,
        );
        (a, b, ratio(a, b))
    });
    t.push(target(
        &format!("{n} displays through one terminal server: all-displays p99 <= 0.5x {n} terminal servers on the master"),
        all.map_or("not run".into(), |(a, b, x)| {
            format!("{a:.2} ms vs {b:.2} ms: {x:.2}x")
        }),
        all.map(|(_, _, x)| x <= 0.5),
    ));
    let fetches = relay.zip(direct).map(|(relay, direct)| {
        (
            relay.master_fetches_per_commit,
            direct.master_fetches_per_commit,
        )
    });
    t.push(target(
        "master fetches per change = number of terminal servers, not of displays",
        fetches.map_or("not run".into(), |(relay, direct)| {
            format!("{relay:.2} through 1 terminal server; {direct:.2} with {n} on the master")
        }),
        // A batch fetch can cover two changes, a retry can add one: within 5 %.
        fetches.map(|(relay, _)| relay <= 1.05),
    ));
    if let Some(m) = &s.streams {
        let x = ratio(m.many.all_streams.p99, m.one.per_stream.p99);
        t.push(target(
            &format!(
                "{} streams on one terminal server: all-streams delivery p99 <= 100 ms at {} bids/s",
                m.many.streams, m.bid_rate
            ),
            format!(
                "{:.2} ms ({x:.1}x one stream's p99 of {:.2} ms)",
                m.many.all_streams.p99, m.one.per_stream.p99
            ),
            Some(m.many.all_streams.count > 0 && m.many.all_streams.p99 <= 100.0),
        ));
        t.push(target(
            "terminal server memory per stream <= 20 KiB",
            format!(
                "{:.1} KiB ({:.1} KiB with the streams open, before the load)",
                m.kib_per_stream(),
                m.kib_per_stream_open()
            ),
            Some(m.kib_per_stream() <= 20.0),
        ));
    }

    // Issue 17 judges the terminal server with inline lots on both hops: no fetch at all.
    let inline = busy.and_then(|b| b.get(Design::RelayInline));
    for (design, name) in [
        (Design::Nchan, "default sockets"),
        (Design::NchanQuickAck, "quick-ACK readers"),
    ] {
        let pair = inline.zip(busy.and_then(|b| b.get(design)));
        t.push(target(
            &format!("through a terminal server with inline lots (both hops), {n} subscribers at {} bids/s: p50 and p99 no worse than nchan ({name})", r.plan.busy_rate),
            pair.map_or("not run".into(), |(ours, theirs)| {
                let (o, n) = (&ours.stats.per_subscriber, &theirs.stats.per_subscriber);
                format!(
                    "p50 {:.2} vs {:.2} ms ({:.2}x), p99 {:.2} vs {:.2} ms ({:.2}x)",
                    o.p50, n.p50, ratio(o.p50, n.p50), o.p99, n.p99, ratio(o.p99, n.p99)
                )
            }),
            pair.map(|(ours, theirs)| {
                let (o, n) = (&ours.stats.per_subscriber, &theirs.stats.per_subscriber);
                o.p50 <= n.p50 && o.p99 <= n.p99
            }),
        ));
    }
    let cpu = inline.zip(busy.and_then(|b| b.get(Design::Nchan)));
    t.push(target(
        "server CPU per 1,000 deliveries within 2x of nginx+nchan (master + terminal server with inline lots on both hops vs nginx)",
        cpu.map_or("not run".into(), |(ours, theirs)| {
            format!(
                "{:.4} vs {:.4} CPU s: {:.1}x",
                ours.cpu_s_per_1000,
                theirs.cpu_s_per_1000,
                ratio(ours.cpu_s_per_1000, theirs.cpu_s_per_1000)
            )
        }),
        cpu.map(|(ours, theirs)| ours.cpu_s_per_1000 <= 2.0 * theirs.cpu_s_per_1000),
    ));
    let wide = s.wide.as_ref().and_then(|w| w.get(Design::RelayInline));
    t.push(target(
        &format!(
            "{} subscribers through a terminal server (inline lots on both hops): all-subscribers p99 <= 20 ms",
            s.wide.as_ref().map_or(0, |w| w.subscribers)
        ),
        wide.map_or("not run".into(), |w| {
            format!("{:.2} ms", w.stats.all_subscribers.p99)
        }),
        wide.map(|w| w.stats.all_subscribers.p99 <= 20.0),
    ));
    t
}

fn peer_table(out: &mut String, set: &PeerSet) {
    let _ = writeln!(
        out,
        "\n| design | p50 ms | p90 ms | p99 ms | max ms | all-subs p99 ms | stale fraction | requests/s per subscriber | server CPU s per 1,000 deliveries | master CPU s | master fetches/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for d in &set.designs {
        let p = &d.stats.per_subscriber;
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.5} | {:.2} | {:.4} | {:.2} | {:.0} |",
            d.design.label(),
            p.p50,
            p.p90,
            p.p99,
            p.max,
            d.stats.all_subscribers.p99,
            d.stats.stale_fraction,
            d.stats.requests_per_s,
            d.cpu_s_per_1000,
            d.master_cpu_s,
            d.master_fetches_per_s,
        );
    }
    let ours = [Design::RelayInline, Design::Relay, Design::Direct];
    let theirs = [Design::Nchan, Design::NchanQuickAck];
    for o in ours.iter().filter_map(|d| set.get(*d)) {
        for n in theirs.iter().filter_map(|d| set.get(*d)) {
            let (a, b) = (&o.stats.per_subscriber, &n.stats.per_subscriber);
            let _ = writeln!(
                out,
                "\n{} ÷ {}: p50 {:.2}x, p90 {:.2}x, p99 {:.2}x, max {:.2}x; CPU per delivery {:.2}x",
                o.design.label(),
                n.design.label(),
                ratio(a.p50, b.p50),
                ratio(a.p90, b.p90),
                ratio(a.p99, b.p99),
                ratio(a.max, b.max),
                ratio(o.cpu_s_per_1000, n.cpu_s_per_1000),
            );
        }
    }
    for d in set.designs.iter().filter(|d| d.publish.count > 0) {
        let p = &d.publish;
        let _ = writeln!(
            out,
            "\n{}: each publish (POST to nchan until answered) p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms.",
            d.design.label(),
            p.p50,
            p.p99,
            p.max
        );
    }
    let failed: u64 = set.designs.iter().map(|d| d.publish_failures).sum();
    let never: u64 = set.designs.iter().map(|d| d.stats.never_reached).sum();
    let _ = writeln!(
        out,
        "\nNever reached: {never}; nchan publishes refused: {failed}."
    );
}

fn delivery_rows(out: &mut String, name: &str, d: &Delivery) {
    pct_row(out, &format!("{name}: per stream"), &d.per_stream);
    pct_row(out, &format!("{name}: all streams"), &d.all_streams);
}

fn streams(out: &mut String, m: &ManyStreams) {
    let _ = writeln!(
        out,
        "\n### One terminal server process, {} notice streams ({} reader processes), {} bids/s\n\nCommit on the master to the notice arriving on a raw stream of the terminal server. First one stream alone, then all of them, on the same server and load.\n\n{PCT_HEADER}",
        m.many.streams, m.reader_processes, m.bid_rate
    );
    delivery_rows(out, "1 stream", &m.one);
    delivery_rows(out, &format!("{} streams", m.many.streams), &m.many);
    let _ = writeln!(
        out,
        "\nAll-streams p99 = {:.1}x one stream's p99. Never reached: {}. Open-file limit: {}{}. Terminal server's resident memory: {} KiB before, {} KiB with the streams open, {} KiB after the load: {:.1} KiB per stream ({:.1} KiB before the load). CPU from the first bid until every stream had the last notice ({:.1} s): the terminal server {:.2} s with one stream, {:.2} s with all; the reader processes {:.2} s.",
        ratio(m.many.all_streams.p99, m.one.per_stream.p99),
        m.many.never_reached,
        m.open_files,
        m.open_files_refused
            .as_ref()
            .map_or(String::new(), |why| format!(" ({why})")),
        m.rss_before_kib,
        m.rss_open_kib,
        m.rss_after_kib,
        m.kib_per_stream(),
        m.kib_per_stream_open(),
        m.many.seconds,
        m.one.server_cpu_s,
        m.many.server_cpu_s,
        m.many.readers_cpu_s,
    );
}

fn tree(out: &mut String, t: &Tree) {
    let _ = writeln!(
        out,
        "\n### Two-level tree ({} displays per level, {:.0} bids/s, all levels on the same bids)\n\n| level | displays on | per-display p50 ms | p99 ms | all-displays p99 ms | added p50 ms | added p99 ms |\n|---:|---|---:|---:|---:|---:|---:|",
        t.displays, t.bid_rate
    );
    let mut previous: Option<&crate::stats::DesignStats> = None;
    for level in &t.levels {
        let p = &level.stats.per_subscriber;
        let (add50, add99) = previous.map_or((String::from("–"), String::from("–")), |q| {
            let q = &q.per_subscriber;
            (
                format!("{:+.3}", p.p50 - q.p50),
                format!("{:+.3}", p.p99 - q.p99),
            )
        });
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {add50} | {add99} |",
            level.level, level.path, p.p50, p.p99, level.stats.all_subscribers.p99
        );
        previous = Some(&level.stats);
    }
}

/// The sections, appended to `out`.
pub fn render(out: &mut String, r: &Results) {
    let s = &r.servers;
    for why in &s.skipped {
        let _ = writeln!(out, "\nSkipped: {why}");
    }
    if let Some(busy) = &s.busy {
        let _ = writeln!(
            out,
            "\n### Side by side: {} subscribers, {:.0} bids/s on {} lots, each design alone on a fresh master, same bid schedule\n\nLatency: commit on the master to the lot (that version or newer) at the subscriber. Server CPU: the master (plus the terminal server) for lotsync and polling, nginx's master and workers for nchan; per 1,000 (subscriber, change) pairs delivered. Master CPU is the master alone (for nchan it only commits the bids).",
            busy.subscribers, busy.bid_rate, r.plan.lots
        );
        peer_table(out, busy);
        let (relay, direct) = (busy.get(Design::Relay), busy.get(Design::Direct));
        if let (Some(relay), Some(one)) = (relay, alone(r)) {
            let _ = writeln!(
                out,
                "\nThrough one terminal server: per-display p50 {:.2}x one terminal server alone (fan-out row of 1, {one:.3} ms).",
                ratio(relay.stats.per_subscriber.p50, one)
            );
        }
        if let (Some(relay), Some(direct)) = (relay, direct) {
            fetch_line(out, relay, direct, busy.subscribers);
        }
    }
    if let Some(wide) = &s.wide {
        let _ = writeln!(
            out,
            "\n### Side by side: {} subscribers, {:.0} bids/s (the fan-out rate; lotsync direct at this size is the fan-out table's last row)",
            wide.subscribers, wide.bid_rate
        );
        peer_table(out, wide);
    }
    if let Some(bursts) = &s.bursts {
        let _ = writeln!(
            out,
            "\n### Side by side under bursts: {} subscribers, {} hot lots, {} bids per lot every {} ms ({:.0} bids/s)",
            bursts.subscribers,
            r.plan.hot_lots,
            r.plan.per_burst,
            r.plan.burst_period_ms,
            bursts.bid_rate
        );
        peer_table(out, bursts);
    }
    if let Some(m) = &s.streams {
        streams(out, m);
    }
    if let Some(t) = &s.tree {
        tree(out, t);
    }
}

fn fetch_line(out: &mut String, relay: &DesignRun, direct: &DesignRun, n: u32) {
    let _ = writeln!(
        out,
        "\nMaster fetches per change: {:.2} through 1 terminal server, {:.2} with {n} terminal servers on the master ({:.0} against {:.0} fetches/s).",
        relay.master_fetches_per_commit,
        direct.master_fetches_per_commit,
        relay.master_fetches_per_s,
        direct.master_fetches_per_s
    );
}
