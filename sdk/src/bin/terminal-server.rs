//! `terminal-server`: follow a lotsync master (or another terminal server) and serve
//! this hall's terminals over HTTP with the master's own terminal protocol. Parses
//! flags, sets up logging, binds, prints the URL, serves until Ctrl-C or SIGTERM;
//! everything else lives in `lotsync::serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use lotsync::serve::{Limits, TerminalServer, shutdown_signal};

/// Serves a hall's terminals (displays, bidder terminals, browser walls) from one
/// subscription to a lotsync master: one notice stream and one fetch per change
/// upstream, any number of terminals downstream. Terminals connect to it exactly as to
/// a master, so terminal servers also chain into a tree.
#[derive(Debug, Parser)]
#[command(name = "terminal-server", version, after_help = EXAMPLES)]
struct Cli {
    /// Base URL of the master or upstream terminal server, such as http://master:8080.
    #[arg(long, value_name = "URL")]
    master: String,
    /// Bearer token for the upstream (a terminal token of the master, or a display
    /// token of the upstream terminal server).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LOTSYNC_TOKEN",
        hide_env_values = true
    )]
    token: String,
    /// A token this server's terminals must present (repeatable; comma-separated in
    /// the environment variable).
    #[arg(
        long = "display-token",
        value_name = "TOKEN",
        env = "LOTSYNC_DISPLAY_TOKENS",
        hide_env_values = true,
        value_delimiter = ',',
        required = true
    )]
    display_tokens: Vec<String>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Read changed lots from these memcached servers before asking the upstream:
    /// HOST:PORT, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    memcached: Vec<String>,
    /// Ask the upstream for notices carrying their lots (no fetch per change); best
    /// when the upstream is another terminal server.
    #[arg(long, conflicts_with = "nats")]
    inline_lots: bool,
    /// Follow notices on NATS JetStream (published by the master with --nats) instead
    /// of the upstream's notice stream: nats://[USER:PASSWORD@]HOST:PORT of the
    /// cluster's servers, comma-separated. Snapshots and fetches still go to --master.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "URL",
        env = "LOTSYNC_NATS",
        hide_env_values = true
    )]
    nats: Vec<String>,
    /// With --nats: the prefix the master publishes under (its --nats-prefix).
    #[arg(long, default_value = lotsync::protocol::jetstream::DEFAULT_PREFIX, requires = "nats")]
    nats_prefix: String,
    /// Recent notices kept for resuming terminals' streams.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(16..=10_000_000))]
    ring: u64,
    /// Interval between heartbeats to terminals, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    heartbeat_ms: u64,
    /// Most open connections; past it a connection gets 503.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Most open notice streams; past it a stream gets 503.
    #[arg(long, default_value_t = 16_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_streams: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

const EXAMPLES: &str = "Examples:
  terminal-server --master http://master:8080 --token TERMINAL --display-token WALL
  tui-client --master http://127.0.0.1:8090 --token WALL
  terminal-server --master http://master:8080 --token TERMINAL --display-token WALL --nats nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222
  terminal-server --master http://hall-a:8090 --token WALL --display-token WING --listen 0.0.0.0:8091 --inline-lots";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    lotsync::serve::init_logs(matches!(cli.log_format, LogFormat::Json));
    let limits = Limits {
        max_connections: cli.max_connections as usize,
        max_streams: cli.max_streams as usize,
        ..Limits::default()
    };
    let (memcached, inline) = (cli.memcached.clone(), cli.inline_lots);
    let nats = (!cli.nats.is_empty()).then(|| {
        lotsync::JetStreamNotices::new(cli.nats.clone())
            .prefix(&cli.nats_prefix)
            .heartbeat(Duration::from_millis(cli.heartbeat_ms))
    });
    let mut builder = TerminalServer::builder(&cli.master)
        .token(&cli.token)
        .client(|c| {
            let c = c.memcached(memcached).inline_lots(inline);
            match nats {
                Some(nats) => c.jetstream(nats),
                None => c,
            }
        })
        .ring_capacity(cli.ring as usize)
        .heartbeat(Duration::from_millis(cli.heartbeat_ms))
        .limits(limits);
    for token in &cli.display_tokens {
        builder = builder.display_token(token);
    }
    let server = builder.start().context("invalid settings")?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    writeln!(
        out,
        "following {}{} with {} display token(s)",
        cli.master,
        if cli.nats.is_empty() {
            ""
        } else {
            " (notices from NATS JetStream)"
        },
        cli.display_tokens.len()
    )?;
    out.flush()?;
    drop(out);
    tracing::info!(%addr, upstream = %cli.master, "serving terminals");
    server
        .serve(listener, shutdown_signal())
        .await
        .context("the terminal server failed")?;
    tracing::info!("stopped");
    Ok(())
}
