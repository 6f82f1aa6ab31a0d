//! Settings of one master, shared by the binary's flags and the library's builder.

use std::fmt;
use std::time::Duration;

use lotsync::protocol::ChaosSettings;

pub use crate::store::Storage;
use crate::store::StoreOptions;
pub use crate::store::engine::DbUrl;

/// Everything a master needs to start.
#[derive(Clone)]
pub struct MasterConfig {
    /// Where the primary and replica databases live (SQLite files), unless
    /// [`MasterConfig::primary`] or [`MasterConfig::replica`] name another database.
    pub storage: Storage,
    /// The first database (SQLite file, PostgreSQL or MariaDB); `None`: `primary.db`
    /// under `storage`.
    pub primary: Option<DbUrl>,
    /// The second database, the one fetches read; `None`: `replica.db` under `storage`.
    pub replica: Option<DbUrl>,
    /// Bearer token of the admin role.
    pub admin_token: String,
    /// Bearer token of the terminal role (terminal servers reading notices and lots).
    pub terminal_token: String,
    /// Bidders as `(name, token)`.
    pub bidders: Vec<(String, String)>,
    /// Interval between heartbeats on notice streams.
    pub heartbeat: Duration,
    /// Longest a fetch waits for the replica to reach `min_seq` before answering 503.
    pub fetch_wait: Duration,
    /// A bid this close to the end moves the end to now plus this; zero turns it off.
    pub anti_snipe: Duration,
    /// Log entries retained for resume and catch-up.
    pub log_retention: usize,
    /// Load the demo catalogue and keep an auction running.
    pub demo: bool,
    /// Number of bot bidders placing bids on open lots.
    pub simulated_bidders: usize,
    /// Fault injection: `None` disables it (the chaos endpoints answer 404), `Some`
    /// enables it with these initial settings.
    pub chaos: Option<ChaosSettings>,
    /// Seed of every random choice the master makes (faults, demo, bots).
    pub seed: Option<u64>,
    /// memcached servers (`HOST:PORT`) to keep warm with every lot (claim 6); empty: none.
    pub memcached: Vec<String>,
    /// Publish the operation log to NATS JetStream; `None`: not published.
    pub nats: Option<crate::nats::NatsOptions>,
    /// Required by `/metrics` when set (the admin token is accepted too).
    pub metrics_token: Option<String>,
    /// Bounds on connections, notice streams and requests (past them: 503).
    pub limits: lotsync::serve::Limits,
    /// How long an idempotency key is remembered (a retry within it gets the first
    /// answer; older keys are deleted).
    pub idempotency_retention: Duration,
    /// Writes that may wait for the writer; more get 503 at once.
    pub writer_queue: usize,
    /// Connections the master opens at most to the replica for fetches (and as many to
    /// the primary for its own reads).
    pub read_connections: usize,
    /// Replication lag past which `/healthz` reports replication as stalled; with
    /// `nats`, also how long the JetStream publisher may be down or behind.
    pub replication_stall: Duration,
}

impl Default for MasterConfig {
    /// In-memory, random admin and terminal tokens, no bidders, 2 s heartbeats, 2 s
    /// fetch wait, 10 s anti-sniping, 100 000 retained log entries, no demo, no chaos.
    fn default() -> Self {
        MasterConfig {
            storage: Storage::InMemory,
            primary: None,
            replica: None,
            admin_token: random_token(),
            terminal_token: random_token(),
            bidders: Vec::new(),
            heartbeat: Duration::from_millis(2000),
            fetch_wait: Duration::from_millis(2000),
            anti_snipe: Duration::from_secs(10),
            log_retention: 100_000,
            demo: false,
            simulated_bidders: 0,
            chaos: None,
            seed: None,
            memcached: Vec::new(),
            nats: None,
            metrics_token: None,
            limits: lotsync::serve::Limits::default(),
            idempotency_retention: StoreOptions::IDEMPOTENCY_RETENTION,
            writer_queue: StoreOptions::WRITER_QUEUE,
            read_connections: crate::store::replica::DEFAULT_CONNECTIONS,
            replication_stall: StoreOptions::REPLICATION_STALL,
        }
    }
}

