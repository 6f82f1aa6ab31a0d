//! The Memcache cache tier (claim 6 of the method): lots kept in memcached, warmed by a
//! [`Warmer`] that follows notices like any terminal server, and read by terminal
//! servers before they ask the master.
//!
//! Keys are `lotsync:v2:{epoch}:lot:{id}` and values the lot's JSON, which carries its
//! version (`seq`). A lot is only ever replaced by a newer version (memcached CAS), so
//! a reader that finds a version at least as new as the notice it serves can use it;
//! anything else falls back to the master. Keys are spread over the servers by
//! consistent hashing; a server that fails is skipped for a while, never fatal.

mod memcached;
mod ring;
mod warmer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use memcached::MemcachedError;
pub use warmer::{Warmer, WarmerStats};

use crate::protocol::{Lot, Seq, validate_lot_id};
use memcached::{Server, StoreReply};
use ring::Ring;

/// Version of the value format in every key; bumped when a value's format changes so an
/// old value is never read.
const KEY_VERSION: &str = "v2";

/// Items expire after a day: a cache that is not warmed any more empties itself.
const TTL_SECS: u32 = 24 * 3600;

/// Why the cache could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An address is not `HOST:PORT`.
    #[error("invalid memcached address {0:?}: expected HOST:PORT")]
    InvalidAddress(String),
    /// No address was given.
    #[error("no memcached address given")]
    NoServers,
    /// The epoch or lot id cannot be part of a memcached key.
    #[error("cannot form a cache key from {0:?}")]
    InvalidKey(String),
    /// Every candidate server failed.
    #[error("memcached: {0}")]
    Server(#[from] MemcachedError),
    /// A cached value is not a lot.
    #[error("cached value is not a lot: {0}")]
    Corrupt(String),
    /// Another writer kept changing the item; gave up after several tries.
    #[error("too much contention on {0}")]
    Contention(String),
}

/// What [`Cache::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The lot is now in the cache.
    Stored,
    /// The cache already held this version or a newer one; it was left alone.
    KeptNewer {
        /// The version held.
        held: Seq,
    },
}

/// A set of memcached servers holding lots. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), lotsync::cache::CacheError> {
/// let cache = lotsync::cache::Cache::new(["127.0.0.1:11211", "127.0.0.1:11212"])?;
/// let lot = cache.get("3f2a9c", "lot-17").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    servers: Vec<Server>,
    ring: Ring,
}

impl Cache {
    /// The request timeout of [`Cache::new`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
    /// How long [`Cache::new`] skips a server that failed.
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(2);

