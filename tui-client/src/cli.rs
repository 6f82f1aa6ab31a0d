//! Command-line flags and their validation.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;

/// Live auction dashboard for bidders and floor displays.
///
/// Connects to a lotsync master (or, with --demo, starts one in-process with a demo
/// auction and bidding bots) and shows every lot's price and status the moment it
/// changes.
#[derive(Debug, Clone, Parser)]
#[command(name = "tui-client", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Base URL of the master, such as http://127.0.0.1:8080 (required unless --demo).
    #[arg(long, value_name = "URL")]
    pub master: Option<String>,

    /// Terminal bearer token for reading notices and lots.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LOTSYNC_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Bidder bearer token: enables the bid box (`b`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LOTSYNC_BIDDER_TOKEN",
        hide_env_values = true
    )]
    pub bidder_token: Option<String>,

    /// Start a master in-process with the demo catalogue and bidding bots, and bid as "you".
    #[arg(long)]
    pub demo: bool,

    /// Number of simulated bidders in the demo.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub bots: usize,

    /// No terminal UI: write every update as one JSON line on stdout.
    #[arg(long)]
    pub headless: bool,

    /// Start on the floor display (one lot in big type, for a wall screen).
    #[arg(long)]
    pub floor: bool,

    /// Pin the floor display to this lot instead of following the one closing soonest.
    #[arg(long, value_name = "ID")]
    pub lot: Option<String>,

    /// Only this lane: the floor display follows the lane's live lot and the table
    /// shows the lane's lots (`l` cycles lanes while running).
    #[arg(long, value_name = "LANE")]
    pub lane: Option<String>,

    /// Write logs to this file (the terminal is the screen, so logs never go there).
    /// With --headless, logs go to stderr unless this is set.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Read changed lots from these memcached servers (kept warm by the master's cache
    /// tier) before asking the master: HOST:PORT, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    pub memcached: Vec<String>,

    /// Follow notices on NATS JetStream (published by the master with --nats) instead
    /// of the master's notice stream: nats://[USER:PASSWORD@]HOST:PORT, comma-separated.
    /// Snapshots, fetches and bids still go to --master.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "URL",
        conflicts_with = "demo"
    )]
    pub nats: Vec<String>,

    /// With --nats: the prefix the master publishes under (its --nats-prefix).
    #[arg(long, default_value = lotsync::protocol::jetstream::DEFAULT_PREFIX, requires = "nats")]
    pub nats_prefix: String,

    /// Serve the client's metrics for Prometheus at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

const EXAMPLES: &str = "Examples:
  tui-client --demo
  tui-client --master http://127.0.0.1:8080 --token T --bidder-token B
  tui-client --master http://127.0.0.1:8080 --token T --floor --lot lot-17
  tui-client --demo --floor --lane A
  tui-client --demo --headless | jq .type";

/// Where the lots come from, once the flags are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An in-process demo master with this many bots.
    Demo {
        /// Simulated bidders.
        bots: usize,
    },
    /// A remote master.
    Master {
        /// Its base URL.
        url: String,
        /// Terminal token.
        token: String,
        /// Bidder token, if bidding is wanted.
        bidder_token: Option<String>,
    },
}

/// Most bots a demo runs: more would only make the demo unreadable.
pub const MAX_BOTS: usize = 100;

impl Cli {
    /// Check flags that clap cannot check alone. `stdout_is_terminal` is passed in so
    /// the rule is testable.
    pub fn validate(&self, stdout_is_terminal: bool) -> Result<Source, String> {
        if !self.headless && !stdout_is_terminal {
            return Err("stdout is not a terminal: the dashboard needs one. \
                 Use --headless to get every update as JSON lines instead."
                .to_owned());
        }
        if self.headless && self.floor {
            return Err("--floor is a screen; it cannot be combined with --headless".to_owned());
        }
        if let Some(lane) = &self.lane {
            lotsync::protocol::validate_lane(lane)
                .map_err(|e| format!("--lane {lane:?}: {}", e.message))?;
        }
        if let Some(lot) = &self.lot {
            lotsync::protocol::validate_lot_id(lot)
                .map_err(|e| format!("--lot {lot:?}: {}", e.message))?;
        }
        if self.bots > MAX_BOTS {
            return Err(format!("--bots {}: at most {MAX_BOTS}", self.bots));
        }
        if self.demo {
            if !cfg!(feature = "demo") {
                return Err(
                    "--demo: this build has no demo (built without the `demo` feature)".to_owned(),
                );
            }
            if self.master.is_some() {
                return Err("--demo runs its own master; leave out --master".to_owned());
            }
            return Ok(Source::Demo { bots: self.bots });
        }
        let Some(url) = self.master.clone() else {
            return Err(
                "--master URL is required (or use --demo for a self-contained auction)".to_owned(),
            );
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--master {url:?}: expected an http:// or https:// URL"
            ));
        }
        let Some(token) = self.token.clone().filter(|t| !t.is_empty()) else {
            return Err("--token (or LOTSYNC_TOKEN) is required with --master".to_owned());
        };
        let bidder_token = self.bidder_token.clone().filter(|t| !t.is_empty());
        Ok(Source::Master {
            url,
            token,
            bidder_token,
        })
    }
}

/// Whether stdout is a terminal.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tui-client").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn master_needs_a_url_and_a_token() {
        let err = parse(&[]).validate(true).unwrap_err();
        assert!(err.contains("--master URL is required"), "{err}");
        let mut cli = parse(&["--master", "http://m:1"]);
        cli.token = None; // whatever the environment says
        assert!(cli.validate(true).unwrap_err().contains("--token"));
        cli.token = Some("t".into());
        cli.bidder_token = None;
        let source = cli.validate(true).unwrap();
        assert_eq!(
            source,
            Source::Master {
                url: "http://m:1".into(),
                token: "t".into(),
                bidder_token: None
            }
        );
        assert!(
            parse(&["--master", "m:1"])
                .validate(true)
                .unwrap_err()
                .contains("http://")
        );
    }

    #[test]
    fn a_pipe_needs_headless() {
        let err = parse(&["--demo"]).validate(false).unwrap_err();
        assert!(
            err.contains("not a terminal") && err.contains("--headless"),
            "{err}"
        );
        if cfg!(feature = "demo") {
            assert_eq!(
                parse(&["--demo", "--headless"]).validate(false),
                Ok(Source::Demo { bots: 6 })
            );
        } else {
            let err = parse(&["--demo", "--headless"])
                .validate(false)
                .unwrap_err();
            assert!(err.contains("no demo"), "{err}");
        }
    }

    #[test]
    fn bad_combinations_are_named() {
        assert!(
            parse(&["--demo", "--master", "http://m"])
                .validate(true)
                .unwrap_err()
                .contains("--demo")
        );
        assert!(
            parse(&["--demo", "--lot", "a/b"])
                .validate(true)
                .unwrap_err()
                .contains("--lot")
        );
        assert!(
            parse(&["--demo", "--bots", "1000"])
                .validate(true)
                .unwrap_err()
                .contains("--bots")
        );
        assert!(
            parse(&["--demo", "--headless", "--floor"])
                .validate(false)
                .unwrap_err()
                .contains("--floor")
        );
    }
}