impl fmt::Debug for MasterConfig {
    /// Tokens are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bidders: Vec<&str> = self.bidders.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("MasterConfig")
            .field("storage", &self.storage)
            .field("primary", &self.primary)
            .field("replica", &self.replica)
            .field("admin_token", &"<hidden>")
            .field("terminal_token", &"<hidden>")
            .field("bidders", &bidders)
            .field("heartbeat", &self.heartbeat)
            .field("fetch_wait", &self.fetch_wait)
            .field("anti_snipe", &self.anti_snipe)
            .field("log_retention", &self.log_retention)
            .field("demo", &self.demo)
            .field("simulated_bidders", &self.simulated_bidders)
            .field("chaos", &self.chaos)
            .field("seed", &self.seed)
            .field("memcached", &self.memcached)
            .field("nats", &self.nats)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<hidden>"),
            )
            .field("limits", &self.limits)
            .field("idempotency_retention", &self.idempotency_retention)
            .field("writer_queue", &self.writer_queue)
            .field("read_connections", &self.read_connections)
            .field("replication_stall", &self.replication_stall)
            .finish()
    }
}

impl MasterConfig {
    /// Check the settings; the error says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.log_retention == 0 {
            return Err("log retention must be at least 1".into());
        }
        if self.primary.is_some() && self.primary == self.replica {
            return Err("the primary and the replica must be different databases".into());
        }
        if self.heartbeat.is_zero() {
            return Err("the heartbeat interval must be positive".into());
        }
        if self.writer_queue == 0 || self.read_connections == 0 {
            return Err("the writer queue and the read connections must be at least 1".into());
        }
        let mut tokens = vec![&self.admin_token, &self.terminal_token];
        for (name, token) in &self.bidders {
            validate_bidder_name(name)?;
            tokens.push(token);
        }
        if tokens
            .iter()
            .any(|t| t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err("tokens must be non-empty and contain no spaces".into());
        }
        let mut sorted = tokens.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != tokens.len() {
            return Err("every role and bidder needs its own token".into());
        }
        if let Some(nats) = &self.nats {
            nats.validate()?;
        }
        if !self.memcached.is_empty() {
            lotsync::cache::Cache::new(self.memcached.clone()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl From<&MasterConfig> for StoreOptions {
    fn from(config: &MasterConfig) -> StoreOptions {
        StoreOptions {
            storage: config.storage.clone(),
            primary: config.primary.clone(),
            replica: config.replica.clone(),
            log_retention: config.log_retention,
            anti_snipe: config.anti_snipe,
            idempotency_retention: config.idempotency_retention,
            writer_queue: config.writer_queue,
            read_connections: config.read_connections,
            replication_stall: config.replication_stall,
        }
    }
}

/// Parse a duration written as a number and a unit: `90s`, `15m`, `24h`, `7d` (a bare
/// number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 15m, 24h or 7d"))?;
    let unit_secs = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?}: use s, m, h or d")),
    };
    number
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Check a bidder name: 1–64 characters of `A-Z a-z 0-9 - _ .`.
pub fn validate_bidder_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bidder name {name:?} must be 1-64 characters of A-Z, a-z, 0-9, -, _ and ."
        ))
    }
}

/// A fresh random token (128 bits, hex).
pub fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_tokens_and_validation_catches_duplicates() {
        let mut config = MasterConfig::default();
        config.bidders.push(("alice".into(), "alice-secret".into()));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains(&config.admin_token) && !shown.contains("alice-secret"),
            "{shown}"
        );
        assert!(config.validate().is_ok());
        config.terminal_token = config.admin_token.clone();
        assert!(config.validate().is_err());
        assert!(validate_bidder_name("bad name").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "h", "1w", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
