//! Raw stream readers of the subscriber process: nchan's EventSource stream of
//! published lots (one subscriber each), and `streams` mode, thousands of raw notice
//! streams on a terminal server summed up per notice, so one process can hold them and
//! its output stays small.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use lotsync::protocol::{EVENT_HELLO, EVENT_NOTICE, Lot, Notice};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken as Stop;

use crate::load::histogram;
use crate::raw_sse::{Event, RawSse};
use crate::subscriber::{Line, SubscriberArgs, now_us, observed};

/// Streams of one process opening at once, so connects do not overrun the server's
/// accept queue.
const CONNECTS_AT_ONCE: usize = 64;

/// Attempts to open one stream before giving up.
const OPEN_ATTEMPTS: u32 = 5;

/// A display fed by nchan: every published lot newer than the one it holds is an
/// observation.
pub async fn nchan(
    sub: u32,
    args: &SubscriberArgs,
    out: &mpsc::UnboundedSender<Line>,
    stop: &Stop,
) -> anyhow::Result<()> {
    let mut sse = RawSse::open(&args.url, None, args.quickack).await?;
    let mut requests = 1;
    let _ = out.send(Line::Ready {
        sub,
        at_us: now_us(),
        requests,
    });
    let mut held: HashMap<String, u64> = HashMap::new();
    let mut events = Vec::new();
    loop {
        let more = tokio::select! {
            more = sse.read(&mut events) => more,
            () = stop.cancelled() => break,
        };
        let at = now_us();
        for event in events.drain(..) {
            let Ok(lot) = serde_json::from_str::<Lot>(&event.data) else {
                continue;
            };
            if held.get(&lot.id).is_none_or(|&seq| lot.seq > seq) {
                held.insert(lot.id.clone(), lot.seq);
                let _ = out.send(observed(sub, &lot, at));
            }
        }
        if !matches!(more, Ok(true)) {
            // nchan closed the stream: subscribe again, as an EventSource would.
            tracing::warn!(sub, "nchan stream ended; subscribing again");
            sse = RawSse::open(&args.url, None, args.quickack).await?;
            requests += 1;
        }
    }
    let _ = out.send(Line::Final {
        sub,
        at_us: now_us(),
        requests,
        fetches: 0,
        notices: 0,
        coalesced: 0,
        retries: 0,
        n2m_p50_us: 0,
        n2m_p99_us: 0,
    });
    Ok(())
}

/// What the streams of one process saw so far.
struct Tally {
    first: u32,
    streams: u32,
    /// Per notice not yet seen by every stream: (lot, committed, last arrival, count).
    open: HashMap<u64, (String, i64, i64, u32)>,
    /// Commit to arrival of every (stream, notice) pair, µs.
    latency: hdrhistogram::Histogram<u64>,
}

impl Tally {
    fn line(&self, seq: u64, (lot, committed_us, last_us, count): (String, i64, i64, u32)) -> Line {
        Line::Delivered {
            first: self.first,
            streams: self.streams,
            seq,
            lot,
            committed_us,
            last_us,
            count,
        }
    }

    /// One stream received `notice` at `at`; a notice every stream has is reported.
    fn record(&mut self, notice: Notice, at: i64, out: &mpsc::UnboundedSender<Line>) {
        let committed = notice.at.timestamp_micros();
        let _ = self.latency.record((at - committed).max(0) as u64);
        let entry = self
            .open
            .entry(notice.seq)
            .or_insert_with(|| (notice.lot_id, committed, at, 0));
        entry.2 = entry.2.max(at);
        entry.3 += 1;
        if entry.3 >= self.streams
            && let Some(done) = self.open.remove(&notice.seq)
        {
            let _ = out.send(self.line(notice.seq, done));
        }
    }
}

