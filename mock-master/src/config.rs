//! Settings of one master, shared by the binary's flags and the library's builder.

use std::fmt;
use std::time::Duration;

use lotsync::protocol::ChaosSettings;

pub use crate::store::Storage;
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
    /// Required by `/metrics` when set (the admin token is accepted too).
    pub metrics_token: Option<String>,
    /// Bounds on connections, notice streams and requests (past them: 503).
    pub limits: lotsync::serve::Limits,
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
            metrics_token: None,
            limits: lotsync::serve::Limits::default(),
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
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<hidden>"),
            )
            .field("limits", &self.limits)
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
        if !self.memcached.is_empty() {
            lotsync::cache::Cache::new(self.memcached.clone()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
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
}
