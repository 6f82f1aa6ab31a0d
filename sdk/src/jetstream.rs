//! Following notices from NATS JetStream instead of the master's notice stream
//! (feature `jetstream`).
//!
//! A master started with `--nats` publishes every log entry to one JetStream stream per
//! epoch (names in [`crate::protocol::jetstream`]). A client built with
//! [`ClientBuilder::jetstream`](crate::ClientBuilder::jetstream) follows that stream
//! with an ordered consumer from its snapshot's sequence + 1, with the same semantics
//! as the master's stream: gaps are caught up from the master's change log, the
//! stream's last sequence (read every heartbeat interval) stands in for the master's
//! heartbeat head, a new epoch marker means a resync, and a reconnect resumes from
//! the cursor without a snapshot. Snapshots and fetches still go to the master (or a
//! terminal server, or memcached).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::error::BuildError;
use crate::protocol::jetstream::{DEFAULT_PREFIX, redact, validate_prefix};

/// Where and how a client follows notices on NATS JetStream.
///
/// ```no_run
/// # fn demo() -> Result<(), lotsync::BuildError> {
/// use lotsync::JetStreamNotices;
/// let client = lotsync::Client::builder("http://master:8080")
///     .token("terminal-token")
///     .jetstream(JetStreamNotices::new(["nats://nats-1:4222", "nats://nats-2:4222"]))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JetStreamNotices {
    servers: Vec<String>,
    prefix: String,
    heartbeat: Duration,
    /// One connection for the client's life: the NATS client reconnects by itself, and
    /// each new consumer of a reconnect reuses it.
    connection: Arc<OnceCell<async_nats::Client>>,
}

impl fmt::Debug for JetStreamNotices {
    /// Passwords in server URLs are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers.iter().map(|s| redact(s)).collect();
        f.debug_struct("JetStreamNotices")
            .field("servers", &servers)
            .field("prefix", &self.prefix)
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

impl JetStreamNotices {
    /// Follow the streams on these NATS servers (`nats://[USER:PASSWORD@]HOST:PORT`,
    /// `tls://...` or `HOST:PORT`; members of one cluster), with the default prefix.
    ///
    /// ```
    /// let source = lotsync::JetStreamNotices::new(["nats://127.0.0.1:4222"]);
    /// ```
    pub fn new<I, S>(servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        JetStreamNotices {
            servers: servers.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            heartbeat: Duration::from_secs(2),
            connection: Arc::new(OnceCell::new()),
        }
    }

    /// The prefix the master publishes under (its `--nats-prefix`; default `lotsync`).
    ///
    /// ```
    /// let source = lotsync::JetStreamNotices::new(["nats://127.0.0.1:4222"]).prefix("house-b");
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often the stream's last sequence and the epoch marker are read (default
    /// 2 s): a notice missed for longer than two intervals is caught up.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let source = lotsync::JetStreamNotices::new(["nats://127.0.0.1:4222"])
    ///     .heartbeat(Duration::from_millis(500));
    /// ```
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    pub(crate) fn prefix_str(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.heartbeat
    }

    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let invalid = |reason: String| BuildError::InvalidOption {
            option: "jetstream",
            reason,
        };
        if self.servers.is_empty() {
            return Err(invalid("at least one NATS server".into()));
        }
        for server in &self.servers {
            server.parse::<async_nats::ServerAddr>().map_err(|e| {
                invalid(format!(
                    "{:?} is not a NATS server address: {e}",
                    redact(server)
                ))
            })?;
        }
        validate_prefix(&self.prefix).map_err(|e| invalid(format!("prefix: {}", e.message)))?;
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.heartbeat) {
            return Err(invalid("heartbeat between 10 ms and an hour".into()));
        }
        Ok(())
    }

    /// The connection, opened on first use.
    pub(crate) async fn client(&self) -> Result<async_nats::Client, String> {
        self.connection
            .get_or_try_init(|| async {
                let servers = self
                    .servers
                    .iter()
                    .map(|s| s.parse::<async_nats::ServerAddr>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                async_nats::ConnectOptions::new()
                    .name("lotsync-client")
                    .connection_timeout(Duration::from_secs(5))
                    .connect(servers)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_passwords_hidden() {
        let source = JetStreamNotices::new(["nats://u:s3cret@127.0.0.1:4222"]);
        assert!(!format!("{source:?}").contains("s3cret"));
        assert!(source.validate().is_ok());
        assert!(
            JetStreamNotices::new(Vec::<String>::new())
                .validate()
                .is_err()
        );
        assert!(source.clone().prefix("a.b").validate().is_err());
        assert!(
            source
                .clone()
                .heartbeat(Duration::from_millis(1))
                .validate()
                .is_err()
        );
        assert!(JetStreamNotices::new(["nats://h:port"]).validate().is_err());
    }
}
