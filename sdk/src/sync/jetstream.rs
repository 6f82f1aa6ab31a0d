//! The sync task's notice source on NATS JetStream: one connection's worth of
//! following, with the same cursor, gap, catch-up and resync logic as the master's
//! stream (it calls the same methods of [`SyncTask`]).
//!
//! - Which history: the epoch marker (`{prefix}.epoch`, last message kept) names the
//!   epoch being published; a client whose snapshot is of another epoch resyncs, and
//!   a marker that changes while following means a resync and a switch of stream.
//! - Notices: an ordered consumer on the epoch's stream from `cursor + 1`. The stream
//!   sequence equals the notice's sequence; a message where they differ is malformed.
//! - Heartbeats: every interval, the stream's last sequence is read. If a whole
//!   interval passed without a message while the cursor is still short of the last
//!   sequence read one interval earlier, the consumer is stuck (a NATS server came back
//!   and the consumer has not noticed yet): a new one starts from the cursor. If that
//!   one is stuck too, or the stream no longer holds the notices after the cursor,
//!   they are caught up from the master's change log. (A consumer still delivering a
//!   backlog is not stuck; a notice that left the stream shows as a jump in sequence,
//!   handled like any jump.)
//! - Reconnect: the NATS client reconnects by itself; a consumer that fails ends this
//!   connection, and the next one resumes from the cursor without a snapshot.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use tracing::{debug, info, warn};

use super::{Ended, SyncTask};
use crate::jetstream::JetStreamNotices;
use crate::metrics::Metrics;
use crate::protocol::jetstream::{
    EpochMarker, epoch_stream, epoch_subject, notice_filter, stream_name,
};
use crate::protocol::{Notice, validate_lot_id};
use crate::state::ConnectionState;

/// How long a JetStream request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How one stream's following ended.
enum Next {
    /// The marker names another epoch and the mirror was resynchronised to it.
    NewEpoch,
    /// The consumer is stuck: start a new one from the cursor.
    Restart,
    /// Reconnect or shut down.
    End(Ended),
}

impl From<Ended> for Next {
    fn from(ended: Ended) -> Next {
        Next::End(ended)
    }
}

impl SyncTask {
    /// Follow notices on JetStream until the connection ends.
    pub(super) async fn follow_jetstream(&mut self, source: &JetStreamNotices) -> Ended {
        let client = tokio::select! {
            _ = self.cancel.cancelled() => return Ended::Shutdown,
            client = source.client() => match client {
                Ok(client) => client,
                Err(error) => return Ended::Reconnect(format!("cannot reach NATS: {error}")),
            },
        };
        let js = jetstream::context::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        let mut restarted = false;
        loop {
            match self.follow_epoch(source, &client, &js, restarted).await {
                Next::NewEpoch => restarted = false,
                Next::Restart => restarted = true,
                Next::End(ended) => return ended,
            }
        }
    }

    /// The epoch the master publishes now.
    async fn published_epoch(
        &self,
        js: &jetstream::Context,
        prefix: &str,
    ) -> Result<EpochMarker, String> {
        let markers = js
            .get_stream_no_info(epoch_stream(prefix))
            .await
            .map_err(|e| format!("epoch marker stream: {e}"))?;
        // A direct get, answered by the stream itself once it exists. Not the
        // `STREAM.MSG.GET` API: nats-server 2.9 (Debian's) dereferences a nil stream and
        // exits when that request meets a stream the master is still creating, which is
        // what a follower started with its master asks first.
        let message = markers
            .direct_get_last_for_subject(epoch_subject(prefix))
            .await
            .map_err(|e| format!("epoch marker: {e}"))?;
        self.parse_marker(&message.payload)
            .ok_or_else(|| "malformed epoch marker".to_owned())
    }

    fn parse_marker(&self, payload: &[u8]) -> Option<EpochMarker> {
        match serde_json::from_slice::<EpochMarker>(payload) {
            Ok(marker) => Some(marker),
            Err(error) => {
                Metrics::inc(&self.metrics.malformed_events);
                warn!(%error, "malformed epoch marker ignored");
                None
            }
        }
    }

