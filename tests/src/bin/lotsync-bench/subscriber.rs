//! The subscriber process: the benchmark binary re-executed with the hidden
//! `subscriber` subcommand, so terminal servers do not share a process (or a runtime)
//! with the master they measure.
//!
//! Each process runs `--count` subscribers as tasks (one unless the fan-out is larger
//! than the process budget). A subscriber is either a real terminal server (`notify`:
//! the lotsync SDK, notices then fetches, or inline lots from a terminal server), the
//! design it replaces (`poll`: a full `GET /v1/lots` every `--interval-ms`), or a peer
//! design's reader (`nchan`, see `readers`). For every lot version it sees it writes
//! one [`Line::Observed`] to stdout; the parent reads them (see `fleet`). It stops when
//! stdin closes or its deadline passes, and reports its request counters last.
//! `streams` mode (thousands of raw notice streams in one process) sums up instead.
//!
//! Times are unix microseconds from the system clock, the same clock the master stamps
//! commits with, since everything runs on one machine.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use lotsync::Update;
use lotsync::protocol::{Lot, LotsResponse, Notice};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken as Stop;

/// How a subscriber learns about changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Notify, then fetch: the lotsync SDK.
    Notify,
    /// The replaced design: fetch every lot every interval.
    Poll,
    /// Diagnostic: read the raw notice stream, fetch nothing; an observation is a
    /// notice arriving. Measures the commit-to-notice share of the latency.
    Notices,
    /// The peer design: read nchan's EventSource stream of published lots.
    Nchan,
    /// Many raw notice streams in one process, summed up per notice ([`Line::Delivered`]
    /// and [`Line::Latency`]) rather than one line per stream and notice.
    Streams,
}

/// Flags of the hidden `subscriber` subcommand (set by the parent, not by people).
#[derive(Debug, Clone, Args)]
pub struct SubscriberArgs {
    /// Base URL of the master.
    #[arg(long)]
    pub url: String,
    /// Terminal bearer token.
    #[arg(long)]
    pub token: String,
    /// Notify (SDK) or poll.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Poll interval in milliseconds (poll mode).
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Subscribers run as tasks in this process.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Id of the first subscriber; the others follow.
    #[arg(long, default_value_t = 0)]
    pub first_id: u32,
    /// Exit after this many seconds even if stdin stays open.
    #[arg(long, default_value_t = 600)]
    pub deadline_s: u64,
    /// Notify mode: ask for notices that carry their lots (from a terminal server).
    #[arg(long)]
    pub inline_lots: bool,
    /// Raw readers (nchan, streams): acknowledge every read at once (TCP_QUICKACK).
    #[arg(long)]
    pub quickack: bool,
    /// Notify mode: follow notices on NATS JetStream at this URL (fetches stay on --url).
    #[arg(long)]
    pub nats: Option<String>,
}

/// One line of a subscriber's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `R id at requests`: synced and ready; requests made so far.
    Ready { sub: u32, at_us: i64, requests: u64 },
    /// `O id lot seq committed observed`: the subscriber holds `lot` at version `seq`.
    Observed {
        sub: u32,
        lot: String,
        seq: u64,
        committed_us: i64,
        observed_us: i64,
    },
    /// `M id at requests fetches notices coalesced retries n2m_p50 n2m_p99`: counters
    /// at exit, and the SDK's own notice-arrived-to-mirror percentiles (µs; 0 when
    /// polling).
    Final {
        sub: u32,
        at_us: i64,
        requests: u64,
        fetches: u64,
        notices: u64,
        coalesced: u64,
        retries: u64,
        n2m_p50_us: u64,
        n2m_p99_us: u64,
    },
    /// `D first streams seq lot committed last count`: notice `seq` reached `count` of
    /// the `streams` streams of the process starting at id `first`, the last at `last`.
    Delivered {
        first: u32,
        streams: u32,
        seq: u64,
        lot: String,
        committed_us: i64,
        last_us: i64,
        count: u32,
    },
    /// `H first value count`: `count` (stream, notice) pairs of the process starting
    /// at `first` took `value` µs from commit to arrival.
    Latency {
        first: u32,
        value_us: u64,
        count: u64,
    },
}

