//! The command line (`clap`): `gateway run` and `gateway check`. Exit codes:
//! 0 ok, 1 runtime failure, 2 usage or configuration error.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// The facility-safety gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (embedded broker and store without a config).
    Run(RunArgs),
    /// Validate a configuration file; exit 2 naming file, line and field on error.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Options of `gateway run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); without one, embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Embedded broker address (default 127.0.0.1:1883).
    #[arg(long)]
    pub mqtt_listen: Option<SocketAddr>,
    /// HTTP API address (default 127.0.0.1:8080).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Data directory (default ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl RunArgs {
    /// The configuration: the file (or defaults) with command-line overrides.
    ///
    /// # Errors
    /// The file's [`crate::config::ConfigError`].
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(a) = self.mqtt_listen {
            config.mqtt.listen = a;
        }
        if let Some(a) = self.http_listen {
            config.http.listen = a;
        }
        if let Some(d) = &self.data_dir {
            config.storage.data_dir.clone_from(d);
        }
        Ok(config)
    }
}
