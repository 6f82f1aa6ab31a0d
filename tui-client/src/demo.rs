//! `--demo`: a master in-process with the demo catalogue, bidding bots, and a bidder
//! called "you", so one command shows the whole product.

use anyhow::Context;
use mock_master::Master;

/// Name of the bidder the demo's user bids as.
pub const BIDDER: &str = "you";

/// Start the demo master with `bots` simulated bidders.
pub async fn start(bots: usize) -> anyhow::Result<Master> {
    Master::builder()
        .in_memory()
        .demo(true)
        .simulated_bidders(bots)
        .bidder(BIDDER, mock_master::config::random_token())
        .start()
        .await
        .context("could not start the demo master")
}