impl Line {
    /// The compact text form (no trailing newline).
    pub fn render(&self) -> String {
        match self {
            Line::Ready {
                sub,
                at_us,
                requests,
            } => format!("R {sub} {at_us} {requests}"),
            Line::Observed {
                sub,
                lot,
                seq,
                committed_us,
                observed_us,
            } => format!("O {sub} {lot} {seq} {committed_us} {observed_us}"),
            Line::Final {
                sub,
                at_us,
                requests,
                fetches,
                notices,
                coalesced,
                retries,
                n2m_p50_us,
                n2m_p99_us,
            } => format!(
                "M {sub} {at_us} {requests} {fetches} {notices} {coalesced} {retries} {n2m_p50_us} {n2m_p99_us}"
            ),
            Line::Delivered {
                first,
                streams,
                seq,
                lot,
                committed_us,
                last_us,
                count,
            } => format!("D {first} {streams} {seq} {lot} {committed_us} {last_us} {count}"),
            Line::Latency {
                first,
                value_us,
                count,
            } => format!("H {first} {value_us} {count}"),
        }
    }

    /// Parse a line written by [`Line::render`]; `None` for anything else.
    pub fn parse(text: &str) -> Option<Line> {
        let mut f = text.split_ascii_whitespace();
        let kind = f.next()?;
        let sub = f.next()?.parse().ok()?;
        let line = match kind {
            "R" => Line::Ready {
                sub,
                at_us: f.next()?.parse().ok()?,
                requests: f.next()?.parse().ok()?,
            },
            "O" => Line::Observed {
                sub,
                lot: f.next()?.to_owned(),
                seq: f.next()?.parse().ok()?,
                committed_us: f.next()?.parse().ok()?,
                observed_us: f.next()?.parse().ok()?,
            },
            "M" => Line::Final {
                sub,
                at_us: f.next()?.parse().ok()?,
                requests: f.next()?.parse().ok()?,
                fetches: f.next()?.parse().ok()?,
                notices: f.next()?.parse().ok()?,
                coalesced: f.next()?.parse().ok()?,
                retries: f.next()?.parse().ok()?,
                n2m_p50_us: f.next()?.parse().ok()?,
                n2m_p99_us: f.next()?.parse().ok()?,
            },
            "D" => Line::Delivered {
                first: sub,
                streams: f.next()?.parse().ok()?,
                seq: f.next()?.parse().ok()?,
                lot: f.next()?.to_owned(),
                committed_us: f.next()?.parse().ok()?,
                last_us: f.next()?.parse().ok()?,
                count: f.next()?.parse().ok()?,
            },
            "H" => Line::Latency {
                first: sub,
                value_us: f.next()?.parse().ok()?,
                count: f.next()?.parse().ok()?,
            },
            _ => return None,
        };
        f.next().is_none().then_some(line)
    }
}

/// Now, in unix microseconds.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Run the subscriber process until stdin closes or the deadline passes.
pub async fn run(args: SubscriberArgs) -> anyhow::Result<()> {
    let stop = Stop::default();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Line>();
    let writer = tokio::spawn(write_lines(out_rx));

    let watcher = {
        let stop = stop.clone();
        let deadline = Duration::from_secs(args.deadline_s);
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            let eof = async {
                // Anything but data (EOF or an error) means the parent is done with us.
                while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            };
            let _ = tokio::time::timeout(deadline, eof).await;
            stop.cancel();
        })
    };

    let mut tasks = Vec::new();
    if args.mode == Mode::Streams {
        // One task holds every stream of the process and sums them up.
        let (args, out, stop) = (args.clone(), out_tx.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let result = crate::readers::streams(&args, &out, &stop).await;
            if let Err(e) = &result {
                tracing::error!(error = %format!("{e:#}"), "stream reader failed");
            }
            result
        }));
    }
    for i in 0..args.count {
        if args.mode == Mode::Streams {
            break;
        }
        let sub = args.first_id + i;
        let (args, out, stop) = (args.clone(), out_tx.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let result = match args.mode {
                Mode::Notify => notify(sub, &args, &out, &stop).await,
                Mode::Poll => poll(sub, &args, &out, &stop).await,
                Mode::Notices => raw_notices(sub, &args, &out, &stop).await,
                Mode::Nchan => crate::readers::nchan(sub, &args, &out, &stop).await,
                Mode::Streams => unreachable!("handled above"),
            };
            if let Err(e) = &result {
                tracing::error!(sub, error = %format!("{e:#}"), "subscriber failed");
            }
            result
        }));
    }
    drop(out_tx);
    let mut failed = 0;
    for task in tasks {
        if !matches!(task.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    watcher.abort();
    writer.await.context("stdout writer")??;
    if failed > 0 {
        bail!("{failed} of {} subscribers failed", args.count);
    }
    Ok(())
}

/// Write lines to stdout, flushing whenever the queue runs dry so the parent sees them
/// promptly without a syscall per line under load.
async fn write_lines(mut rx: mpsc::UnboundedReceiver<Line>) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    while let Some(line) = rx.recv().await {
        writeln!(out, "{}", line.render())?;
        while let Ok(line) = rx.try_recv() {
            writeln!(out, "{}", line.render())?;
        }
        out.flush()?;
    }
    out.flush()?;
    Ok(())
}

