//! Logging set-up. The terminal is the screen, so in dashboard mode logs go to a file
//! or nowhere; in headless mode stdout carries JSON lines, so logs go to stderr.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `RUST_LOG` overrides the default level (info).
pub fn init(log_file: Option<&Path>, headless: bool) -> anyhow::Result<()> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if let Some(path) = log_file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the log file {}", path.display()))?;
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .init();
    } else if headless {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    }
    // Dashboard without a log file: no subscriber, so nothing can scribble on the screen.
    Ok(())
}
