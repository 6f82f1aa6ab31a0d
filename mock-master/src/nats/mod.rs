//! Publishing the operation log to NATS JetStream (`--nats`), so terminal servers in
//! many halls follow a replicated stream instead of the master's own notice streams.
//!
//! - this file: [`NatsOptions`] (servers, prefix, replicas, limits) and their checks.
//! - [`publisher`]: the task that publishes every log entry once, in order, from the
//!   stream's last sequence on, and repairs a crash between commit and publish.
//! - [`status`]: how far the publisher is, for `/healthz`.
//!
//! Names (streams, subjects, the epoch marker) are in
//! [`lotsync::protocol::jetstream`], shared with the SDK that follows them.

pub mod publisher;
pub mod status;

use std::fmt;
use std::time::Duration;

/// Where and how the log is published.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// NATS servers (`nats://HOST:PORT`, `tls://HOST:PORT`, or `HOST:PORT`); the client
    /// connects to one and fails over to the others. `USER:PASSWORD@` in a URL is
    /// used to authenticate and never shown.
    pub servers: Vec<String>,
    /// First token of every subject and stream name.
    pub prefix: String,
    /// Copies of each stream (1 on a single server, 3 on a cluster; at most 5).
    pub replicas: usize,
    /// Notices older than this leave the stream (zero: kept until `max_messages`).
    pub max_age: Duration,
    /// Most notices a stream keeps; the oldest leave first.
    pub max_messages: i64,
    /// Epoch streams kept, the current one included (at least 1): when a master starts
    /// a new history, streams of older ones beyond this are deleted.
    pub keep_epochs: usize,
}

impl Default for NatsOptions {
    /// No servers, prefix `lotsync`, one replica, a week, ten million notices, the
    /// current and the previous epoch's streams.
    fn default() -> Self {
        NatsOptions {
            servers: Vec::new(),
            prefix: lotsync::protocol::jetstream::DEFAULT_PREFIX.to_owned(),
            replicas: 1,
            max_age: Duration::from_secs(7 * 86_400),
            max_messages: 10_000_000,
            keep_epochs: 2,
        }
    }
}

impl fmt::Debug for NatsOptions {
    /// Passwords in server URLs are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers.iter().map(|s| redact(s)).collect();
        f.debug_struct("NatsOptions")
            .field("servers", &servers)
            .field("prefix", &self.prefix)
            .field("replicas", &self.replicas)
            .field("max_age", &self.max_age)
            .field("max_messages", &self.max_messages)
            .field("keep_epochs", &self.keep_epochs)
            .finish()
    }
}

impl NatsOptions {
    /// Check the settings; the error names the one at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("--nats needs at least one server".into());
        }
        for server in &self.servers {
            server.parse::<async_nats::ServerAddr>().map_err(|e| {
                format!(
                    "--nats: {:?} is not a NATS server address: {e}",
                    redact(server)
                )
            })?;
        }
        lotsync::protocol::jetstream::validate_prefix(&self.prefix)
            .map_err(|e| format!("--nats-prefix: {}", e.message))?;
        if !(1..=5).contains(&self.replicas) {
            return Err("--nats-replicas must be between 1 and 5".into());
        }
        if self.max_messages < 1 {
            return Err("--nats-max-messages must be at least 1".into());
        }
        if !(1..=100).contains(&self.keep_epochs) {
            return Err("--nats-keep-epochs must be between 1 and 100".into());
        }
        Ok(())
    }
}

/// Addresses shown in logs and errors hide their passwords (one rule for the master
/// and the SDK).
pub use lotsync::protocol::jetstream::redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_and_settings_are_checked() {
        assert_eq!(redact("nats://u:secret@h:4222"), "nats://u:***@h:4222");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
        let options = NatsOptions {
            servers: vec!["nats://u:secret@127.0.0.1:4222".into()],
            ..Default::default()
        };
        assert!(!format!("{options:?}").contains("secret"));
        assert!(options.validate().is_ok());
        for bad in [
            NatsOptions::default(),
            NatsOptions {
                replicas: 7,
                ..options.clone()
            },
            NatsOptions {
                prefix: "a.b".into(),
                ..options.clone()
            },
            NatsOptions {
                servers: vec!["nats://h:notaport".into()],
                ..options.clone()
            },
            NatsOptions {
                keep_epochs: 0,
                ..options.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
