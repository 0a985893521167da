//! The command line (`clap`): `gateway run`, `gateway check`, `gateway
//! records verify|export`, `gateway devices add|list|revoke` and `gateway
//! backup|restore`. Exit codes: 0 ok, 1 runtime failure (or a record
//! chain that does not verify), 2 usage or configuration error.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::config::Config;

/// The facility-safety gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on standard error as `text` (coloured only on a terminal
    /// without `NO_COLOR`) or `json` (one object a line); `RUST_LOG` filters.
    #[arg(long, global = true, value_enum, env = "GATEWAY_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::app::logging::LogFormat,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (embedded broker and store without a config).
    Run(RunArgs),
    /// Validate a configuration file; on errors, print every one (file,
    /// line and field each) and exit 2.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// The supervision record chain, offline (no gateway running needed).
    Records {
        /// What to do with it.
        #[command(subcommand)]
        command: RecordsCommand,
    },
    /// Device credentials for the embedded broker, offline (the gateway
    /// stopped; while it runs, use `POST /api/v1/devices`).
    Devices {
        /// What to do.
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Copy the store to a file while the gateway runs (SQLite's online
    /// backup); prints what it holds as JSON (docs/operations.md).
    Backup {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The backup file to write (replaced only once the new copy is complete and checked).
        #[arg(long)]
        to: PathBuf,
    },
    /// Put a backup into an empty data directory, the gateway stopped; the
    /// record chain must verify with the signing key first.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The data directory to fill (no store in it yet).
        #[arg(long)]
        data_dir: PathBuf,
        /// The copy of `records.key` kept apart from the backups (copied in
        /// if the data directory has none).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Periodic duties (docs/workorders.md).
    Duties {
        /// What to do.
        #[command(subcommand)]
        command: DutiesCommand,
    },
}

/// `gateway duties ...`.
#[derive(Debug, Subcommand)]
pub enum DutiesCommand {
    /// Read a maintenance log (CSV with columns site, device, duty, at) and
    /// print each device's last visit as `[[dispatch.last_done]]` tables, to
    /// add to the configuration: a duty's first due date then counts from
    /// the visit. Every bad row is named by its line (exit 2).
    Import {
        /// The CSV file (`-` for standard input).
        file: PathBuf,
    },
}

/// Runs `gateway duties ...`; the exit code.
#[must_use]
pub fn duties(command: DutiesCommand) -> std::process::ExitCode {
    let DutiesCommand::Import { file } = command;
    let text = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(&file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return std::process::ExitCode::from(1);
        }
    };
    match dispatch::import::read_log(&text) {
        Ok(visits) => {
            print!("{}", dispatch::import::to_toml(&visits));
            std::process::ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in problems {
                eprintln!("error: {}:{}: {}", file.display(), p.line, p.message);
            }
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs `gateway backup` or `gateway restore`: prints the report as JSON; the exit code.
#[must_use]
pub fn backup_or_restore(cmd: Command) -> std::process::ExitCode {
    use crate::ops::backup;
    let done = match cmd {
        Command::Backup { data_dir, to } => backup::backup(&data_dir, &to),
        Command::Restore { from, data_dir, key } => backup::restore(&from, &data_dir, key.as_deref()),
        _ => return std::process::ExitCode::from(2),
    };
    match done {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// `gateway devices ...`.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Provision a device: prints `{site, class, device, username, password, cmd_key}` once.
    Add {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The compound.
        #[arg(long)]
        site: String,
        /// `elevator`, `firepump` or `charger`.
        #[arg(long)]
        class: String,
        /// The device id.
        #[arg(long)]
        device: String,
        /// SHA-256 (hex) of a client certificate it may log in with over TLS.
        #[arg(long)]
        certificate_sha256: Option<String>,
        /// Provisioned already: make new secrets (the old ones stop working).
        #[arg(long)]
        rotate: bool,
    },
    /// List provisioned devices (no secrets).
    List {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print an `acl_file` for an outside Mosquitto's node listener (docs/security.md).
    MosquittoAcl {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Revoke a device: it can no longer connect.
    Revoke {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The compound.
        #[arg(long)]
        site: String,
        /// The device id.
        #[arg(long)]
        device: String,
    },
}

/// Provisions a device in a data directory no gateway runs on, as `gateway
/// devices add` does; the answer (with its secrets). For tools that set up
/// a compound before starting its gateway (the HIL bench with `auth = "devices"`).
///
/// # Errors
/// What `gateway devices add` prints.
pub fn add_device_offline(
    data_dir: &std::path::Path,
    new: crate::ops::provisioning::NewDevice,
) -> Result<serde_json::Value, String> {
    let cmd = DevicesCommand::Add {
        data_dir: data_dir.to_owned(),
        site: new.site,
        class: new.class,
        device: new.device,
        certificate_sha256: new.certificate_sha256,
        rotate: new.rotate,
    };
    match devices_offline(cmd).map_err(|(_, e)| e)? {
        Printed::Json(answer) => Ok(answer),
        Printed::Text(t) => Err(format!("not an answer: {t}")),
    }
}

/// What a `gateway devices` command prints.
enum Printed {
    /// Pretty JSON (a provisioning answer, the list).
    Json(serde_json::Value),
    /// Text as it is (an ACL file, a confirmation).
    Text(String),
}

/// Runs `gateway devices ...`; the exit code (2 for a refused request, 1 for a failure).
#[must_use]
pub fn devices(cmd: DevicesCommand) -> std::process::ExitCode {
    use std::process::ExitCode;
    match devices_offline(cmd) {
        Ok(Printed::Json(v)) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(Printed::Text(t)) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err((code, e)) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

fn devices_offline(cmd: DevicesCommand) -> Result<Printed, (u8, String)> {
    use crate::ops::provisioning::{self, NewDevice, ProvisionError};
    use crate::store::credentials;
    let fail = |e: &dyn std::fmt::Display| (1, e.to_string());
    let refused = |e: ProvisionError| match e {
        ProvisionError::Secrets(m) => (1, m),
        e => (2, e.to_string()),
    };
    let now = crate::app::run::now_ms();
    let by = std::env::var("USER").map_or_else(|_| "cli".to_owned(), |u| format!("cli:{u}"));
    let dir = match &cmd {
        DevicesCommand::Add { data_dir, .. }
        | DevicesCommand::List { data_dir }
        | DevicesCommand::MosquittoAcl { data_dir }
        | DevicesCommand::Revoke { data_dir, .. } => data_dir.clone(),
    };
    if let DevicesCommand::List { .. } | DevicesCommand::MosquittoAcl { .. } = cmd {
        let store = open_existing(&dir).map_err(|e| (1, e))?;
        let all = credentials::list(store.conn()).map_err(|e| fail(&e))?;
        if let DevicesCommand::MosquittoAcl { .. } = cmd {
            return Ok(Printed::Text(provisioning::mosquitto_acl(&all)));
        }
        return Ok(Printed::Json(all.iter().map(provisioning::listed).collect()));
    }
    // Writing: only while no gateway runs on this directory (it owns the
    // record chain's tail; two writers would fork it).
    let _lock = crate::store::DataDirLock::take(&dir).map_err(|e| (1, e))?;
    let mut store = crate::store::Store::open(&dir).map_err(|e| fail(&e))?;
    let (change, record, out) = match cmd {
        DevicesCommand::Add {
            site,
            class,
            device,
            certificate_sha256,
            rotate,
            ..
        } => {
            let new = NewDevice {
                site,
                class,
                device,
                certificate_sha256,
                rotate,
            };
            let found = credentials::get(store.conn(), &new.site, &new.device).map_err(|e| fail(&e))?;
            let made = provisioning::provision(&new, found.as_ref(), now, &by).map_err(refused)?;
            (made.change, made.record, Printed::Json(made.answer))
        }
        DevicesCommand::Revoke { site, device, .. } => {
            let found = credentials::get(store.conn(), &site, &device).map_err(|e| fail(&e))?;
            let (change, record) = provisioning::revoke(&site, &device, found.as_ref(), now, &by).map_err(refused)?;
            let said = format!("revoked {}", crate::identity::username(&site, &device));
            (change, record, Printed::Text(said))
        }
        DevicesCommand::List { .. } | DevicesCommand::MosquittoAcl { .. } => unreachable!("answered above"),
    };
    let signer = crate::ops::supervision::signer(&dir.join("records.key")).map_err(|e| fail(&e))?;
    let chain = crate::ops::supervision::Chain::open(store.conn(), signer, i64::MAX, u64::MAX).map_err(|e| fail(&e))?;
    store
        .transact(|tx| {
            credentials::write(tx, std::slice::from_ref(&change))?;
            // A checkpoint signs the offline change at once.
            chain.append(tx, now, record.into_iter().collect(), true)?;
            Ok(())
        })
        .map_err(|e| fail(&e))?;
    Ok(out)
}

/// `gateway records ...`.
#[derive(Debug, Subcommand)]
pub enum RecordsCommand {
    /// Check the chain end to end: every hash, every link, every signed
    /// checkpoint. Exits 1 naming the first bad position.
    Verify {
        /// The gateway's data directory.
        #[arg(long, conflicts_with = "export")]
        data_dir: Option<PathBuf>,
        /// An export file (JSON) instead of a data directory: what a third
        /// party checks without the database.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The public key (hex) the checkpoints must be signed with; default
        /// the key in the data directory, or the export's own.
        #[arg(long)]
        key: Option<String>,
    },
    /// Write the chain (or a selection) as JSON with its checkpoints, or CSV.
    Export {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// `json` (verifiable) or `csv`.
        #[arg(long, default_value = "json")]
        format: String,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Only this compound.
        #[arg(long)]
        site: Option<String>,
        /// From (RFC 3339 or ms since the epoch).
        #[arg(long)]
        from: Option<String>,
        /// To (RFC 3339 or ms since the epoch).
        #[arg(long)]
        to: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A time argument: ms since the epoch or RFC 3339 with an offset.
fn time_arg(name: &str, text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .or_else(|_| alerting::config::parse_time(text))
        .map_err(|e| format!("--{name}: {e}"))
}

/// Runs `gateway records ...`; the exit code.
#[must_use]
pub fn records(cmd: RecordsCommand) -> std::process::ExitCode {
    use std::process::ExitCode;
    match cmd {
        RecordsCommand::Verify { data_dir, export, key } => {
            let verified = match (data_dir, export) {
                (Some(dir), None) => verify_dir(&dir, key.as_deref()),
                (None, Some(file)) => std::fs::File::open(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))
                    .and_then(|f| {
                        records::read_json(std::io::BufReader::new(f)).map_err(|e| format!("{}: {e}", file.display()))
                    })
                    .map(|x| x.verify(key.as_deref())),
                _ => {
                    eprintln!("error: give --data-dir or --export");
                    return ExitCode::from(2);
                }
            };
            match verified {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    if v.ok {
                        eprintln!("ok: {} records, {} signed checkpoints", v.count, v.checkpoints);
                        ExitCode::SUCCESS
                    } else {
                        if let Some(p) = &v.problem {
                            eprintln!("NOT OK at position {}: {}", p.position, p.message);
                        }
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        RecordsCommand::Export {
            data_dir,
            format,
            device,
            site,
            from,
            to,
            out,
        } => {
            let csv = match format.as_str() {
                "json" => false,
                "csv" => true,
                f => {
                    eprintln!("error: --format is json or csv, not `{f}`");
                    return ExitCode::from(2);
                }
            };
            let range = (
                from.as_deref().map(|t| time_arg("from", t)).transpose(),
                to.as_deref().map(|t| time_arg("to", t)).transpose(),
            );
            let (from, to) = match range {
                (Ok(f), Ok(t)) => (f, t),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let q = crate::ops::supervision::RecordQuery {
                device,
                sites: site.map(|s| vec![s]),
                from,
                to,
                limit: usize::MAX,
                ..Default::default()
            };
            match export_dir(&data_dir, &q, csv, out.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The store of a data directory that must already exist (never created by
/// a verification).
fn open_existing(dir: &std::path::Path) -> Result<crate::store::Store, String> {
    if !dir.join("gateway.sqlite").is_file() {
        return Err(format!("{}: no gateway.sqlite here", dir.display()));
    }
    crate::store::Store::open(dir).map_err(|e| e.to_string())
}

/// Verifies the record chain of a data directory against its own key, as
/// `gateway records verify --data-dir` does: for tools that run a gateway
/// and then check what it wrote (the HIL bench).
///
/// # Errors
/// A data directory without a store, or a store that cannot be read.
pub fn verify_data_dir(dir: &std::path::Path) -> Result<records::Verification, String> {
    verify_dir(dir, None)
}

fn verify_dir(dir: &std::path::Path, key: Option<&str>) -> Result<records::Verification, String> {
    let store = open_existing(dir)?;
    let key = if let Some(k) = key {
        Some(k.to_owned())
    } else {
        let path = dir.join("records.key");
        path.is_file()
            .then(|| records::Signer::load_or_create(&path).map(|s| s.public_key_hex()))
            .transpose()
            .map_err(|e| e.to_string())?
    };
    crate::ops::supervision::verify(store.conn(), key.as_deref()).map_err(|e| e.to_string())
}

fn export_dir(
    dir: &std::path::Path,
    q: &crate::ops::supervision::RecordQuery,
    csv: bool,
    out: Option<&std::path::Path>,
) -> Result<(), String> {
    use std::io::Write as _;
    let store = open_existing(dir)?;
    // The key is read, never created, by an export.
    let path = dir.join("records.key");
    let key = path
        .is_file()
        .then(|| records::Signer::load_or_create(&path).map(|s| s.public_key_hex()))
        .transpose()
        .map_err(|e| e.to_string())?;
    if let Some(path) = out {
        let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        crate::ops::supervision::export(&store, q, key.as_deref(), csv, &mut w)?;
        w.flush().map_err(|e| format!("{}: {e}", path.display()))
    } else {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        crate::ops::supervision::export(&store, q, key.as_deref(), csv, &mut w)?;
        w.flush().map_err(|e| e.to_string())
    }
}

/// Options of `gateway run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); without one, embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where it listens and stores.
    #[command(flatten)]
    pub places: Places,
}

/// The addresses and the data directory, shared by `run` and `gateway-demo`.
#[derive(Debug, clap::Args)]
pub struct Places {
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
    /// The file's [`crate::app::config::ConfigError`].
    pub fn config(&self) -> Result<Config, crate::app::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        self.places.apply(&mut config);
        Ok(config)
    }
}

impl Places {
    /// Puts the command line's addresses and directory over `config`'s.
    pub fn apply(&self, config: &mut Config) {
        if let Some(a) = self.mqtt_listen {
            config.mqtt.listen = a;
        }
        if let Some(a) = self.http_listen {
            config.http.listen = a;
        }
        if let Some(d) = &self.data_dir {
            config.storage.data_dir.clone_from(d);
        }
    }
}

/// Runs `gateway check`: `FILE: ok`, or every problem of the file, one
/// per line (`error: FILE:LINE:COLUMN: field `F`: what`), and exit 2.
#[must_use]
pub fn check(path: &std::path::Path) -> std::process::ExitCode {
    match Config::load_checked(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            std::process::ExitCode::SUCCESS
        }
        Err(all) => {
            for e in &all {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{}: {} problem{}",
                path.display(),
                all.len(),
                if all.len() == 1 { "" } else { "s" }
            );
            std::process::ExitCode::from(2)
        }
    }
}

/// The admin token: from the environment if set there ([`admin_token`]:
/// `GATEWAY_ADMIN_TOKEN` or `GATEWAY_ADMIN_TOKEN_FILE`), else the
/// configuration's `http.admin_token` (`admin_token_file` in the packaged
/// example), else a new random token printed once.
///
/// # Errors
/// As [`admin_token`].
pub fn admin_token_for(config: &Config) -> anyhow::Result<String> {
    let from_env = ["GATEWAY_ADMIN_TOKEN", "GATEWAY_ADMIN_TOKEN_FILE"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|t| !t.is_empty()));
    match &config.http.admin_token {
        // Checked at load: at least MIN_ADMIN_TOKEN characters.
        Some(t) if !from_env => Ok(t.clone()),
        _ => admin_token(),
    }
}

/// The shortest `GATEWAY_ADMIN_TOKEN` taken: 16 characters (a guessable
/// admin token is an open door to every device's credentials and commands).
pub const MIN_ADMIN_TOKEN: usize = 16;

/// `GATEWAY_ADMIN_TOKEN`, or the file `GATEWAY_ADMIN_TOKEN_FILE` names (a
/// systemd credential, the Debian package's `/etc/fm-gateway/admin-token`;
/// one trailing newline dropped, as for the configuration's `*_file`), or a
/// new random token printed once.
///
/// # Errors
/// A token shorter than [`MIN_ADMIN_TOKEN`]; both variables set; an
/// unreadable token file; no token given and the OS has no randomness for one.
pub fn admin_token() -> anyhow::Result<String> {
    if let Ok(path) = std::env::var("GATEWAY_ADMIN_TOKEN_FILE")
        && !path.is_empty()
    {
        anyhow::ensure!(
            std::env::var("GATEWAY_ADMIN_TOKEN").ok().is_none_or(|t| t.is_empty()),
            "GATEWAY_ADMIN_TOKEN and GATEWAY_ADMIN_TOKEN_FILE are both set; give one"
        );
        let text =
            std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("GATEWAY_ADMIN_TOKEN_FILE {path}: {e}"))?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let t = line.strip_suffix('\r').unwrap_or(line);
        anyhow::ensure!(
            t.chars().count() >= MIN_ADMIN_TOKEN,
            "the token in {path} (GATEWAY_ADMIN_TOKEN_FILE) is {} characters; at least {MIN_ADMIN_TOKEN} are needed",
            t.chars().count()
        );
        return Ok(t.to_owned());
    }
    if let Ok(t) = std::env::var("GATEWAY_ADMIN_TOKEN")
        && !t.is_empty()
    {
        anyhow::ensure!(
            t.chars().count() >= MIN_ADMIN_TOKEN,
            "GATEWAY_ADMIN_TOKEN is {} characters; at least {MIN_ADMIN_TOKEN} are needed (unset it and one is generated)",
            t.chars().count()
        );
        return Ok(t);
    }
    let token = crate::app::run::random_token()?;
    println!("admin token (set GATEWAY_ADMIN_TOKEN to choose one): {token}");
    Ok(token)
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
