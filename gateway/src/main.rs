//! The `gateway` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use gateway::app::cli::{Cli, Command};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match gateway::app::config::Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Records { command } => gateway::app::cli::records(command),
        Command::Demo(args) => {
            let token = admin_token();
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            let faults = (!args.no_faults).then_some(gateway::demo::Faults {
                first: args.first_fault,
                every: args.fault_every,
            });
            match runtime.block_on(gateway::demo::run(
                &args.base(),
                token,
                faults,
                args.seed,
                shutdown_signal(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            let config = match args.config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let token = admin_token();
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(gateway::app::run::run(config, token, shutdown_signal())) {
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

/// `GATEWAY_ADMIN_TOKEN`, or a new random token printed once.
fn admin_token() -> String {
    if let Ok(t) = std::env::var("GATEWAY_ADMIN_TOKEN")
        && !t.is_empty()
    {
        return t;
    }
    let token = gateway::app::run::random_token();
    println!("admin token (set GATEWAY_ADMIN_TOKEN to choose one): {token}");
    token
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
