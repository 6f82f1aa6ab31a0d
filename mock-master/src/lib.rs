//! mock-master: a runnable lotsync master with the full store logic.
//!
//! A write reads the lot id, checks the **primary** SQLite database for it, then
//! replaces the lot, changes only its status, or adds it, appending the operation to the
//! **operation log** in the same transaction. A replicator tails the log and executes
//! each entry on the **replica** database. Terminal servers hear about changes as
//! notices over Server-Sent Events (the log's tail) and fetch lots from the replica.
//! Fault injection lets QA test terminal software against a misbehaving master.
//!
//! Run it as a binary (`mock-master --help`) or start it inside a test:
//!
//! ```no_run
//! # async fn example() -> Result<(), mock_master::StoreError> {
//! let master = mock_master::Master::builder().bidder("alice", "alice-token").start().await?;
//! let handle = master.handle();
//! let head = handle.head();
//! assert!(handle.wait_replicated(head, std::time::Duration::from_secs(1)).await);
//! master.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`config`]: [`MasterConfig`], the settings shared by flags and builder.
//! - [`master`]: [`Master`], [`MasterBuilder`], [`MasterHandle`] for in-process use.
//! - [`server`]: shared state, [`app`] (the router) and [`run`] (serve until shutdown).
//! - [`auth`]: bearer tokens and role extractors (admin, bidder, terminal).
//! - [`http`]: handlers per role and the error type every response uses.
//! - [`store`]: primary writer with group commit, operation log and its in-memory tail,
//!   replicator, replica reads.
//! - [`closer`]: opens and closes lots at their times.
//! - [`chaos`]: fault injection.
//! - [`demo`]: the demo catalogue, the auction driver and bot bidders.
//! - [`scenario`]: scenario files QA writes to drive the master (`--scenario`).
//! - [`metrics`]: Prometheus counters.
//! - [`nats`]: publishing the operation log to NATS JetStream (`--nats`).
#![deny(missing_docs)]

pub mod auth;
pub mod cache_tier;
pub mod chaos;
pub mod closer;
pub mod config;
pub mod demo;
pub mod http;
pub mod master;
pub mod metrics;
pub mod nats;
pub mod scenario;
pub mod server;
pub mod store;

pub use config::{MasterConfig, Storage};
pub use http::errors::ApiError;
pub use master::{Master, MasterBuilder, MasterHandle};
pub use server::{AppState, app, run};
pub use store::StoreError;
