//! The `tui-client` binary: parse and check flags, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use tui_client::{cli, launch, logging};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let source = match cli.validate(cli::stdout_is_terminal()) {
        Ok(source) => source,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(cli.log_file.as_deref(), cli.headless) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(launch::run(cli, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
