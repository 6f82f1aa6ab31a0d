//! lotsync: the terminal-server half of *notify, then fetch*.
//!
//! A [`Client`] mirrors every lot of an auction master. It loads a snapshot, then
//! follows the master's notices over Server-Sent Events; each notice marks a lot dirty
//! and the lot is fetched (coalesced, batched, never older than the notice) into a
//! local [`Mirror`]. Any number of displays [`subscribe`](Client::subscribe) to the
//! changes; a slow display skips to the newest value of each lot instead of buffering.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = lotsync::Client::builder("http://127.0.0.1:8080")
//!     .token("terminal-token")
//!     .bidder_token("alice-token")
//!     .build()?;
//! client.synced().await;
//! for lot in client.mirror().lots() {
//!     println!("{:>8} {:<40} {}", lot.id, lot.title, lot.current_price);
//! }
//! let bid = client.place_bid("lot-1", 1_250_000).await?;
//! println!("placed at sequence {}", bid.seq);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`protocol`]: wire types shared with the master, and input validation.
//! - `options`: [`ClientBuilder`] and the defaults of every tunable.
//! - `client`: the [`Client`] handle.
//! - `sync`: the task owning the notice stream: snapshot, cursor, gaps, resync, reconnect;
//!   `observer`: what it tells a relay.
//! - `fetcher`: coalesced, batched fetches of dirty lots with retry.
//! - `mirror`: the version-checked store of lots ([`Mirror`]).
//! - `fanout`: bounded per-display queues ([`Subscription`], [`Update`]).
//! - `transport`: eventsource-client over reqwest, with an event size guard.
//! - `api`: HTTP requests and response checks; `backoff`: jittered delays.
//! - [`cache`]: the memcached tier: consistent hashing, CAS-guarded writes, the warmer.
//! - [`serve`] (feature `server`): the terminal protocol served once, for the master
//!   and for terminal servers ([`serve::TerminalServer`], binary `terminal-server`).
//! - [`JetStreamNotices`] (feature `jetstream`): notices followed on NATS JetStream
//!   instead of the master's stream (`jetstream`, and `sync::jetstream` for the loop).
//! - `metrics`: counters and latency ([`MetricsSnapshot`]); `exporter`: the optional
//!   Prometheus endpoint; `state`: [`ConnectionState`].
#![deny(missing_docs)]

mod api;
mod backoff;
pub mod cache;
mod client;
mod error;
mod exporter;
mod fanout;
mod fetcher;
#[cfg(feature = "jetstream")]
mod jetstream;
mod metrics;
mod mirror;
mod observer;
mod options;
pub mod protocol;
#[cfg(feature = "server")]
pub mod serve;
mod state;
mod sync;
mod transport;

pub use client::Client;
pub use error::{BidError, BuildError};
pub use fanout::{Subscription, Update};
#[cfg(feature = "jetstream")]
pub use jetstream::JetStreamNotices;
pub use metrics::{LatencySummary, MetricsSnapshot};
pub use mirror::Mirror;
pub use options::ClientBuilder;
pub use state::ConnectionState;