/// `args.count` raw notice streams on the server at `args.url`: each reports `Ready`
/// once its `hello` arrived; notices are summed up in [`Line::Delivered`] (as soon as
/// every stream has one) and [`Line::Latency`] (at exit).
pub async fn streams(
    args: &SubscriberArgs,
    out: &mpsc::UnboundedSender<Line>,
    stop: &Stop,
) -> anyhow::Result<()> {
    let tally = Arc::new(Mutex::new(Tally {
        first: args.first_id,
        streams: args.count,
        open: HashMap::new(),
        latency: histogram(),
    }));
    let url = format!("{}/v1/notices", args.url.trim_end_matches('/'));
    let connects = Arc::new(Semaphore::new(CONNECTS_AT_ONCE));
    let mut tasks = Vec::new();
    for i in 0..args.count {
        let sub = args.first_id + i;
        let (url, token, quickack) = (url.clone(), args.token.clone(), args.quickack);
        let (tally, out, stop, connects) =
            (tally.clone(), out.clone(), stop.clone(), connects.clone());
        tasks.push(tokio::spawn(async move {
            let opened = async {
                let _permit = connects.acquire().await;
                open_with_hello(&url, &token, quickack).await
            };
            let mut sse = tokio::select! {
                opened = opened => opened.with_context(|| format!("stream {sub}"))?,
                () = stop.cancelled() => return Ok(()),
            };
            let _ = out.send(Line::Ready {
                sub,
                at_us: now_us(),
                requests: 1,
            });
            let mut events = Vec::new();
            loop {
                let more = tokio::select! {
                    more = sse.read(&mut events) => more?,
                    () = stop.cancelled() => break,
                };
                let at = now_us();
                notices(&mut events, |notice| {
                    let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
                    tally.record(notice, at, &out);
                });
                if !more {
                    anyhow::bail!("stream {sub} ended");
                }
            }
            anyhow::Ok(())
        }));
    }
    let mut failed = 0;
    for task in tasks {
        if let Ok(Err(e)) | Err(e) = task.await.map_err(anyhow::Error::from) {
            failed += 1;
            if failed <= 3 {
                tracing::warn!(error = %format!("{e:#}"), "a notice stream failed");
            }
        }
    }
    let tally = std::mem::replace(
        &mut *tally.lock().unwrap_or_else(|e| e.into_inner()),
        Tally {
            first: args.first_id,
            streams: args.count,
            open: HashMap::new(),
            latency: histogram(),
        },
    );
    let mut left: Vec<_> = tally.open.iter().map(|(s, v)| (*s, v.clone())).collect();
    left.sort_unstable_by_key(|(seq, _)| *seq);
    for (seq, entry) in left {
        let _ = out.send(tally.line(seq, entry));
    }
    for v in tally.latency.iter_recorded() {
        let _ = out.send(Line::Latency {
            first: args.first_id,
            value_us: v.value_iterated_to(),
            count: v.count_at_value(),
        });
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} notice streams failed", args.count);
    }
    Ok(())
}

/// Hand every notice of `events` to `each`, and empty `events`.
fn notices(events: &mut Vec<Event>, mut each: impl FnMut(Notice)) {
    for event in events.drain(..) {
        if event.name == EVENT_NOTICE
            && let Ok(notice) = serde_json::from_str::<Notice>(&event.data)
        {
            each(notice);
        }
    }
}

/// Open a notice stream and read up to its `hello` (the server has registered it).
async fn open_with_hello(url: &str, token: &str, quickack: bool) -> anyhow::Result<RawSse> {
    let mut pause = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let opened = async {
            let mut sse = RawSse::open(url, Some(token), quickack).await?;
            let mut events = Vec::new();
            loop {
                anyhow::ensure!(sse.read(&mut events).await?, "ended before hello");
                if events.iter().any(|e| e.name == EVENT_HELLO) {
                    return Ok(sse);
                }
                events.clear();
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), opened).await {
            Ok(Ok(sse)) => return Ok(sse),
            Ok(Err(e)) if attempt >= OPEN_ATTEMPTS => return Err(e),
            Err(_) if attempt >= OPEN_ATTEMPTS => anyhow::bail!("no hello within 10 s"),
            _ => {}
        }
        attempt += 1;
        // Refused at a limit or the accept queue was full: back off and try again.
        tokio::time::sleep(pause + Duration::from_millis(rand::random_range(0..50))).await;
        pause *= 2;
    }
}
