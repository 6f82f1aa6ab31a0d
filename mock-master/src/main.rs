//! `mock-master`: parse flags, set up logging, bind, print the URL and the roles, serve
//! until Ctrl-C or SIGTERM. Everything else lives in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use lotsync::protocol::ChaosSettings;
use lotsync::serve::shutdown_signal;
use mock_master::config::{DbUrl, parse_duration};
use mock_master::{MasterConfig, Storage};

/// A runnable lotsync master: primary database, operation log, replica, notices over
/// Server-Sent Events, fetches from the replica, and fault injection for QA.
#[derive(Debug, Parser)]
#[command(name = "mock-master", version, about)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the primary and replica databases (kept across restarts).
    #[arg(long, default_value = "./lotsync-data", conflicts_with = "in_memory")]
    data_dir: PathBuf,
    /// Keep the databases in a throwaway directory deleted at shutdown (new epoch each start).
    #[arg(long)]
    in_memory: bool,
    /// The first database: sqlite:PATH (or a path), postgres://USER@HOST:PORT/DB or
    /// mysql://USER@HOST:PORT/DB (MariaDB) [default: primary.db in --data-dir].
    #[arg(long, value_name = "URL")]
    #[arg(env = "LOTSYNC_PRIMARY", hide_env_values = true)]
    primary: Option<DbUrl>,
    /// The second database, which fetches read; same forms as --primary
    /// [default: replica.db in --data-dir].
    #[arg(long, value_name = "URL")]
    #[arg(env = "LOTSYNC_REPLICA", hide_env_values = true)]
    replica: Option<DbUrl>,
    /// Admin bearer token [default: a random one nobody knows: no admin access].
    #[arg(long, env = "LOTSYNC_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Terminal bearer token [default: a random one nobody knows: no terminal access].
    #[arg(long, env = "LOTSYNC_TERMINAL_TOKEN", hide_env_values = true)]
    terminal_token: Option<String>,
    /// Bearer token `/metrics` requires (the admin token works too) [default: none,
    /// /metrics is open].
    #[arg(long, env = "LOTSYNC_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// A bidder and its bearer token, as NAME:TOKEN (repeatable).
    #[arg(long = "bidder", value_name = "NAME:TOKEN", value_parser = parse_bidder)]
    bidders: Vec<(String, String)>,
    /// Interval between heartbeats on notice streams, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_ms: u64,
    /// Longest a fetch waits for the replica to reach min_seq before 503, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    fetch_wait_ms: u64,
    /// A bid this many seconds before the end extends the end to now plus this (0: off).
    #[arg(long, default_value_t = 10)]
    anti_snipe_secs: u64,
    /// Log entries retained for resume (Last-Event-ID) and /v1/changes.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    log_retention: u64,
    /// Load a catalogue of used cars and keep an auction running.
    #[arg(long)]
    demo: bool,
    /// Run N bot bidders placing bids on open lots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    simulate_bidders: usize,
    /// Enable fault injection (GET/POST /v1/chaos with the admin token).
    #[arg(long)]
    chaos: bool,
    /// With --chaos: delay before the replicator applies each entry, in milliseconds.
    #[arg(long, default_value_t = 0, requires = "chaos")]
    chaos_replica_lag_ms: u64,
    /// With --chaos: make the replica lag random between 0 and --chaos-replica-lag-ms.
    #[arg(long, requires = "chaos")]
    chaos_replica_lag_random: bool,
    /// With --chaos: probability (0..=1) of dropping a notice to a subscriber.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate, requires = "chaos")]
    chaos_notice_drop_rate: f64,
    /// With --chaos: probability (0..=1) of a fetch failing with 500.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate, requires = "chaos")]
    chaos_fetch_error_rate: f64,
    /// With --chaos: delay added to every fetch, in milliseconds.
    #[arg(long, default_value_t = 0, requires = "chaos")]
    chaos_fetch_delay_ms: u64,
    /// With --chaos: start with the replicator paused.
    #[arg(long, requires = "chaos")]
    chaos_pause_replicator: bool,
    /// Seed for every random choice (faults, demo, bots), to replay a run.
    #[arg(long)]
    seed: Option<u64>,
    /// Keep these memcached servers warm with every lot (claim 6 of the method):
    /// HOST:PORT, comma-separated or repeated. A server that is down is skipped.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    memcached: Vec<String>,
    /// Publish the operation log to NATS JetStream on these servers (a cluster's
    /// members, comma-separated or repeated: nats://[USER:PASSWORD@]HOST:PORT), one
    /// stream per epoch, for terminal servers following with --nats.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "URL",
        env = "LOTSYNC_NATS",
        hide_env_values = true
    )]
    nats: Vec<String>,
    /// With --nats: first token of subjects and stream names (A-Z a-z 0-9 -).
    #[arg(long, default_value = lotsync::protocol::jetstream::DEFAULT_PREFIX, requires = "nats")]
    nats_prefix: String,
    /// With --nats: copies of each stream (1 on one server, 3 on a cluster).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5), requires = "nats")]
    nats_replicas: u64,
    /// With --nats: notices older than this leave the stream (s, m, h or d; 0: never).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration, requires = "nats")]
    nats_max_age: Duration,
    /// With --nats: most notices a stream keeps (the oldest leave first).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(i64).range(1..), requires = "nats")]
    nats_max_messages: i64,
    /// With --nats: epoch streams kept, this master's included; older ones are deleted
    /// when a new history starts (followers of an old epoch resynchronise anyway).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=100), requires = "nats")]
    nats_keep_epochs: u64,
    /// Also run a terminal server following this master on ADDR, with the browser wall
    /// display at /display, and print the display's address (the demo's hall).
    #[arg(long, value_name = "ADDR")]
    wall: Option<SocketAddr>,
    /// The display token of --wall [default: a one-off token, printed in the display's
    /// address].
    #[arg(
        long,
        requires = "wall",
        env = "LOTSYNC_WALL_TOKEN",
        hide_env_values = true
    )]
    wall_token: Option<String>,
    /// Play this scenario file (TOML: lots, bids, status changes and faults at given
    /// times; format in the mock_master::scenario docs and mock-master/scenarios/).
    /// --seed overrides the file's seed.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Most open connections; past it a new connection gets 503 with Retry-After.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Most open notice streams; past it a new stream gets 503.
    #[arg(long, default_value_t = 16_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_streams: u64,
    /// Most requests answered at once; past it a request gets 503.
    #[arg(long, default_value_t = 1_024, value_parser = clap::value_parser!(u64).range(1..))]
    max_requests: u64,
    /// How long an idempotency key is remembered: a retried bid within this time gets
    /// the first answer; older keys are deleted. A number with s, m, h or d.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    idempotency_retention: Duration,
    /// Writes that may wait for the database writer; past it a write gets 503.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    writer_queue: u64,
    /// Most connections opened to the replica for fetches (and to the primary for the
    /// master's own reads).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    read_connections: u64,
    /// Replication lag past which /healthz says replication is stalled (503); with
    /// --nats, also how long the JetStream publisher may be down or behind.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    replication_stall: Duration,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_bidder(text: &str) -> Result<(String, String), String> {
    let (name, token) = text.split_once(':').ok_or("expected NAME:TOKEN")?;
    mock_master::config::validate_bidder_name(name)?;
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok((name.to_owned(), token.to_owned()))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("a probability between 0 and 1".into())
    }
}