/// `sub` holds `lot` at its version since `at`.
pub fn observed(sub: u32, lot: &Lot, at: i64) -> Line {
    Line::Observed {
        sub,
        lot: lot.id.clone(),
        seq: lot.seq,
        committed_us: lot.updated_at.timestamp_micros(),
        observed_us: at,
    }
}

/// A terminal server on the SDK: every change a display receives is an observation.
async fn notify(
    sub: u32,
    args: &SubscriberArgs,
    out: &mpsc::UnboundedSender<Line>,
    stop: &Stop,
) -> anyhow::Result<()> {
    let mut builder = lotsync::Client::builder(&args.url)
        .token(&args.token)
        .inline_lots(args.inline_lots);
    if let Some(nats) = &args.nats {
        builder = builder.jetstream(
            lotsync::JetStreamNotices::new([nats.clone()]).heartbeat(Duration::from_secs(1)),
        );
    }
    let client = builder.build()?;
    if !client.wait_live(Duration::from_secs(60)).await {
        bail!("subscriber {sub} did not go live within 60 s");
    }
    client.synced().await;
    let mut display = client.subscribe();
    let requests = |m: &lotsync::MetricsSnapshot| {
        // One stream connect plus every reconnect, snapshot, catch-up and fetch.
        1 + m.reconnects + m.resyncs + m.catchups + m.fetches
    };
    let _ = out.send(Line::Ready {
        sub,
        at_us: now_us(),
        requests: requests(&client.metrics()),
    });
    loop {
        let update = tokio::select! {
            update = display.recv() => update,
            () = stop.cancelled() => break,
        };
        let at = now_us();
        match update {
            Some(Update::LotChanged { lot, .. }) => {
                let _ = out.send(observed(sub, &lot, at));
            }
            Some(Update::Resynced { lots, .. }) => {
                for lot in &lots {
                    let _ = out.send(observed(sub, lot, at));
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    let m = client.metrics();
    let _ = out.send(Line::Final {
        sub,
        at_us: now_us(),
        requests: requests(&m),
        fetches: m.fetches,
        notices: m.notices,
        coalesced: m.coalesced_notices,
        retries: m.retries,
        n2m_p50_us: m.notice_to_mirror.p50.as_micros() as u64,
        n2m_p99_us: m.notice_to_mirror.p99.as_micros() as u64,
    });
    client.shutdown().await;
    Ok(())
}

/// The design lotsync replaces: ask for every lot every `interval_ms`.
async fn poll(
    sub: u32,
    args: &SubscriberArgs,
    out: &mpsc::UnboundedSender<Line>,
    stop: &Stop,
) -> anyhow::Result<()> {
    let mut poller = Poller {
        http: reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()?,
        url: format!("{}/v1/lots", args.url.trim_end_matches('/')),
        token: args.token.clone(),
        held: HashMap::new(),
        polls: 0,
    };
    let interval = Duration::from_millis(args.interval_ms.max(1));
    poller.poll(sub, out).await.context("first poll")?;
    let _ = out.send(Line::Ready {
        sub,
        at_us: now_us(),
        requests: 1,
    });
    // Real pollers are not in phase with each other or with the bids.
    let phase = Duration::from_micros(rand::random_range(0..interval.as_micros() as u64));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => break,
        }
        if let Err(e) = poller.poll(sub, out).await {
            tracing::warn!(sub, error = %e, "poll failed");
        }
    }
    let _ = out.send(Line::Final {
        sub,
        at_us: now_us(),
        requests: poller.polls,
        fetches: poller.polls,
        notices: 0,
        coalesced: 0,
        retries: 0,
        n2m_p50_us: 0,
        n2m_p99_us: 0,
    });
    Ok(())
}

/// Read `GET /v1/notices` as plain text and report each notice as it arrives.
async fn raw_notices(
    sub: u32,
    args: &SubscriberArgs,
    out: &mpsc::UnboundedSender<Line>,
    stop: &Stop,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let url = format!("{}/v1/notices", args.url.trim_end_matches('/'));
    let response = http.get(&url).bearer_auth(&args.token).send().await?;
    let mut body = response.error_for_status()?.bytes_stream();
    let _ = out.send(Line::Ready {
        sub,
        at_us: now_us(),
        requests: 1,
    });
    let mut buffer = String::new();
    let mut event = String::new();
    loop {
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            () = stop.cancelled() => break,
        };
        let Some(chunk) = chunk else { break };
        let at = now_us();
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:")
                && event == lotsync::protocol::EVENT_NOTICE
                && let Ok(notice) = serde_json::from_str::<Notice>(data.trim())
            {
                let _ = out.send(Line::Observed {
                    sub,
                    lot: notice.lot_id,
                    seq: notice.seq,
                    committed_us: notice.at.timestamp_micros(),
                    observed_us: at,
                });
            }
        }
    }
    let _ = out.send(Line::Final {
        sub,
        at_us: now_us(),
        requests: 1,
        fetches: 0,
        notices: 0,
        coalesced: 0,
        retries: 0,
        n2m_p50_us: 0,
        n2m_p99_us: 0,
    });
    Ok(())
}

