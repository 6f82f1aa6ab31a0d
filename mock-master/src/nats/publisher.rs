//! The task that publishes the operation log to JetStream.
//!
//! It publishes from the log itself, never from a commit's callback: at every (re)start
//! it reads the last sequence L of its epoch's stream and publishes entries L+1, L+2, …
//! from the store (the in-memory ring, or the primary's log for older entries), then
//! follows the log's head. So an entry committed just before a crash is published after
//! the restart, and nothing depends on the master surviving between commit and publish.
//!
//! Exactly once, in order: each message carries `Nats-Msg-Id: {epoch}:{seq}` (the
//! server drops a repeat within its duplicate window) and `Nats-Expected-Last-Sequence:
//! seq-1` (the server refuses a message that would not land right after its
//! predecessor). The stream sequence therefore equals the lotsync sequence; a refused
//! publish ends the session, which starts again from the stream's actual last sequence.
//!
//! The primary keeps every entry not yet published (up to a bound) so a NATS outage
//! costs a delay, not notices. If entries were pruned before they could be published
//! (an outage longer than that bound), the stream skips them (its first sequence moves
//! past them) and followers see the jump, catch up from the master or resynchronise.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use chrono::Utc;
use futures::TryStreamExt;
use lotsync::protocol::jetstream::{
    EpochMarker, epoch_stream, epoch_subject, message_id, notice_filter, notice_subject,
    stream_name,
};
use lotsync::protocol::{Notice, Seq};
use tracing::{debug, info, warn};

use super::NatsOptions;
use crate::server::AppState;
use crate::store::StoreError;
use crate::store::backoff::Backoff;

/// Entries read and published in one go (their acknowledgements are awaited together).
const BATCH: usize = 256;

/// How long a JetStream request or acknowledgement may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A session that lasted this long was healthy: the next failure waits the shortest time.
const HEALTHY: Duration = Duration::from_secs(10);

/// Why a publishing session ended.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// NATS or JetStream refused or failed a request.
    #[error("JetStream: {0}")]
    Nats(String),
    /// The store could not read the log.
    #[error("reading the log: {0}")]
    Store(#[from] StoreError),
    /// The stream holds entries this master's log does not have: another writer, or a
    /// primary restored from an older backup under the same epoch.
    #[error("stream {stream} ends at {last}, beyond this master's head {head}")]
    StreamAhead {
        /// Stream name.
        stream: String,
        /// Its last sequence.
        last: Seq,
        /// The log's head.
        head: Seq,
    },
    /// The server stored a message at another sequence than its lotsync sequence.
    #[error("entry {seq} was stored at stream sequence {stored}")]
    Misplaced {
        /// The entry's sequence.
        seq: Seq,
        /// Where the stream put it.
        stored: Seq,
    },
}

fn nats(error: impl std::fmt::Display) -> PublishError {
    PublishError::Nats(error.to_string())
}

/// Publish the log until shutdown, reconnecting with jittered backoff after any failure.
pub async fn run(state: AppState) {
    let Some(options) = state.config.nats.clone() else {
        return;
    };
    let mut client: Option<async_nats::Client> = None;
    let mut backoff = Backoff::new();
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            outcome = session(&state, &options, &mut client) => outcome,
        };
        let Err(error) = outcome else { break };
        state.jetstream.session_failed();
        state.metrics.jetstream_error();
        if started.elapsed() > HEALTHY {
            backoff = Backoff::new();
        }
        let wait = backoff.next_wait();
        warn!(%error, retry_in = ?wait, "publishing to JetStream stopped");
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if let Some(client) = client {
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, client.flush()).await;
    }
}

