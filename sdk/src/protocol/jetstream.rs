//! Names and bodies of the notice log on NATS JetStream, shared by the master that
//! publishes it and the clients that follow it.
//!
//! One JetStream stream per epoch holds that history's notices, so stream sequence N
//! *is* lotsync sequence N and two histories never share a stream:
//!
//! | what | name |
//! |---|---|
//! | stream of epoch E | `{prefix}_N_{E}` |
//! | its subjects | `{prefix}.{E}.lot.{lot_id}` |
//! | stream of the current epoch's marker | `{prefix}_EPOCH` (one message kept) |
//! | marker subject | `{prefix}.epoch` ([`EpochMarker`]) |
//!
//! The prefix is 1–32 characters of `A-Z a-z 0-9 -` (no `_`, so the first `_` of a
//! stream name ends the prefix and names never collide); an epoch is escaped into a
//! subject token ([`epoch_token`]).
//!
//! ```
//! use lotsync::protocol::jetstream;
//! let epoch = "3f2a9c";
//! assert_eq!(jetstream::stream_name("lotsync", epoch), "lotsync_N_3f2a9c");
//! assert_eq!(jetstream::notice_subject("lotsync", epoch, "lot-7"), "lotsync.3f2a9c.lot.lot-7");
//! assert_eq!(jetstream::notice_filter("lotsync", epoch), "lotsync.3f2a9c.lot.*");
//! assert_eq!(jetstream::epoch_subject("lotsync"), "lotsync.epoch");
//! assert!(jetstream::validate_prefix("lot.sync").is_err());
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{FieldError, Seq};

/// Prefix of subjects and stream names when none is configured.
pub const DEFAULT_PREFIX: &str = "lotsync";

/// Header carrying the message id JetStream deduplicates on: `{epoch}:{seq}`.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Longest prefix accepted.
pub const MAX_PREFIX_LEN: usize = 32;

/// Check a prefix: 1–32 characters of `A-Z a-z 0-9 -`.
///
/// ```
/// assert!(lotsync::protocol::jetstream::validate_prefix("hall-7").is_ok());
/// assert!(lotsync::protocol::jetstream::validate_prefix("a_b").is_err());
/// ```
pub fn validate_prefix(prefix: &str) -> Result<(), FieldError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "prefix",
            format!("1-{MAX_PREFIX_LEN} characters of A-Z, a-z, 0-9 and -"),
        ))
    }
}

/// An epoch as one subject token (and stream-name part): `A-Z a-z 0-9 -` pass, every
/// other byte becomes `_` and two hex digits, so distinct epochs stay distinct.
///
/// ```
/// use lotsync::protocol::jetstream::epoch_token;
/// assert_eq!(epoch_token("ab12"), "ab12");
/// assert_eq!(epoch_token("a.b_c"), "a_2eb_5fc");
/// ```
pub fn epoch_token(epoch: &str) -> String {
    let mut token = String::with_capacity(epoch.len());
    for byte in epoch.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            token.push(byte as char);
        } else {
            token.push_str(&format!("_{byte:02x}"));
        }
    }
    token
}

/// The stream holding epoch `epoch`'s notices.
pub fn stream_name(prefix: &str, epoch: &str) -> String {
    format!("{prefix}_N_{}", epoch_token(epoch))
}

/// The subject of a notice of `lot_id` (a valid lot id is a valid subject token).
pub fn notice_subject(prefix: &str, epoch: &str, lot_id: &str) -> String {
    format!("{prefix}.{}.lot.{lot_id}", epoch_token(epoch))
}

/// Every notice subject of epoch `epoch` (the stream's subject).
pub fn notice_filter(prefix: &str, epoch: &str) -> String {
    format!("{prefix}.{}.lot.*", epoch_token(epoch))
}

/// The stream keeping the last [`EpochMarker`].
pub fn epoch_stream(prefix: &str) -> String {
    format!("{prefix}_EPOCH")
}

/// The subject the master announces its epoch on.
pub fn epoch_subject(prefix: &str) -> String {
    format!("{prefix}.epoch")
}

/// The id JetStream deduplicates a notice on.
pub fn message_id(epoch: &str, seq: Seq) -> String {
    format!("{epoch}:{seq}")
}

/// The master's announcement of the history it publishes (subject
/// [`epoch_subject`]): published when it starts publishing, kept as the last message.
/// A follower that sees another epoch than its own resynchronises.
///
/// ```
/// let marker: lotsync::protocol::jetstream::EpochMarker =
///     serde_json::from_str(r#"{"epoch":"e1","stream":"lotsync_N_e1","at":"2026-01-01T00:00:00Z"}"#).unwrap();
/// assert_eq!(marker.epoch, "e1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochMarker {
    /// The epoch now published.
    pub epoch: String,
    /// The stream its notices go to.
    pub stream: String,
    /// When the master started publishing it.
    pub at: DateTime<Utc>,
}

/// A NATS server address for logs and errors: any password replaced by `***`.
///
/// ```
/// use lotsync::protocol::jetstream::redact;
/// assert_eq!(redact("nats://u:secret@h:4222"), "nats://u:***@h:4222");
/// assert_eq!(redact("u:secret@h:4222"), "***@h:4222");
/// assert_eq!(redact("nats://h:4222"), "nats://h:4222");
/// ```
pub fn redact(server: &str) -> String {
    match (server.find("://"), server.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = server[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &server[..scheme + 3], &server[at..])
        }
        (None, Some(at)) => format!("***{}", &server[at..]),
        _ => server.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_injective_and_subject_safe() {
        let epochs = ["a.b", "a_2eb", "a b", "a*b", "a>b", "ab", "a_b"];
        let tokens: std::collections::BTreeSet<String> =
            epochs.iter().map(|e| epoch_token(e)).collect();
        assert_eq!(tokens.len(), epochs.len());
        for token in &tokens {
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
                "{token}"
            );
        }
    }

    #[test]
    fn prefixes_are_checked() {
        for bad in ["", "a.b", "a_b", "a b", "*", &"x".repeat(33)] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(validate_prefix("Lotsync-2").is_ok());
        assert_ne!(stream_name("a", "EPOCH"), epoch_stream("a"));
    }
}