    /// A cache over these servers (`HOST:PORT` each), with a 250 ms request timeout and
    /// a failed server skipped for 2 s.
    ///
    /// ```
    /// assert!(lotsync::cache::Cache::new(["127.0.0.1:11211"]).is_ok());
    /// assert!(lotsync::cache::Cache::new(["no-port"]).is_err());
    /// assert!(lotsync::cache::Cache::new(Vec::<String>::new()).is_err());
    /// ```
    pub fn new<I, S>(addresses: I) -> Result<Cache, CacheError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cache::with_timeouts(addresses, Cache::DEFAULT_TIMEOUT, Cache::DEFAULT_COOLDOWN)
    }

    /// Like [`Cache::new`] with explicit request timeout and down-server cooldown.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let cache = lotsync::cache::Cache::with_timeouts(
    ///     ["127.0.0.1:11211"], Duration::from_millis(100), Duration::from_secs(1)).unwrap();
    /// ```
    pub fn with_timeouts<I, S>(
        addresses: I,
        timeout: Duration,
        cooldown: Duration,
    ) -> Result<Cache, CacheError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let addresses: Vec<String> = addresses.into_iter().map(Into::into).collect();
        if addresses.is_empty() {
            return Err(CacheError::NoServers);
        }
        for address in &addresses {
            let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !valid {
                return Err(CacheError::InvalidAddress(address.clone()));
            }
        }
        Ok(Cache {
            inner: Arc::new(Inner {
                ring: Ring::new(&addresses),
                servers: addresses
                    .into_iter()
                    .map(|a| Server::new(a, timeout, cooldown))
                    .collect(),
            }),
        })
    }

    /// The key of a lot: `lotsync:v2:{epoch}:lot:{id}`. The version is that of the value's
    /// format: `v1` values carried the confidential `reserve_price` and no `reserve_met`
    /// or ladder, so they are never read (nor served) again and expire by themselves.
    ///
    /// ```
    /// assert_eq!(lotsync::cache::Cache::key("e1", "lot-7").unwrap(), "lotsync:v2:e1:lot:lot-7");
    /// assert!(lotsync::cache::Cache::key("e 1", "lot-7").is_err());
    /// ```
    pub fn key(epoch: &str, lot_id: &str) -> Result<String, CacheError> {
        let epoch_ok = !epoch.is_empty()
            && epoch.len() <= 64
            && epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !epoch_ok {
            return Err(CacheError::InvalidKey(epoch.escape_default().to_string()));
        }
        validate_lot_id(lot_id)
            .map_err(|_| CacheError::InvalidKey(lot_id.escape_default().to_string()))?;
        Ok(format!("lotsync:{KEY_VERSION}:{epoch}:lot:{lot_id}"))
    }

    /// The first server for `key` that is not marked down.
    fn server_for(&self, key: &str) -> Option<&Server> {
        self.inner
            .ring
            .candidates(key)
            .into_iter()
            .map(|i| &self.inner.servers[i])
            .find(|s| !s.is_down())
    }

    /// One lot, if cached.
    pub async fn get(&self, epoch: &str, lot_id: &str) -> Result<Option<Lot>, CacheError> {
        let (mut lots, errors) = self.get_many(epoch, &[lot_id.to_owned()]).await;
        match (lots.pop(), errors.into_iter().next()) {
            (Some(lot), _) => Ok(Some(lot)),
            (None, Some(error)) => Err(error),
            (None, None) => Ok(None),
        }
    }

    /// Every cached lot among `ids`, asking each server once for its keys. Errors are
    /// returned beside the lots that could be read.
    pub async fn get_many(&self, epoch: &str, ids: &[String]) -> (Vec<Lot>, Vec<CacheError>) {
        let mut errors = Vec::new();
        let mut by_server: HashMap<usize, Vec<(String, &str)>> = HashMap::new();
        for id in ids {
            let key = match Cache::key(epoch, id) {
                Ok(key) => key,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            let Some(server) = self.server_for(&key) else {
                errors.push(CacheError::Server(MemcachedError::Down));
                continue;
            };
            let index = self
                .inner
                .servers
                .iter()
                .position(|s| std::ptr::eq(s, server))
                .unwrap_or(0);
            by_server.entry(index).or_default().push((key, id));
        }
        let requests = by_server.into_iter().map(|(index, keys)| async move {
            let names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
            (self.inner.servers[index].gets(&names).await, keys)
        });
        let mut lots = Vec::new();
        for (result, keys) in futures::future::join_all(requests).await {
            match result {
                Ok(items) => {
                    for item in items {
                        let Some((_, id)) = keys.iter().find(|(k, _)| *k == item.key) else {
                            continue;
                        };
                        match serde_json::from_slice::<Lot>(&item.value) {
                            Ok(lot) if lot.id == *id => lots.push(lot),
                            Ok(_) => errors.push(CacheError::Corrupt(format!(
                                "key {} holds another lot",
                                item.key
                            ))),
                            Err(e) => errors.push(CacheError::Corrupt(e.to_string())),
                        }
                    }
                }
                Err(error) => errors.push(error.into()),
            }
        }
        (lots, errors)
    }

    /// Store `lot` unless the cache holds the same or a newer version (CAS-guarded, so
    /// concurrent writers can never replace a newer version with an older one).
    pub async fn store(&self, epoch: &str, lot: &Lot) -> Result<StoreOutcome, CacheError> {
        let key = Cache::key(epoch, &lot.id)?;
        let value = serde_json::to_vec(lot).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        for _ in 0..8 {
            let server = self
                .server_for(&key)
                .ok_or(CacheError::Server(MemcachedError::Down))?;
            let held = server
                .gets(std::slice::from_ref(&key))
                .await?
                .into_iter()
                .next();
            let outcome = match held {
                None => server.add(&key, &value, TTL_SECS).await?,
                Some(item) => {
                    let held_seq = serde_json::from_slice::<Lot>(&item.value)
                        .map(|l| l.seq)
                        .ok();
                    if let Some(held) = held_seq.filter(|held| *held >= lot.seq) {
                        return Ok(StoreOutcome::KeptNewer { held });
                    }
                    server.cas(&key, &value, TTL_SECS, item.cas).await?
                }
            };
            if outcome == StoreReply::Stored {
                return Ok(StoreOutcome::Stored);
            }
            // Another writer got in between (or the item expired): read again.
        }
        Err(CacheError::Contention(key))
    }
}
