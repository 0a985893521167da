//! The `gateway` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use gateway::app::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    gateway::app::logging::init(cli.log_format);
    match cli.command {
        Command::Check { config } => gateway::app::cli::check(&config),
        Command::Records { command } => gateway::app::cli::records(command),
        Command::Devices { command } => gateway::app::cli::devices(command),
        Command::Duties { command } => gateway::app::cli::duties(command),
        cmd @ (Command::Backup { .. } | Command::Restore { .. }) => gateway::app::cli::backup_or_restore(cmd),
        Command::Run(args) => {
            let config = match args.config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let token = match gateway::app::cli::admin_token_for(&config) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(gateway::app::run::run(
                config,
                token,
                gateway::app::cli::shutdown_signal(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The tokio runtime, or `None` (said on stderr) if it cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .inspect_err(|e| eprintln!("error: cannot start the runtime: {e}"))
        .ok()
}
