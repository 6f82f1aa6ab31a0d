//! From checked flags to a running client: start the demo master if asked, connect,
//! run the dashboard or the headless writer, and shut everything down in order.

use anyhow::Context;
use lotsync::Client;

use crate::app::Options;
use crate::cli::{Cli, Source};
#[cfg(feature = "demo")]
use crate::demo;
use crate::{headless, runtime};

/// Run with `cli`'s flags (already validated into `source`) until the user quits,
/// or Ctrl-C / SIGTERM arrives.
pub async fn run(cli: Cli, source: Source) -> anyhow::Result<()> {
    #[cfg(feature = "demo")]
    let mut master = None;
    #[cfg(not(feature = "demo"))]
    let master: Option<()> = None;
    let (url, token, bidder_token) = match source {
        #[cfg(feature = "demo")]
        Source::Demo { bots } => {
            let started = demo::start(bots).await?;
            let connect = (
                started.url().to_owned(),
                started.terminal_token().to_owned(),
                started.bidder_token(demo::BIDDER).map(str::to_owned),
            );
            master = Some(started);
            connect
        }
        #[cfg(not(feature = "demo"))]
        Source::Demo { .. } => anyhow::bail!("this build has no demo (feature `demo`)"),
        Source::Master {
            url,
            token,
            bidder_token,
        } => (url, token, bidder_token),
    };
    tracing::info!(%url, demo = master.is_some(), "connecting");
    let mut builder = Client::builder(url).token(token);
    let bidder = bidder_token.is_some();
    if let Some(bidder_token) = bidder_token {
        builder = builder.bidder_token(bidder_token);
    }
    if !cli.nats.is_empty() {
        builder = builder
            .jetstream(lotsync::JetStreamNotices::new(cli.nats.clone()).prefix(&cli.nats_prefix));
    }
    if !cli.memcached.is_empty() {
        builder = builder.memcached(cli.memcached.clone());
    }
    let client = builder.build().context("cannot start the lotsync client")?;
    if let Some(addr) = cli.metrics_listen {
        let bound = client
            .export_metrics(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%bound, "serving metrics at /metrics");
    }

    let result = if cli.headless {
        headless::run(&client, shutdown_signal()).await
    } else {
        let options = Options {
            bidder,
            floor: cli.floor,
            pinned: cli.lot.clone(),
            lane: cli.lane.clone(),
        };
        runtime::run(&client, options, shutdown_signal()).await
    };
    client.shutdown().await;
    #[cfg(feature = "demo")]
    if let Some(master) = master {
        master.shutdown().await;
    }
    result
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