async fn connect(options: &NatsOptions) -> Result<async_nats::Client, PublishError> {
    let servers = options
        .servers
        .iter()
        .map(|s| s.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(nats)?;
    async_nats::ConnectOptions::new()
        .name("lotsync-master")
        .connection_timeout(REQUEST_TIMEOUT)
        .connect(servers)
        .await
        .map_err(nats)
}

/// The stream of `epoch`'s notices.
pub fn stream_config(options: &NatsOptions, epoch: &str) -> stream::Config {
    stream::Config {
        name: stream_name(&options.prefix, epoch),
        description: Some(format!("lotsync notices of epoch {epoch}")),
        subjects: vec![notice_filter(&options.prefix, epoch)],
        max_messages: options.max_messages,
        max_age: options.max_age,
        num_replicas: options.replicas,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(120).min(if options.max_age.is_zero() {
            Duration::MAX
        } else {
            options.max_age
        }),
        allow_direct: true,
        deny_delete: true,
        ..Default::default()
    }
}

/// The stream keeping the last epoch marker.
fn epoch_stream_config(options: &NatsOptions) -> stream::Config {
    stream::Config {
        name: epoch_stream(&options.prefix),
        description: Some("lotsync: the epoch the master publishes".into()),
        subjects: vec![epoch_subject(&options.prefix)],
        max_messages_per_subject: 1,
        num_replicas: options.replicas,
        storage: stream::StorageType::File,
        allow_direct: true,
        ..Default::default()
    }
}

/// One connection's worth of publishing: set up the streams, find where the stream
/// ends, publish from there on. Returns `Ok` only at shutdown.
async fn session(
    state: &AppState,
    options: &NatsOptions,
    client: &mut Option<async_nats::Client>,
) -> Result<(), PublishError> {
    let nats_client = match client {
        Some(c) => c.clone(),
        None => {
            let c = connect(options).await?;
            *client = Some(c.clone());
            c
        }
    };
    let js = jetstream::context::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(nats_client);
    let tail = state.store.log_tail().clone();
    let epoch = tail.epoch().to_owned();
    let name = stream_name(&options.prefix, &epoch);
    js.create_or_update_stream(stream_config(options, &epoch))
        .await
        .map_err(nats)?;
    js.create_or_update_stream(epoch_stream_config(options))
        .await
        .map_err(nats)?;
    let mut stream = js.get_stream(&name).await.map_err(nats)?;
    let last = stream.info().await.map_err(nats)?.state.last_sequence;
    let head = tail.head();
    if last > head {
        return Err(PublishError::StreamAhead {
            stream: name,
            last,
            head,
        });
    }
    tail.hold_from(last);
    // Announced once the stream exists, so a follower that sees the marker finds it.
    let marker = EpochMarker {
        epoch: epoch.clone(),
        stream: name.clone(),
        at: Utc::now(),
    };
    let payload = serde_json::to_vec(&marker).expect("a marker serialises");
    js.publish(epoch_subject(&options.prefix), payload.into())
        .await
        .map_err(nats)?
        .await
        .map_err(nats)?;
    info!(stream = %name, last, head, "publishing the log to JetStream");
    // Only once the new epoch is announced: followers of an older one switch to it.
    if let Err(error) = retire_old_epochs(&js, options, &name).await {
        warn!(%error, "could not delete the streams of older epochs; they age out");
    }
    state.jetstream.session_started(last);

    let mut position = last;
    let mut head_rx = tail.watch_head();
    let mut paused = state.chaos.publisher_paused();
    loop {
        if *paused.borrow_and_update() {
            tokio::select! {
                _ = state.shutdown.cancelled() => return Ok(()),
                _ = paused.changed() => continue,
            }
        }
        head_rx.borrow_and_update();
        if tail.head() <= position {
            tokio::select! {
                _ = state.shutdown.cancelled() => return Ok(()),
                _ = head_rx.changed() => {}
                _ = paused.changed() => {}
            }
            continue;
        }
        let entries = state.store.log_entries(position, BATCH).await?;
        if entries.first().map(|e| e.seq) != Some(position + 1) {
            position = skip_pruned(state, &stream, position).await?;
            state.jetstream.published(position);
            tail.hold_from(position);
            continue;
        }
        position = publish_batch(state, &js, options, &epoch, position, entries).await?;
        state.jetstream.published(position);
        tail.hold_from(position);
    }
}

/// Delete the notice streams of older epochs beyond `keep_epochs` (the current stream
/// counts as one), newest kept first. Returns the names deleted.
async fn retire_old_epochs(
    js: &jetstream::Context,
    options: &NatsOptions,
    current: &str,
) -> Result<Vec<String>, PublishError> {
    // Prefixes have no `_`, so this matches this prefix's epoch streams only.
    let family = stream_name(&options.prefix, "");
    let mut older = Vec::new();
    let mut streams = js.streams();
    while let Some(info) = streams.try_next().await.map_err(nats)? {
        if info.config.name.starts_with(&family) && info.config.name != current {
            older.push((info.created, info.config.name));
        }
    }
    older.sort_unstable_by(|a, b| b.cmp(a));
    let retired: Vec<String> = older
        .into_iter()
        .skip(options.keep_epochs.saturating_sub(1))
        .map(|(_, name)| name)
        .collect();
    for name in &retired {
        js.delete_stream(name).await.map_err(nats)?;
        info!(stream = %name, "deleted the stream of an older epoch");
    }
    Ok(retired)
}

/// Publish `entries` (continuing `position`) pipelined, then await every acknowledgement
/// in order. Returns the new position.
async fn publish_batch(
    state: &AppState,
    js: &jetstream::Context,
    options: &NatsOptions,
    epoch: &str,
    position: Seq,
    entries: Vec<Notice>,
) -> Result<Seq, PublishError> {
    let mut acks = Vec::with_capacity(entries.len());
    for entry in &entries {
        let payload = serde_json::to_vec(entry).expect("a notice serialises");
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(message_id(epoch, entry.seq))
            .expected_last_sequence(entry.seq - 1);
        let subject = notice_subject(&options.prefix, epoch, &entry.lot_id);
        let ack = js.send_publish(subject, message).await.map_err(nats)?;
        acks.push((entry.seq, ack));
    }
    let mut position = position;
    for (seq, ack) in acks {
        let ack = match ack.await {
            Ok(ack) => ack,
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                // Someone else moved the stream (or an earlier ack was lost but the
                // message stored): start again from the stream's real end.
                return Err(nats(format!("entry {seq}: {error}")));
            }
            Err(error) => return Err(nats(format!("entry {seq}: {error}"))),
        };
        if ack.sequence != seq {
            return Err(PublishError::Misplaced {
                seq,
                stored: ack.sequence,
            });
        }
        if ack.duplicate {
            debug!(seq, "entry was already in the stream");
        }
        state.metrics.jetstream_published();
        position = seq;
    }
    Ok(position)
}

/// The log no longer holds the entry after `position` (pruned before it could be
/// published): move the stream's start past the gap so sequences stay aligned, and
/// return the new position.
async fn skip_pruned(
    state: &AppState,
    stream: &jetstream::stream::Stream,
    position: Seq,
) -> Result<Seq, PublishError> {
    let (oldest, head) = state.store.log_bounds().await?;
    if oldest <= position + 1 || oldest == 0 {
        return Err(PublishError::Store(StoreError::Corrupt(format!(
            "log entry {} is missing (log holds {oldest}..={head})",
            position + 1
        ))));
    }
    warn!(
        from = position + 1,
        to = oldest - 1,
        "log entries were pruned before they were published; the stream skips them"
    );
    stream.purge().sequence(oldest).await.map_err(nats)?;
    Ok(oldest - 1)
}
