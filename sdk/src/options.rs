//! Client options and their builder.

use std::fmt;
use std::time::Duration;

use crate::client::Client;
use crate::error::BuildError;

/// Every tunable of a [`Client`], with its default. Built by [`ClientBuilder`].
#[derive(Clone)]
pub(crate) struct Options {
    /// Base URL of the master, without a trailing slash.
    pub base_url: String,
    /// Bearer token of the terminal role (notices and fetches).
    pub token: Option<String>,
    /// Bearer token of a bidder (bids).
    pub bidder_token: Option<String>,
    /// Most lots asked for in one batch fetch.
    pub batch_size: usize,
    /// Most batch fetches in flight at once.
    pub fetch_concurrency: usize,
    /// Reconnect when nothing (not even a heartbeat) arrived for this long;
    /// `None` means three heartbeat intervals as announced by the master.
    pub idle_timeout: Option<Duration>,
    /// First reconnect delay ceiling.
    pub reconnect_base: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// First fetch retry delay ceiling.
    pub retry_base: Duration,
    /// Largest fetch retry delay.
    pub retry_max: Duration,
    /// Disconnected this long, the state turns from reconnecting to stale.
    pub stale_after: Duration,
    /// Fetches failing this long, a live state turns degraded.
    pub degraded_after: Duration,
    /// Largest SSE event accepted; a larger one is dropped, counted and the stream reconnected.
    pub max_event_bytes: usize,
    /// Largest fetch response body accepted.
    pub max_response_bytes: usize,
    /// Timeout of each fetch and bid request.
    pub request_timeout: Duration,
    /// How many times a bid is retried (same idempotency key) on network errors.
    pub bid_retries: u32,
    /// Extra trusted root certificates (PEM) for `https://` masters.
    pub root_certificates: Vec<Vec<u8>>,
    /// memcached servers to read lots from before asking the master.
    pub memcached: Vec<String>,
    /// After a cache miss, wait this long for the warmer and look once more before
    /// asking the master (zero: ask the master at once).
    pub cache_grace: Duration,
    /// Longest a memcached request may take before the lot is asked of the master.
    pub cache_timeout: Duration,
    /// Ask for notices that carry their lot (`?lots=inline`), so no fetch is needed.
    pub inline_lots: bool,
    /// Told of every notice, resync and heartbeat (a terminal server's relay).
    pub observer: Option<std::sync::Arc<dyn crate::observer::SyncObserver>>,
    /// Follow notices on NATS JetStream instead of the master's notice stream.
    #[cfg(feature = "jetstream")]
    pub jetstream: Option<crate::jetstream::JetStreamNotices>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            base_url: String::new(),
            token: None,
            bidder_token: None,
            batch_size: 64,
            fetch_concurrency: 4,
            idle_timeout: None,
            reconnect_base: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            stale_after: Duration::from_secs(5),
            degraded_after: Duration::from_secs(5),
            max_event_bytes: 64 * 1024,
            max_response_bytes: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            bid_retries: 2,
            root_certificates: Vec::new(),
            memcached: Vec::new(),
            cache_grace: Duration::from_millis(3),
            cache_timeout: crate::cache::Cache::DEFAULT_TIMEOUT,
            inline_lots: false,
            observer: None,
            #[cfg(feature = "jetstream")]
            jetstream: None,
        }
    }
}

// Tokens are secrets: they never appear in Debug output (and so never in logs).
impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        let mut f = f.debug_struct("Options");
        f.field("base_url", &self.base_url)
            .field("token", &redact(&self.token))
            .field("bidder_token", &redact(&self.bidder_token))
            .field("batch_size", &self.batch_size)
            .field("fetch_concurrency", &self.fetch_concurrency)
            .field("idle_timeout", &self.idle_timeout)
            .field("reconnect_base", &self.reconnect_base)
            .field("reconnect_max", &self.reconnect_max)
            .field("retry_base", &self.retry_base)
            .field("retry_max", &self.retry_max)
            .field("stale_after", &self.stale_after)
            .field("degraded_after", &self.degraded_after)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("bid_retries", &self.bid_retries)
            .field("root_certificates", &self.root_certificates.len())
            .field("memcached", &self.memcached)
            .field("cache_grace", &self.cache_grace)
            .field("cache_timeout", &self.cache_timeout)
            .field("inline_lots", &self.inline_lots)
            .field("observer", &self.observer.is_some());
        #[cfg(feature = "jetstream")]
        f.field("jetstream", &self.jetstream);
        f.finish()
    }
}