    /// Follow the stream of the published epoch from the cursor on.
    async fn follow_epoch(
        &mut self,
        source: &JetStreamNotices,
        client: &async_nats::Client,
        js: &jetstream::Context,
        mut restarted: bool,
    ) -> Next {
        let prefix = source.prefix_str();
        let marker = tokio::select! {
            _ = self.cancel.cancelled() => return Ended::Shutdown.into(),
            marker = self.published_epoch(js, prefix) => match marker {
                Ok(marker) => marker,
                Err(error) => return Ended::Reconnect(error).into(),
            },
        };
        if self.epoch.as_deref() != Some(marker.epoch.as_str()) {
            info!("JetStream carries another epoch; resynchronising");
            if let Err(ended) = self.resync_inline().await {
                return ended.into();
            }
            if self.epoch.as_deref() != Some(marker.epoch.as_str()) {
                // The master's snapshot is of a history not (or no longer) published:
                // it restarted and its publisher has not announced the new one yet.
                return Ended::Reconnect("the master and JetStream are at different epochs".into())
                    .into();
            }
        }
        let epoch = marker.epoch;
        let mut markers = match client.subscribe(epoch_subject(prefix)).await {
            Ok(subscriber) => subscriber,
            Err(error) => {
                return Ended::Reconnect(format!("epoch marker subscription: {error}")).into();
            }
        };
        let mut stream = match js.get_stream(stream_name(prefix, &epoch)).await {
            Ok(stream) => stream,
            Err(error) => return Ended::Reconnect(format!("notice stream: {error}")).into(),
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: notice_filter(prefix, &epoch),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.cursor + 1,
                },
                ..Default::default()
            })
            .await;
        let mut messages = match consumer {
            Ok(consumer) => match consumer.messages().await {
                Ok(messages) => messages,
                Err(error) => return Ended::Reconnect(format!("consumer: {error}")).into(),
            },
            Err(error) => return Ended::Reconnect(format!("consumer: {error}")).into(),
        };
        debug!(epoch = %epoch, from = self.cursor + 1, "following JetStream");
        self.down_since = None;
        self.set_state(ConnectionState::Live);

        let interval = source.heartbeat_interval();
        let idle_timeout = self
            .options
            .idle_timeout
            .unwrap_or(interval.saturating_mul(3));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The stream's last sequence at the previous tick: everything up to it must have
        // arrived by now.
        let mut previous_head = None;
        let mut last_heard = Instant::now();
        // Whether a message arrived since the previous tick.
        let mut delivering = false;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Ended::Shutdown.into(),
                message = messages.next() => match message {
                    None => return Ended::Reconnect("the consumer ended".into()).into(),
                    Some(Err(error)) => return Ended::Reconnect(format!("consumer: {error}")).into(),
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        delivering = true;
                        if let Err(ended) = self.on_stream_message(&message).await {
                            return ended.into();
                        }
                    }
                },
                marker = markers.next() => {
                    let Some(marker) = marker else {
                        return Ended::Reconnect("the epoch marker subscription ended".into()).into();
                    };
                    if let Some(marker) = self.parse_marker(&marker.payload)
                        && marker.epoch != epoch
                    {
                        return self.switch_epoch().await;
                    }
                }
                _ = tick.tick() => {
                    let (first, head) = match stream.info().await {
                        Ok(info) => (info.state.first_sequence, info.state.last_sequence),
                        Err(error) => {
                            if last_heard.elapsed() > idle_timeout {
                                return Ended::Reconnect(format!("JetStream silent for {idle_timeout:?}: {error}")).into();
                            }
                            continue;
                        }
                    };
                    last_heard = Instant::now();
                    Metrics::inc(&self.metrics.heartbeats);
                    // A full interval on this connection: it is healthy.
                    self.attempt = 0;
                    match self.published_epoch(js, prefix).await {
                        Ok(marker) if marker.epoch != epoch => return self.switch_epoch().await,
                        _ => {}
                    }
                    let stalled = !std::mem::take(&mut delivering);
                    if let Some(expected) = previous_head
                        && expected > self.cursor
                        && stalled
                    {
                        let gone = first > self.cursor + 1;
                        if !restarted && !gone {
                            debug!(head = expected, cursor = self.cursor, "consumer stuck; starting a new one");
                            return Next::Restart;
                        }
                        Metrics::inc(&self.metrics.gaps);
                        debug!(head = expected, cursor = self.cursor, "stream ahead of notices; catching up");
                        if let Err(ended) = self.catch_up(expected).await {
                            return ended.into();
                        }
                    }
                    if !stalled {
                        restarted = false;
                    }
                    previous_head = Some(head);
                }
            }
        }
    }

    /// The master publishes another epoch: resync to it, then follow its stream.
    async fn switch_epoch(&mut self) -> Next {
        info!("JetStream announced a new epoch; resynchronising");
        match self.resync_inline().await {
            Ok(()) => Next::NewEpoch,
            Err(ended) => ended.into(),
        }
    }

    /// One stored notice: check it, then hand it to the cursor logic.
    async fn on_stream_message(&mut self, message: &jetstream::Message) -> Result<(), Ended> {
        let Ok(info) = message.info() else {
            Metrics::inc(&self.metrics.malformed_events);
            warn!("a JetStream message without stream metadata was ignored");
            return Ok(());
        };
        let stream_seq = info.stream_sequence;
        let Some(mut notice) = self.parse_notice(&message.payload) else {
            return Ok(());
        };
        if notice.seq != stream_seq || validate_lot_id(&notice.lot_id).is_err() {
            Metrics::inc(&self.metrics.malformed_events);
            warn!(
                seq = notice.seq,
                stream_seq, "notice with a bad sequence or lot id ignored"
            );
            return Ok(());
        }
        // The master publishes no lots on the stream; one that carries a lot did not
        // come from it, and data only ever comes from a fetch.
        notice.lot = None;
        self.on_notice(notice).await
    }

    fn parse_notice(&self, payload: &[u8]) -> Option<Notice> {
        match serde_json::from_slice(payload) {
            Ok(notice) => Some(notice),
            Err(error) => {
                Metrics::inc(&self.metrics.malformed_events);
                warn!(%error, bytes = payload.len(), "malformed notice ignored");
                None
            }
        }
    }
}