/// A polling terminal server's state: the versions it holds.
struct Poller {
    http: reqwest::Client,
    url: String,
    token: String,
    held: HashMap<String, u64>,
    /// Requests sent, answered or not.
    polls: u64,
}

impl Poller {
    /// One poll: every lot, and an observation for each newer version.
    async fn poll(&mut self, sub: u32, out: &mpsc::UnboundedSender<Line>) -> anyhow::Result<()> {
        self.polls += 1;
        let response = self
            .http
            .get(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await?;
        let body: LotsResponse = response.error_for_status()?.json().await?;
        let at = now_us();
        for lot in &body.lots {
            if self.held.get(&lot.id).is_none_or(|&seq| lot.seq > seq) {
                self.held.insert(lot.id.clone(), lot.seq);
                let _ = out.send(observed(sub, lot, at));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let lines = [
            Line::Ready {
                sub: 3,
                at_us: 17,
                requests: 2,
            },
            Line::Observed {
                sub: 0,
                lot: "lot-9".into(),
                seq: 41,
                committed_us: 1_700_000_000_000_000,
                observed_us: 1_700_000_000_000_950,
            },
            Line::Final {
                sub: 7,
                at_us: 5,
                requests: 9,
                fetches: 6,
                notices: 8,
                coalesced: 2,
                retries: 1,
                n2m_p50_us: 700,
                n2m_p99_us: 1500,
            },
            Line::Delivered {
                first: 2500,
                streams: 2500,
                seq: 90,
                lot: "lot-3".into(),
                committed_us: 10,
                last_us: 50,
                count: 2499,
            },
            Line::Latency {
                first: 0,
                value_us: 1234,
                count: 17,
            },
        ];
        for line in lines {
            assert_eq!(Line::parse(&line.render()), Some(line));
        }
        assert_eq!(Line::parse("O 1 lot-1 x 2 3"), None);
        assert_eq!(Line::parse("R 1 2 3 4"), None);
        assert_eq!(Line::parse("hello"), None);
    }
}
