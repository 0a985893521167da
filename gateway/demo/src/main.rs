//! `gateway-demo`: the gateway on its embedded defaults with a simulated
//! compound around it (see the library's docs). The README's first command.

use std::process::ExitCode;

use clap::Parser as _;

/// The command line of `gateway-demo`.
#[derive(Debug, clap::Parser)]
#[command(
    version,
    about = "The facility-safety gateway on embedded defaults with a simulated compound (设施安全网关演示)"
)]
struct DemoArgs {
    /// Where it listens and stores.
    #[command(flatten)]
    places: gateway::app::cli::Places,
    /// A fault about this often, on average.
    #[arg(long, default_value = "45s", value_parser = humantime::parse_duration)]
    fault_every: std::time::Duration,
    /// When the first fault happens (smoke in a charging bay).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    first_fault: std::time::Duration,
    /// No faults: a quiet compound.
    #[arg(long)]
    no_faults: bool,
    /// Seed of the traffic and of which device a fault befalls.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A configuration file whose `[upstream]` (elevator supervision
    /// platforms, ...) the demo feeds with its alarms (docs/integrations.md).
    #[arg(long)]
    upstream: Option<std::path::PathBuf>,
}

impl DemoArgs {
    /// The embedded defaults with the command line's overrides (and the
    /// `--upstream` file's platforms).
    ///
    /// # Errors
    /// The `--upstream` file's problem.
    fn base(&self) -> Result<gateway::app::config::Config, gateway::app::config::ConfigError> {
        let mut config = gateway::app::config::Config::default();
        if let Some(path) = &self.upstream {
            config.upstream = gateway::app::config::Config::load(path)?.upstream;
        }
        self.places.apply(&mut config);
        Ok(config)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = DemoArgs::parse();
    let token = match gateway::app::cli::admin_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base = match args.base() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let faults = (!args.no_faults).then_some(gateway_demo::Faults {
        first: args.first_fault,
        every: args.fault_every,
    });
    match runtime.block_on(gateway_demo::run(
        &base,
        token,
        faults,
        args.seed,
        gateway::app::cli::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