/// Builds a [`Client`]. Every setter takes and returns the builder.
///
/// ```no_run
/// # async fn demo() -> Result<(), lotsync::BuildError> {
/// use std::time::Duration;
/// let client = lotsync::Client::builder("http://127.0.0.1:8080")
///     .token("terminal-token")
///     .bidder_token("alice-token")
///     .batch_size(32)
///     .fetch_concurrency(8)
///     .idle_timeout(Duration::from_secs(10))
///     .build()?;
/// client.synced().await;
/// println!("{} lots", client.mirror().len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    options: Options,
}

impl ClientBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            options: Options::default(),
        }
    }

    /// Bearer token of the terminal role, sent on the notice stream and on fetches.
    ///
    /// ```
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080").token("secret");
    /// assert!(!format!("{builder:?}").contains("secret"));
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.options.token = Some(token.into());
        self
    }

    /// Bearer token of a bidder, needed by [`Client::place_bid`].
    ///
    /// ```
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080").bidder_token("b");
    /// ```
    pub fn bidder_token(mut self, token: impl Into<String>) -> Self {
        self.options.bidder_token = Some(token.into());
        self
    }

    /// Most lots asked for in one batch fetch (default 64, 1..=500).
    ///
    /// ```
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080").batch_size(16);
    /// ```
    pub fn batch_size(mut self, lots: usize) -> Self {
        self.options.batch_size = lots;
        self
    }

    /// Most batch fetches in flight at once (default 4, 1..=64).
    ///
    /// ```
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080").fetch_concurrency(2);
    /// ```
    pub fn fetch_concurrency(mut self, fetches: usize) -> Self {
        self.options.fetch_concurrency = fetches;
        self
    }

    /// Reconnect when no byte, not even a heartbeat, arrived for this long (default:
    /// three heartbeat intervals as announced by the master).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .idle_timeout(Duration::from_secs(6));
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.idle_timeout = Some(timeout);
        self
    }

    /// Bounds of the jittered exponential reconnect delay (default 200 ms to 30 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .reconnect_delay(Duration::from_millis(50), Duration::from_secs(5));
    /// ```
    pub fn reconnect_delay(mut self, base: Duration, max: Duration) -> Self {
        self.options.reconnect_base = base;
        self.options.reconnect_max = max;
        self
    }

    /// Bounds of the jittered exponential fetch retry delay (default 50 ms to 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .retry_delay(Duration::from_millis(10), Duration::from_secs(1));
    /// ```
    pub fn retry_delay(mut self, base: Duration, max: Duration) -> Self {
        self.options.retry_base = base;
        self.options.retry_max = max;
        self
    }

    /// How long the stream may be down before the state becomes
    /// [`Stale`](crate::ConnectionState::Stale) (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .stale_after(Duration::from_secs(2));
    /// ```
    pub fn stale_after(mut self, after: Duration) -> Self {
        self.options.stale_after = after;
        self
    }

    /// How long fetches may keep failing (a stalled replica, 503s) while notices still
    /// arrive before a live state becomes
    /// [`Degraded`](crate::ConnectionState::Degraded) (default 5 s). The first
    /// successful fetch or snapshot makes it live again.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .degraded_after(Duration::from_secs(2));
    /// ```
    pub fn degraded_after(mut self, after: Duration) -> Self {
        self.options.degraded_after = after;
        self
    }

    /// Largest notice-stream event accepted, in bytes (default 64 KiB). Notices are
    /// small; a huge event is a misbehaving master and is dropped and counted.
    ///
    /// ```
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080").max_event_bytes(4096);
    /// ```
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.options.max_event_bytes = bytes;
        self
    }

    /// Largest fetch response accepted, in bytes (default 32 MiB).
    ///
    /// ```
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080").max_response_bytes(1 << 20);
    /// ```
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.options.max_response_bytes = bytes;
        self
    }

    /// Timeout of each fetch and bid request (default 10 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .request_timeout(Duration::from_secs(3));
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.request_timeout = timeout;
        self
    }

    /// Trust this root certificate (PEM) for an `https://` master, on top of the
    /// public web roots: for masters behind an internal certificate authority.
    ///
    /// ```
    /// let builder = lotsync::Client::builder("https://master.internal:8443")
    ///     .add_root_certificate(b"-----BEGIN CERTIFICATE-----\n...".to_vec());
    /// ```
    pub fn add_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.options.root_certificates.push(pem.into());
        self
    }

    /// Read lots from these memcached servers (`HOST:PORT`, warmed by a
    /// [`Warmer`](crate::cache::Warmer)) when the cached version is at least the
    /// notice's; fall back to the master otherwise or on any cache error.
    ///
    /// ```
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .memcached(["127.0.0.1:11211", "127.0.0.1:11212"]);
    /// ```
    pub fn memcached<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.memcached = servers.into_iter().map(Into::into).collect();
        self
    }

    /// After a cache miss, how long to give the warmer before looking once more and
    /// then asking the master (default 3 ms; zero asks the master at once). The warmer
    /// receives the same notice at the same moment, so a short grace turns most misses
    /// into hits at the price of that much latency on a miss.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .cache_grace(Duration::ZERO);
    /// ```
    pub fn cache_grace(mut self, grace: Duration) -> Self {
        self.options.cache_grace = grace;
        self
    }

    /// How long a memcached request may take before the lot is asked of the master
    /// instead (default 250 ms, at most 60 s). A memcached server that times out is
    /// skipped for 2 s.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = lotsync::Client::builder("http://127.0.0.1:8080")
    ///     .memcached(["127.0.0.1:11211"])
    ///     .cache_timeout(Duration::from_millis(50));
    /// ```
    pub fn cache_timeout(mut self, timeout: Duration) -> Self {
        self.options.cache_timeout = timeout;
        self
    }

    /// Ask for notices that carry their lot (the notice stream's `lots=inline`
    /// option): each change arrives with the lot itself and needs no fetch. Off by
    /// default: a master then reads the lot for every notice on every stream, which
    /// suits a few displays behind a terminal server better than many terminal servers
    /// on a master.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), lotsync::BuildError> {
    /// let client = lotsync::Client::builder("http://terminal-server:8090")
    ///     .token("display-token")
    ///     .inline_lots(true)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn inline_lots(mut self, inline: bool) -> Self {
        self.options.inline_lots = inline;
        self
    }

    /// Follow notices on NATS JetStream (published by a master started with `--nats`)
    /// instead of the master's notice stream. Snapshots, catch-ups and fetches still go
    /// to the URL the builder was made with. Feature `jetstream`.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), lotsync::BuildError> {
    /// let client = lotsync::Client::builder("http://master:8080")
    ///     .token("terminal-token")
    ///     .jetstream(lotsync::JetStreamNotices::new(["nats://127.0.0.1:4222"]))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "jetstream")]
    pub fn jetstream(mut self, source: crate::jetstream::JetStreamNotices) -> Self {
        self.options.jetstream = Some(source);
        self
    }

    /// Tell `observer` of every notice, resync and heartbeat (used by the relay).
    #[cfg(feature = "server")]
    pub(crate) fn observer(
        mut self,
        observer: std::sync::Arc<dyn crate::observer::SyncObserver>,
    ) -> Self {
        self.options.observer = Some(observer);
        self
    }

    /// Validate the options and start the client: it loads a snapshot, subscribes to
    /// notices and keeps its mirror current until shut down or dropped.
    ///
    /// Must be called inside a tokio runtime.
    ///
    /// ```
    /// let err = lotsync::Client::builder("ftp://example.com").build().unwrap_err();
    /// assert!(err.to_string().contains("invalid master url"));
    /// # let rt = tokio::runtime::Runtime::new().unwrap();
    /// # let _guard = rt.enter();
    /// let forever = std::time::Duration::MAX;
    /// let err = lotsync::Client::builder("http://m").stale_after(forever).build().unwrap_err();
    /// assert!(err.to_string().contains("stale_after"));
    /// ```
    pub fn build(self) -> Result<Client, BuildError> {
        let mut options = self.options;
        options.base_url = validate_url(&self.url)?;
        validate_range("batch_size", options.batch_size, 1, 500)?;
        validate_range("fetch_concurrency", options.fetch_concurrency, 1, 64)?;
        validate_range("max_event_bytes", options.max_event_bytes, 256, 64 << 20)?;
        validate_range(
            "max_response_bytes",
            options.max_response_bytes,
            1024,
            1 << 30,
        )?;
        if options.reconnect_base.is_zero() || options.reconnect_base > options.reconnect_max {
            return Err(BuildError::InvalidOption {
                option: "reconnect_delay",
                reason: "base must be positive and not above max".into(),
            });
        }
        if options.retry_base.is_zero() || options.retry_base > options.retry_max {
            return Err(BuildError::InvalidOption {
                option: "retry_delay",
                reason: "base must be positive and not above max".into(),
            });
        }
        if options
            .idle_timeout
            .is_some_and(|t| t < Duration::from_millis(10))
        {
            return Err(BuildError::InvalidOption {
                option: "idle_timeout",
                reason: "at least 10 ms".into(),
            });
        }
        for (which, token) in [
            ("terminal", &options.token),
            ("bidder", &options.bidder_token),
        ] {
            if token
                .as_deref()
                .is_some_and(|t| http::HeaderValue::from_str(&format!("Bearer {t}")).is_err())
            {
                return Err(BuildError::InvalidToken { which });
            }
        }
        // Deadlines are `Instant::now() + delay`: a delay near `Duration::MAX` would
        // overflow and panic a background task. A day is far beyond any sane value.
        let day = Duration::from_secs(24 * 3600);
        for (option, value) in [
            ("idle_timeout", options.idle_timeout.unwrap_or_default()),
            ("reconnect_delay", options.reconnect_max),
            ("retry_delay", options.retry_max),
            ("stale_after", options.stale_after),
            ("degraded_after", options.degraded_after),
            ("request_timeout", options.request_timeout),
        ] {
            if value > day {
                return Err(BuildError::InvalidOption {
                    option,
                    reason: "at most a day".into(),
                });
            }
        }
        #[cfg(feature = "jetstream")]
        if let Some(source) = &options.jetstream {
            source.validate()?;
            if options.inline_lots {
                return Err(BuildError::InvalidOption {
                    option: "inline_lots",
                    reason: "notices on JetStream carry no lots; use one or the other".into(),
                });
            }
        }
        if options.cache_grace > Duration::from_secs(1) {
            return Err(BuildError::InvalidOption {
                option: "cache_grace",
                reason: "at most 1 s".into(),
            });
        }
        if options.cache_timeout.is_zero() || options.cache_timeout > Duration::from_secs(60) {
            return Err(BuildError::InvalidOption {
                option: "cache_timeout",
                reason: "between 1 ms and 60 s".into(),
            });
        }
        let cache = if options.memcached.is_empty() {
            None
        } else {
            Some(
                crate::cache::Cache::with_timeouts(
                    options.memcached.clone(),
                    options.cache_timeout,
                    crate::cache::Cache::DEFAULT_COOLDOWN,
                )
                .map_err(|e| BuildError::InvalidOption {
                    option: "memcached",
                    reason: e.to_string(),
                })?,
            )
        };
        Client::start(options, cache)
    }
}

