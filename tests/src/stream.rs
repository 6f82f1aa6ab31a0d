//! Reading what a master published to JetStream, and checking it against the master's
//! own log: every entry once, in order, at its own sequence, on its lot's subject.

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use lotsync::protocol::jetstream::{MSG_ID_HEADER, message_id, notice_subject, stream_name};
use lotsync::protocol::{Notice, Seq};

/// A message of the notice stream.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its stream sequence.
    pub stream_seq: Seq,
    /// Its subject.
    pub subject: String,
    /// Its `Nats-Msg-Id`.
    pub msg_id: Option<String>,
    /// The notice it carries.
    pub notice: Notice,
}

/// First sequence, last sequence and message count of epoch `epoch`'s stream.
pub async fn state(
    client: &async_nats::Client,
    prefix: &str,
    epoch: &str,
) -> anyhow::Result<(Seq, Seq, u64)> {
    let js = jetstream::new(client.clone());
    let mut stream = js.get_stream(stream_name(prefix, epoch)).await?;
    let info = stream.info().await?;
    Ok((
        info.state.first_sequence,
        info.state.last_sequence,
        info.state.messages,
    ))
}

/// Wait until the stream's last sequence reaches `seq` (true) or `timeout` passes.
pub async fn wait_published(
    client: &async_nats::Client,
    prefix: &str,
    epoch: &str,
    seq: Seq,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok((_, last, _)) = state(client, prefix, epoch).await
            && last >= seq
        {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message of the stream from `from` to `to`, by sequence.
pub async fn read(
    client: &async_nats::Client,
    prefix: &str,
    epoch: &str,
    from: Seq,
    to: Seq,
) -> anyhow::Result<Vec<Stored>> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(stream_name(prefix, epoch)).await?;
    let mut stored = Vec::new();
    for seq in from..=to {
        let message = stream
            .get_raw_message(seq)
            .await
            .with_context(|| format!("stream message {seq}"))?;
        let notice: Notice = serde_json::from_slice(&message.payload)
            .with_context(|| format!("stream message {seq} is not a notice"))?;
        stored.push(Stored {
            stream_seq: message.sequence,
            subject: message.subject.to_string(),
            msg_id: message
                .headers
                .get(MSG_ID_HEADER)
                .map(|v| v.as_str().to_owned()),
            notice,
        });
    }
    Ok(stored)
}

/// Check that `stored` is exactly `log` (the master's entries 1..=head, in order): each
/// entry once, at its own stream sequence, on its lot's subject, with its message id.
pub fn check_exactly_once(
    prefix: &str,
    epoch: &str,
    stored: &[Stored],
    log: &[Notice],
) -> anyhow::Result<()> {
    if stored.len() != log.len() {
        bail!(
            "the stream holds {} messages, the log {} entries",
            stored.len(),
            log.len()
        );
    }
    for (i, (s, entry)) in stored.iter().zip(log).enumerate() {
        let expected = i as Seq + 1;
        if s.stream_seq != expected || s.notice.seq != expected || entry.seq != expected {
            bail!(
                "position {expected}: stream seq {}, notice seq {}, log seq {}",
                s.stream_seq,
                s.notice.seq,
                entry.seq
            );
        }
        if s.notice.lot_id != entry.lot_id || s.notice.kind != entry.kind {
            bail!(
                "entry {expected} differs: stream {:?}, log {entry:?}",
                s.notice
            );
        }
        if s.subject != notice_subject(prefix, epoch, &entry.lot_id) {
            bail!("entry {expected} on subject {}", s.subject);
        }
        if s.msg_id.as_deref() != Some(message_id(epoch, expected).as_str()) {
            bail!("entry {expected} has message id {:?}", s.msg_id);
        }
    }
    Ok(())
}
