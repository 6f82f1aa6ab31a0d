//! The cache warmer: a terminal server whose "display" is memcached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Cache, StoreOutcome};
use crate::Client;
use crate::fanout::Update;
use crate::protocol::Lot;

/// Counters of a [`Warmer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmerStats {
    /// Lots written to the cache.
    pub stored: u64,
    /// Writes skipped because the cache already held that version or a newer one.
    pub kept_newer: u64,
    /// Writes that failed (server down, contention); the next change of the lot, or
    /// the next resync, writes it again.
    pub errors: u64,
}

#[derive(Debug)]
struct Counters {
    stored: AtomicU64,
    kept_newer: AtomicU64,
    errors: AtomicU64,
    /// The counters again, published after every write, for whoever waits on progress.
    progress: watch::Sender<WarmerStats>,
}

impl Counters {
    fn stats(&self) -> WarmerStats {
        WarmerStats {
            stored: self.stored.load(Ordering::Relaxed),
            kept_newer: self.kept_newer.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Follows a master's notices through a [`Client`] and keeps every lot in a [`Cache`].
///
/// On start (and after every resync) it writes the whole snapshot, so a restarted
/// warmer leaves no stale entry behind; each write is version-guarded, so it never
/// replaces a newer entry with an older one.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = lotsync::Client::builder("http://127.0.0.1:8080").token("term").build()?;
/// let cache = lotsync::cache::Cache::new(["127.0.0.1:11211"])?;
/// let warmer = lotsync::cache::Warmer::start(client, cache);
/// // ... later
/// println!("{:?}", warmer.stats());
/// warmer.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Warmer {
    client: Client,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Warmer {
    /// Start warming `cache` from `client`'s mirror. Needs a tokio runtime.
    pub fn start(client: Client, cache: Cache) -> Warmer {
        let counters = Arc::new(Counters {
            stored: AtomicU64::new(0),
            kept_newer: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            progress: watch::Sender::new(WarmerStats::default()),
        });
        let mut display = client.subscribe();
        let task = {
            let counters = counters.clone();
            tokio::spawn(async move {
                while let Some(update) = display.recv().await {
                    // Each lot is stored under the epoch it was read in, carried by the
                    // update itself: the mirror may have moved to another history since.
                    let (epoch, lots): (Arc<str>, Vec<Arc<Lot>>) = match update {
                        Update::LotChanged { lot, epoch, .. } => (epoch, vec![lot]),
                        Update::Snapshot {
                            lots,
                            epoch: Some(epoch),
                        }
                        | Update::Resynced { lots, epoch, .. } => (epoch, lots),
                        Update::Snapshot { epoch: None, .. } | Update::State(_) => continue,
                    };
                    for lot in lots {
                        let counter = match cache.store(&epoch, &lot).await {
                            Ok(StoreOutcome::Stored) => &counters.stored,
                            Ok(StoreOutcome::KeptNewer { held }) => {
                                debug!(lot = %lot.id, held, offered = lot.seq, "cache holds a newer version");
                                &counters.kept_newer
                            }
                            Err(error) => {
                                warn!(lot = %lot.id, %error, "cache write failed");
                                &counters.errors
                            }
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        counters.progress.send_replace(counters.stats());
                    }
                }
            })
        };
        Warmer {
            client,
            counters,
            task,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> WarmerStats {
        self.counters.stats()
    }

    /// The counters as a watch: `changed()` completes after each write, so a caller
    /// can wait for the cache to reach a state without polling it.
    ///
    /// ```no_run
    /// # async fn demo(warmer: lotsync::cache::Warmer) {
    /// let mut progress = warmer.progress();
    /// progress.wait_for(|stats| stats.stored >= 10).await.ok();
    /// # }
    /// ```
    pub fn progress(&self) -> watch::Receiver<WarmerStats> {
        self.counters.progress.subscribe()
    }

    /// The client the warmer follows the master with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Stop the warmer and its client.
    pub async fn shutdown(self) {
        self.client.shutdown().await;
        let _ = self.task.await;
    }
}