fn validate_range(
    option: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), BuildError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(BuildError::InvalidOption {
            option,
            reason: format!("must be between {min} and {max}, got {value}"),
        })
    }
}

fn validate_url(url: &str) -> Result<String, BuildError> {
    let invalid = |reason: &str| BuildError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    match parsed.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(invalid("the scheme must be http or https")),
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if parsed.query().is_some() {
        return Err(invalid("no query string allowed"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(validate_url("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(validate_url("https://h/base").unwrap(), "https://h/base");
        for bad in [
            "",
            "h:1",
            "ftp://h",
            "http://",
            "http://h/?x=1",
            "not a url",
        ] {
            assert!(validate_url(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn cache_settings_out_of_range_are_refused_by_name() {
        let builder = || ClientBuilder::new("http://127.0.0.1:1").memcached(["127.0.0.1:11211"]);
        for (bad, name) in [
            (builder().cache_timeout(Duration::ZERO), "cache_timeout"),
            (
                builder().cache_timeout(Duration::from_secs(61)),
                "cache_timeout",
            ),
            (builder().cache_grace(Duration::from_secs(2)), "cache_grace"),
            (
                ClientBuilder::new("http://127.0.0.1:1").memcached(["no-port"]),
                "memcached",
            ),
        ] {
            match bad.build() {
                Err(BuildError::InvalidOption { option, .. }) => assert_eq!(option, name),
                Err(other) => panic!("{name}: {other}"),
                Ok(client) => {
                    client.shutdown().await;
                    panic!("{name}: accepted");
                }
            }
        }
        let client = builder()
            .cache_timeout(Duration::from_secs(60))
            .build()
            .expect("60 s is allowed");
        client.shutdown().await;
    }

    #[test]
    fn debug_hides_tokens() {
        let builder = ClientBuilder::new("http://h")
            .token("s3cret")
            .bidder_token("b1dder");
        let text = format!("{builder:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("b1dder"),
            "{text}"
        );
    }
}