impl Cli {
    fn config(&self) -> MasterConfig {
        let defaults = MasterConfig::default();
        MasterConfig {
            storage: if self.in_memory {
                Storage::InMemory
            } else {
                Storage::Dir(self.data_dir.clone())
            },
            primary: self.primary.clone(),
            replica: self.replica.clone(),
            admin_token: self.admin_token.clone().unwrap_or(defaults.admin_token),
            terminal_token: self
                .terminal_token
                .clone()
                .unwrap_or(defaults.terminal_token),
            bidders: self.bidders.clone(),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            fetch_wait: Duration::from_millis(self.fetch_wait_ms),
            anti_snipe: Duration::from_secs(self.anti_snipe_secs),
            log_retention: self.log_retention as usize,
            demo: self.demo,
            simulated_bidders: self.simulate_bidders,
            chaos: self.chaos.then_some(ChaosSettings {
                replica_lag_ms: self.chaos_replica_lag_ms,
                replica_lag_random: self.chaos_replica_lag_random,
                notice_drop_rate: self.chaos_notice_drop_rate,
                fetch_error_rate: self.chaos_fetch_error_rate,
                fetch_delay_ms: self.chaos_fetch_delay_ms,
                pause_replicator: self.chaos_pause_replicator,
                pause_publisher: false,
            }),
            seed: self.seed,
            memcached: self.memcached.clone(),
            nats: (!self.nats.is_empty()).then(|| mock_master::nats::NatsOptions {
                servers: self.nats.clone(),
                prefix: self.nats_prefix.clone(),
                replicas: self.nats_replicas as usize,
                max_age: self.nats_max_age,
                max_messages: self.nats_max_messages,
                keep_epochs: self.nats_keep_epochs as usize,
            }),
            metrics_token: self.metrics_token.clone(),
            limits: lotsync::serve::Limits {
                max_connections: self.max_connections as usize,
                max_streams: self.max_streams as usize,
                max_requests: self.max_requests as usize,
                ..defaults.limits
            },
            idempotency_retention: self.idempotency_retention,
            writer_queue: self.writer_queue as usize,
            read_connections: self.read_connections as usize,
            replication_stall: self.replication_stall,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    lotsync::serve::init_logs(matches!(cli.log_format, LogFormat::Json));
    // A bad scenario file fails before anything listens.
    let scenario = cli
        .scenario
        .as_deref()
        .map(|path| mock_master::scenario::Scenario::load(path, cli.seed))
        .transpose()?;
    let mut config = cli.config();
    if let Some(scenario) = &scenario {
        scenario.prepare(&mut config);
    }
    config.validate().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    // Which roles can be used, never their secrets (they are in the caller's hands).
    let role = |given: bool| {
        if given {
            "token given"
        } else {
            "off: pass a token to enable"
        }
    };
    writeln!(out, "admin: {}", role(cli.admin_token.is_some()))?;
    writeln!(out, "terminal: {}", role(cli.terminal_token.is_some()))?;
    let bidders: Vec<&str> = config
        .bidders
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    writeln!(
        out,
        "bidders: {}",
        if bidders.is_empty() {
            "none".to_owned()
        } else {
            bidders.join(", ")
        }
    )?;
    if config.metrics_token.is_some() {
        writeln!(out, "metrics: token required")?;
    }
    out.flush()?;
    drop(out);
    tracing::info!(%addr, config = ?config, "starting");
    let wall = match cli.wall {
        Some(wall) => Some(start_wall(&cli, wall, addr, &config.terminal_token).await?),
        None => None,
    };
    match scenario {
        Some(scenario) => {
            mock_master::scenario::run(config, listener, shutdown_signal(), scenario).await
        }
        None => mock_master::run(config, listener, shutdown_signal()).await,
    }
    .context("the master failed")?;
    if let Some(wall) = wall {
        wall.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `--wall`: a terminal server in this process, following the master at `master`, with
/// the browser wall display. Prints the display's address.
async fn start_wall(
    cli: &Cli,
    wall: SocketAddr,
    master: SocketAddr,
    terminal_token: &str,
) -> anyhow::Result<lotsync::serve::TerminalServer> {
    let given = cli.wall_token.clone();
    let token = given
        .clone()
        .unwrap_or_else(mock_master::config::random_token);
    let server = lotsync::serve::TerminalServer::builder(format!("http://{master}"))
        .token(terminal_token)
        .display_token(&token)
        .start()
        .context("cannot start the wall's terminal server")?;
    let listener = tokio::net::TcpListener::bind(wall)
        .await
        .with_context(|| format!("cannot listen on {wall} for the wall display"))?;
    let bound = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    match given {
        // A token the user chose stays theirs: not printed.
        Some(_) => writeln!(
            out,
            "wall display: http://{bound}/display?token=<--wall-token>"
        )?,
        // A one-off token made for this run is the way in: the address carries it.
        None => writeln!(out, "wall display: http://{bound}/display?token={token}")?,
    }
    out.flush()?;
    let serving = server.clone();
    tokio::spawn(async move {
        if let Err(error) = serving.serve(listener, shutdown_signal()).await {
            tracing::error!(%error, "the wall display stopped");
        }
    });
    Ok(server)
}
