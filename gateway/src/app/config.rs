//! The gateway's configuration: TOML, parsed with serde into typed fields, so
//! a bad address, an unknown key or a wrong type is reported with the file,
//! line, column and field that caused it (`gateway check`).

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration. Every section is optional: an empty file is the
/// embedded default (embedded broker, embedded store, local HTTP).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where telemetry comes from.
    pub mqtt: MqttConfig,
    /// The HTTP API and console.
    pub http: HttpConfig,
    /// The embedded time-series and state store.
    pub storage: StorageConfig,
    /// Devices polled over Modbus TCP.
    pub modbus: ModbusConfig,
    /// An InfluxDB 2 (or compatible) server to copy telemetry to, for Grafana.
    pub influx: Option<crate::store::influx::InfluxConfig>,
    /// Rule packs, overrides, maintenance windows, buildings, timings (see docs/rules.md).
    pub alerting: alerting::AlertingConfig,
    /// Work orders: assignments, deadlines, periodic duties (see docs/workorders.md).
    pub dispatch: dispatch::PolicyConfig,
    /// Judgement from history: frequent faults, health, trends (see docs/judgement.md).
    pub judgement: judgement::JudgementConfig,
    /// The compounds' display names (`[[sites]]`): what screens show for a site id.
    pub sites: Vec<crate::directory::SiteConfig>,
    /// The people and systems told of alerts and orders (`[[contacts]]`).
    pub contacts: Vec<notify::Contact>,
    /// How they are told: SMTP, the robots' and SMS gateway's APIs, retries, the MQTT topic prefix.
    pub notify: NotifyConfig,
    /// The supervision record chain: its signing key and checkpoints.
    pub records: RecordsConfig,
    /// Commands the gateway sends on its own: smoke cut-offs, the weekly
    /// pump self-test, doors held for an e-bike, threshold overrides (`[commands]`).
    pub commands: crate::ops::commands::CommandsConfig,
    /// The platforms the city runs, fed through a persistent outbox (`[upstream]`, CONTRACT §10).
    pub upstream: UpstreamConfig,
    /// Sparkplug B edge nodes, taken in as ours (`[sparkplug]`, docs/integrations.md).
    pub sparkplug: Option<crate::ingest::sparkplug::SparkplugConfig>,
    /// The file and its text, when loaded from one (recorded when it changes).
    #[serde(skip)]
    pub source: Option<(PathBuf, String)>,
}

/// `[notify]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The SMTP server for contacts with `email` (none: e-mail is not sent,
    /// and `gateway check` says so for contacts that have only e-mail).
    pub smtp: Option<notify::SmtpConfig>,
    /// Attempts per delivery before it is a dead letter.
    pub attempts: u32,
    /// First retry after (`2s`), doubling.
    pub first_retry: String,
    /// Longest wait between retries (`5m`).
    pub max_retry: String,
    /// Request timeout of the HTTP channels: webhook, WeCom, DingTalk, SMS (`10s`).
    pub webhook_timeout: String,
    /// Topic prefix of the MQTT channel for contractors' apps:
    /// `{prefix}/{contact}/{kind}`.
    pub mqtt_prefix: String,
    /// Deliveries queued before new ones are dead letters at once.
    pub queue: usize,
    /// `[notify.wecom]`: the WeCom API's base URL (contacts with `wecom`).
    pub wecom: notify::WecomConfig,
    /// `[notify.dingtalk]`: the DingTalk API's base URL (contacts with `dingtalk`).
    pub dingtalk: notify::DingtalkConfig,
    /// `[notify.sms]`: the HTTP SMS gateway (contacts with `sms`).
    pub sms: Option<notify::SmsConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            smtp: None,
            attempts: 6,
            first_retry: "2s".into(),
            max_retry: "5m".into(),
            webhook_timeout: "10s".into(),
            mqtt_prefix: "fm/v1/dispatch".into(),
            queue: 4096,
            wecom: notify::WecomConfig::default(),
            dingtalk: notify::DingtalkConfig::default(),
            sms: None,
        }
    }
}

impl NotifyConfig {
    /// The retry policy.
    ///
    /// # Errors
    /// The field and message of a bad duration.
    pub fn retry(&self) -> Result<notify::RetryPolicy, (&'static str, String)> {
        Ok(notify::RetryPolicy {
            attempts: self.attempts,
            first: duration("notify.first_retry", &self.first_retry)?,
            max: duration("notify.max_retry", &self.max_retry)?,
        })
    }
}

/// `[upstream]`: the platforms upstream (docs/integrations.md) and how
/// their outbox retries.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Attempts per row before it is a dead letter (`30`: about two hours
    /// of a platform being away with the defaults below).
    pub attempts: u32,
    /// First retry after (`2s`), doubling.
    pub first_retry: String,
    /// Longest wait between retries (`5m`).
    pub max_retry: String,
    /// Elevator supervision platforms (`[[upstream.elevator_platform]]`).
    pub elevator_platform: Vec<crate::upstream::elevator::PlatformConfig>,
    /// Regional profiles of those platforms (`[[upstream.elevator_profile]]`).
    pub elevator_profile: Vec<crate::upstream::elevator::ProfileConfig>,
    /// The fire remote-monitoring centre (`[upstream.fire_centre]`, GB/T 26875.3).
    pub fire_centre: Option<crate::upstream::fire_centre::FireCentreConfig>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            attempts: 30,
            first_retry: "2s".into(),
            max_retry: "5m".into(),
            elevator_platform: Vec::new(),
            elevator_profile: Vec::new(),
            fire_centre: None,
        }
    }
}

impl UpstreamConfig {
    /// The outbox's retry policy.
    ///
    /// # Errors
    /// The field and message of a bad duration.
    pub fn retry(&self) -> Result<notify::RetryPolicy, (&'static str, String)> {
        Ok(notify::RetryPolicy {
            attempts: self.attempts,
            first: duration("upstream.first_retry", &self.first_retry)?,
            max: duration("upstream.max_retry", &self.max_retry)?,
        })
    }

    fn validate(&self, p: &mut Problems) {
        p.take(self.retry());
        if self.attempts == 0 {
            p.add("upstream.attempts", "must be at least 1".into());
        }
        for (field, message) in crate::upstream::elevator::check(&self.elevator_platform, &self.elevator_profile) {
            p.add(field, message);
        }
        for (field, message) in crate::upstream::fire_centre::check(self.fire_centre.as_ref()) {
            p.add(field, message);
        }
    }
}

/// A positive duration field (`2s`, `5m`).
fn duration(field: &'static str, text: &str) -> Result<std::time::Duration, (&'static str, String)> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err((field, "must be longer than zero".into())),
        Err(e) => Err((field, format!("`{text}` is not a duration (2s, 5m): {e}"))),
    }
}

/// `[records]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsConfig {
    /// The ed25519 signing key (hex seed); default `records.key` in the data
    /// directory, created on first start. Keep a copy away from the gateway.
    pub key_file: Option<PathBuf>,
    /// A signed checkpoint at least this often while records are written (`1h`).
    pub checkpoint_every: String,
    /// ... and after at most this many records.
    pub checkpoint_records: u64,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            key_file: None,
            checkpoint_every: "1h".into(),
            checkpoint_records: 1000,
        }
    }
}

impl RecordsConfig {
    /// The key file, given the data directory.
    #[must_use]
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| data_dir.join("records.key"))
    }
}

/// `[[http.tokens]]`: a bearer token with one role and a scope.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who it is (stamped on acknowledgements and steps).
    pub name: String,
    /// The token itself (at least 16 characters); or leave it out of the
    /// file and give `token_sha256`.
    #[serde(default)]
    pub token: Option<String>,
    /// The token's SHA-256, 64 hex digits (`printf %s TOKEN | sha256sum`):
    /// the file then holds no token a reader could use.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// `admin`, `engineer`, `contractor` or `auditor`.
    pub role: crate::api::auth::Role,
    /// Engineers and auditors: the compounds in scope (all if absent).
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Contractors: the contact id orders are dispatched to.
    #[serde(default)]
    pub contractor: Option<String>,
}

/// Devices polled over Modbus.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModbusConfig {
    /// The devices, each `[[modbus.devices]]`.
    pub devices: Vec<crate::ingest::modbus::DeviceConfig>,
}

/// The MQTT side: an embedded broker by default, or an outside one.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Address of the embedded broker (ignored when `broker` is set).
    pub listen: SocketAddr,
    /// An outside broker to connect to instead of embedding one.
    pub broker: Option<BrokerConfig>,
    /// Who the embedded broker lets in (CONTRACT §8): `devices` (provisioned
    /// credentials, each device on its own topics only) or `none`. Unset:
    /// `devices` unless every listener is on loopback.
    pub auth: Option<MqttAuth>,
    /// Lets `auth = "none"` listen beyond loopback: anyone on the network may
    /// then publish anything. Must be written out to take effect.
    pub allow_anonymous: bool,
    /// MQTT over TLS (MQTTS) on this address too, with `tls_cert_file` and `tls_key_file`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain of the embedded broker's TLS listener.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            broker: None,
            auth: None,
            allow_anonymous: false,
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// How the embedded broker authenticates.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MqttAuth {
    /// Provisioned device credentials (`gateway devices add`, `POST /api/v1/devices`).
    Devices,
    /// Anyone who reaches the port.
    None,
}

impl MqttConfig {
    /// The authentication in force: as written, or `devices` unless every
    /// listener is on loopback (the zero-setup demo stays zero-setup).
    pub fn effective_auth(&self) -> MqttAuth {
        self.auth.unwrap_or_else(|| {
            if std::iter::once(self.listen)
                .chain(self.tls_listen)
                .all(|a| a.ip().is_loopback())
            {
                MqttAuth::None
            } else {
                MqttAuth::Devices
            }
        })
    }

    /// The embedded broker's settings that serde cannot check.
    fn validate(&self, p: &mut Problems) {
        if self.broker.is_some() {
            return;
        }
        let open = std::iter::once(self.listen)
            .chain(self.tls_listen)
            .find(|a| !a.ip().is_loopback());
        if let (MqttAuth::None, Some(addr), false) = (self.effective_auth(), open, self.allow_anonymous) {
            p.add(
                "mqtt.auth",
                format!(
                    "`none` on {addr}, beyond loopback, lets anyone on the network publish and command; \
                     use `auth = \"devices\"`, or write `allow_anonymous = true` to mean it"
                ),
            );
        }
        if self.tls_listen.is_some() {
            match (&self.tls_cert_file, &self.tls_key_file) {
                // Loaded now, as at start: `gateway check` refuses a key that
                // does not go with its certificate.
                (Some(cert), Some(key)) => {
                    p.take(crate::tls::server_config(
                        cert,
                        key,
                        ("mqtt.tls_cert_file", "mqtt.tls_key_file"),
                        None,
                    ));
                }
                (None, _) => p.add("mqtt.tls_cert_file", "is required with `tls_listen`".into()),
                (_, None) => p.add("mqtt.tls_key_file", "is required with `tls_listen`".into()),
            }
        }
    }
}

/// An outside MQTT broker.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Host name or address.
    pub host: String,
    /// Port (1883 plain).
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Client id; the gateway keeps a persistent QoS 1 session under it.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password, if the broker wants one.
    pub password: Option<String>,
    /// Shared-subscription group (`$share/{group}/fm/v1/...`), so several
    /// gateways split one broker's load.
    pub share_group: Option<String>,
    /// Connect with TLS (port 8883 by convention).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signed the broker's certificate (required with `tls`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that require one (with `client_key_file`).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key_file: Option<PathBuf>,
}

fn default_mqtt_port() -> u16 {
    1883
}

fn default_client_id() -> String {
    "fm-gateway".to_owned()
}

/// The HTTP API (the limits and TLS: docs/api-hardening.md).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// The admin's token (at least 16 characters), best given as
    /// `admin_token_file`; `GATEWAY_ADMIN_TOKEN` overrides it. Neither: a
    /// new one is printed at each start.
    pub admin_token: Option<String>,
    /// Tokens of people and systems besides the admin (`[[http.tokens]]`).
    pub tokens: Vec<TokenConfig>,
    /// Most connections open at once (API calls, event streams, the
    /// console); one more is closed at once and counted (`512`).
    pub max_connections: usize,
    /// Most of those one client address may hold (an IPv6 /64 counts as
    /// one); unset, no limit but `max_connections`. Behind a reverse proxy
    /// or a NAT many people share one address: leave it unset there.
    pub max_connections_per_client: Option<usize>,
    /// How long a client may take over a request's line and headers (and
    /// the TLS handshake), and how long a kept-alive connection may idle
    /// before its next request (`10s`).
    pub header_timeout: String,
    /// How long a request body may take to arrive, counted from the end of
    /// its headers (`10s`); 408 after.
    pub body_timeout: String,
    /// The largest request body in bytes (`16384`: every body the API takes
    /// is a small JSON object); 413 beyond.
    pub max_body_bytes: usize,
    /// Wrong tokens one client address may send in a burst before its
    /// requests are answered 429 (`10`).
    pub auth_failure_limit: u32,
    /// The time in which that burst is earned back, one failure at a time
    /// (`1m`: one more every 6 s).
    pub auth_failure_window: String,
    /// Client addresses the failure limiter remembers; beyond, the oldest
    /// is forgotten (`65536`).
    pub auth_failure_clients: usize,
    /// PEM certificate chain: with `tls_key_file`, the API speaks only HTTPS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            tokens: Vec::new(),
            max_connections: 512,
            max_connections_per_client: None,
            header_timeout: "10s".into(),
            body_timeout: "10s".into(),
            max_body_bytes: 16 * 1024,
            auth_failure_limit: 10,
            auth_failure_window: "1m".into(),
            auth_failure_clients: 65_536,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// [`HttpConfig`]'s limits, checked and typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// `max_connections`.
    pub max_connections: usize,
    /// `max_connections_per_client`.
    pub max_connections_per_client: Option<usize>,
    /// `header_timeout`.
    pub header_timeout: std::time::Duration,
    /// `body_timeout`.
    pub body_timeout: std::time::Duration,
    /// `max_body_bytes`.
    pub max_body_bytes: usize,
    /// `auth_failure_limit`.
    pub auth_failure_limit: u32,
    /// `auth_failure_window`.
    pub auth_failure_window: std::time::Duration,
    /// `auth_failure_clients`.
    pub auth_failure_clients: usize,
}

impl HttpConfig {
    /// The limits, each within its range.
    ///
    /// # Errors
    /// The field and what is wrong with it (the first, if several are).
    pub fn limits(&self) -> Result<HttpLimits, (&'static str, String)> {
        let mut p = Problems::default();
        let limits = self.limits_into(&mut p);
        match p.0.into_iter().next() {
            Some((Cow::Borrowed(field), message)) => Err((field, message)),
            Some((Cow::Owned(field), message)) => Err(("http", format!("{field}: {message}"))),
            None => Ok(limits),
        }
    }

    /// The limits; each one out of its range is added to `p` (and its
    /// default taken), so `gateway check` names them all.
    fn limits_into(&self, p: &mut Problems) -> HttpLimits {
        use std::time::Duration;
        let d = HttpConfig::default();
        let mut within = |field: &'static str, text: &str, default: &str, min: Duration, max: Duration| {
            let fallback = duration(field, default).unwrap_or(min);
            match duration(field, text) {
                Ok(d) if d < min || d > max => {
                    p.add(
                        field,
                        format!(
                            "`{text}` is outside {} to {}",
                            humantime::format_duration(min),
                            humantime::format_duration(max)
                        ),
                    );
                    fallback
                }
                Ok(d) => d,
                Err((field, message)) => {
                    p.add(field, message);
                    fallback
                }
            }
        };
        let header_timeout = within(
            "http.header_timeout",
            &self.header_timeout,
            &d.header_timeout,
            Duration::from_millis(100),
            Duration::from_mins(5),
        );
        let body_timeout = within(
            "http.body_timeout",
            &self.body_timeout,
            &d.body_timeout,
            Duration::from_millis(100),
            Duration::from_mins(10),
        );
        let auth_failure_window = within(
            "http.auth_failure_window",
            &self.auth_failure_window,
            &d.auth_failure_window,
            Duration::from_secs(1),
            Duration::from_hours(24),
        );
        let mut count = |field: &'static str, n: usize, min: usize, max: usize, default: usize| {
            if (min..=max).contains(&n) {
                n
            } else {
                p.add(field, format!("{n} is outside {min} to {max}"));
                default
            }
        };
        let max_connections = count(
            "http.max_connections",
            self.max_connections,
            1,
            100_000,
            d.max_connections,
        );
        let max_connections_per_client = self.max_connections_per_client.map(|n| {
            count(
                "http.max_connections_per_client",
                n,
                1,
                max_connections,
                max_connections,
            )
        });
        let max_body_bytes = count(
            "http.max_body_bytes",
            self.max_body_bytes,
            1024,
            1 << 20,
            d.max_body_bytes,
        );
        let auth_failure_clients = count(
            "http.auth_failure_clients",
            self.auth_failure_clients,
            16,
            1_000_000,
            d.auth_failure_clients,
        );
        let auth_failure_limit = match self.auth_failure_limit {
            n @ 1..=10_000 => n,
            n => {
                p.add("http.auth_failure_limit", format!("{n} is outside 1 to 10000"));
                d.auth_failure_limit
            }
        };
        HttpLimits {
            max_connections,
            max_connections_per_client,
            header_timeout,
            body_timeout,
            max_body_bytes,
            auth_failure_limit,
            auth_failure_window,
            auth_failure_clients,
        }
    }

    /// The limits, and the certificate and key when TLS is configured (both
    /// or neither; each file read and parsed, so `gateway check` finds a bad one).
    fn validate(&self, p: &mut Problems) {
        self.limits_into(p);
        match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                p.take(crate::api::serve::tls_config(cert, key));
            }
            (Some(_), None) => p.add("http.tls_key_file", "is required with `tls_cert_file`".into()),
            (None, Some(_)) => p.add("http.tls_cert_file", "is required with `tls_key_file`".into()),
        }
    }
}

/// The embedded store.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for the database.
    pub data_dir: PathBuf,
    /// Telemetry older than this many days is pruned (records never are).
    pub retention_days: u32,
    /// Disk headroom (MiB) kept for events: below it telemetry is held back
    /// at the broker, events, births and records are still stored, and
    /// `/readyz` says so.
    pub min_free_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("data"),
            retention_days: 400,
            min_free_mb: 64,
        }
    }
}

/// A configuration that cannot be used, located in its file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field (`mqtt.listen`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, and the line, column and field when
    /// the problem is in its text.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates configuration text; `path` is only for messages.
    ///
    /// # Errors
    /// As [`Config::load`]: the first problem (by line) of [`Config::check`].
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::check(path, text).map_err(|mut all| all.remove(0))
    }

    /// Reads a configuration file and reports every problem in it, not only
    /// the first (`gateway check`): each field serde refuses (a wrong type,
    /// an unknown key), each secret file or variable that cannot be read,
    /// and every rule across fields. Only a TOML syntax error stops the
    /// reading, as it must.
    ///
    /// # Errors
    /// Every [`ConfigError`] found, by line; never an empty list.
    pub fn load_checked(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                file: path.to_owned(),
                line: None,
                column: None,
                field: None,
                message: format!("cannot read: {e}"),
            }]
        })?;
        Self::check(path, &text)
    }

    /// [`Config::load_checked`] on text; `path` is only for messages.
    ///
    /// # Errors
    /// As [`Config::load_checked`].
    pub fn check(path: &Path, text: &str) -> Result<Config, Vec<ConfigError>> {
        let error =
            |(line, column, field): (Option<usize>, Option<usize>, Option<String>), message: String| ConfigError {
                file: path.to_owned(),
                line,
                column,
                field,
                message,
            };
        let (config, mut errors, blanked) = match secrets_from_outside(path, text) {
            // Secrets read from files or the environment: deserialised from
            // the table they were put into (its errors carry no position).
            // A table's errors carry no position and stop at the first, so
            // when it does not read, the text is read again with each secret
            // in place of its source, on the same lines: every problem is
            // found, each with its line.
            Ok(Some(table)) => match toml::Value::Table(table).try_into::<Config>() {
                Ok(c) => (Some(c), Vec::new(), Vec::new()),
                Err(_) => Self::from_text(path, &sources_in_place(text)),
            },
            Ok(None) => Self::from_text(path, text),
            // Secrets that cannot be read: the rest is still checked.
            Err((table, mut failures)) => {
                if let Ok(c) = toml::Value::Table(table).try_into::<Config>() {
                    (Some(c), failures, Vec::new())
                } else {
                    let (c, errors, blanked) = Self::from_text(path, &sources_in_place(text));
                    failures.extend(errors);
                    (c, failures, blanked)
                }
            }
        };
        // A secret that could not be read is missing from the config: the
        // rules about its field are moot.
        let unread: Vec<String> = errors
            .iter()
            .filter_map(|e| e.field.as_deref())
            .filter_map(|f| f.strip_suffix("_file").or_else(|| f.strip_suffix("_env")))
            .map(str::to_owned)
            .collect();
        if let Some(config) = config {
            let mut p = Problems::default();
            config.validate(&mut p);
            every_problem(
                &config.alerting,
                |c| c.build().map(drop).map_err(|e| (e.field, e.message)),
                peel_alerting,
                &mut p,
            );
            every_problem(
                &config.dispatch,
                |c| c.build().map(drop).map_err(|e| (e.field, e.message)),
                peel_dispatch,
                &mut p,
            );
            config.validate_sites(&mut p);
            config.validate_people(&mut p);
            for (field, message) in p.0 {
                let (line, column) = find_field(text, &field);
                // A line taken out after serde refused it: its fields' rules are moot.
                if line.is_some_and(|l| blanked.contains(&l)) || unread.iter().any(|u| *u == field) {
                    continue;
                }
                errors.push(error((line, column, Some(field.into_owned())), message));
            }
            if errors.is_empty() {
                let mut config = config;
                config.source = Some((path.to_owned(), text.to_owned()));
                return Ok(config);
            }
        }
        // By line; those without one (a missing file named by no line) last.
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(errors)
    }

    /// The text deserialised, every field serde refuses located in it: the
    /// line at fault is taken out and the text read again, until it reads
    /// (the config then has that field's default, for the rules across
    /// fields) or what is wrong is not one line (a syntax error, a missing
    /// field, a value over several lines). Returns the config if it read,
    /// the problems, and the lines taken out.
    fn from_text(path: &Path, text: &str) -> (Option<Config>, Vec<ConfigError>, Vec<usize>) {
        if let Err(e) = text.parse::<toml::Table>() {
            // A syntax error: nothing after it can be read for sure.
            let (line, column, field) = e.span().map_or((None, None, None), |s| locate(text, s.start));
            let message = e.message().to_owned();
            return (
                None,
                vec![ConfigError {
                    file: path.to_owned(),
                    line,
                    column,
                    field,
                    message,
                }],
                Vec::new(),
            );
        }
        let mut lines: Vec<&str> = text.split('\n').collect();
        let mut errors = Vec::new();
        let mut blanked = Vec::new();
        for _ in 0..64 {
            let current = lines.join("\n");
            let e = match toml::from_str::<Config>(&current) {
                Ok(c) => return (Some(c), errors, blanked),
                Err(e) => e,
            };
            let (line, column, field) = match e.span() {
                Some(span) => locate(&current, span.start),
                None => (None, None, None),
            };
            let consequence = !blanked.is_empty() && e.message().starts_with("missing field");
            if !consequence {
                errors.push(ConfigError {
                    file: path.to_owned(),
                    line,
                    column,
                    field,
                    message: e.message().to_owned(),
                });
            }
            let Some(l) = line.filter(|l| !blanked.contains(l)) else {
                break;
            };
            let Some(at) = lines.get(l - 1).copied() else { break };
            let t = without_comment(at);
            if consequence || t.starts_with('[') || !t.contains('=') || e.message().starts_with("missing field") {
                break;
            }
            lines[l - 1] = "";
            if lines.join("\n").parse::<toml::Table>().is_err() {
                // The value went on over more lines.
                break;
            }
            blanked.push(l);
        }
        (None, errors, blanked)
    }

    /// The Modbus devices: ids, one transport each, timings, maps, no repeats.
    fn validate_modbus(&self, p: &mut Problems) {
        for (i, d) in self.modbus.devices.iter().enumerate() {
            if protocol::SiteId::new(&d.site).is_err() {
                p.add(
                    "modbus.devices.site",
                    format!("device #{}: `{}` is not a site id ([a-z0-9-]{{1,32}})", i + 1, d.site),
                );
            }
            if protocol::DeviceId::new(&d.device).is_err() {
                p.add(
                    "modbus.devices.device",
                    format!("device #{}: `{}` is not a device id", i + 1, d.device),
                );
            }
            match (&d.address, &d.serial) {
                (Some(_), None) => {}
                (None, Some(serial)) => {
                    if let Err(e) = serial.check() {
                        p.add("modbus.devices.serial", format!("device `{}`: {e}", d.device));
                    }
                }
                _ => {
                    p.add(
                        "modbus.devices.address",
                        format!("device `{}`: give either `address` (TCP) or `serial` (RTU)", d.device),
                    );
                }
            }
            if d.interval_ms < 100 {
                p.add(
                    "modbus.devices.interval_ms",
                    format!("device `{}`: at least 100 ms", d.device),
                );
            }
            if d.timeout_ms == 0 || d.timeout_ms >= d.interval_ms.max(100) * 10 {
                p.add(
                    "modbus.devices.timeout_ms",
                    format!("device `{}`: between 1 ms and 10 × the interval", d.device),
                );
            }
            for e in d.map_problems() {
                p.add(
                    format!("modbus.devices[{i}].registers[{}].{}", e.index, e.key),
                    format!("device `{}`, register address {}: {}", d.device, e.address, e.message),
                );
            }
            if self.modbus.devices[..i]
                .iter()
                .any(|o| o.site == d.site && o.device == d.device)
            {
                p.add(
                    "modbus.devices.device",
                    format!("device `{}` is configured twice", d.device),
                );
            }
        }
    }

    /// The `[[sites]]` names: each id once, a site id, a name.
    fn validate_sites(&self, p: &mut Problems) {
        for (i, s) in self.sites.iter().enumerate() {
            if s.id.trim().is_empty() || s.id.contains(['/', '+', '#', ' ']) {
                p.add(
                    format!("sites[{i}].id"),
                    format!("`{}` is not a site id (no spaces, `/`, `+` or `#`)", s.id),
                );
            }
            if self.sites[..i].iter().any(|o| o.id == s.id) {
                p.add(format!("sites[{i}].id"), format!("`{}` is configured twice", s.id));
            }
            if s.name.trim().is_empty() {
                p.add(format!("sites[{i}].name"), "must not be empty".into());
            }
        }
    }

    /// Contacts, tokens and the contacts the dispatch policy names.
    fn validate_people(&self, p: &mut Problems) {
        for (i, c) in self.contacts.iter().enumerate() {
            if c.id.trim().is_empty() || c.id.contains(['/', '+', '#', ' ']) {
                p.add(
                    format!("contacts[{i}].id"),
                    "must be a name without spaces, / + #".into(),
                );
            }
            if self.contacts[..i].iter().any(|o| o.id == c.id) {
                p.add(format!("contacts[{i}].id"), format!("`{}` is configured twice", c.id));
            }
            if let Some(w) = &c.webhook
                && !(w.url.starts_with("http://") || w.url.starts_with("https://"))
            {
                p.add(
                    format!("contacts[{i}].webhook"),
                    format!("`{}` must start with http:// or https://", w.url),
                );
            }
            if c.email.is_some() && self.notify.smtp.is_none() && c.webhook.is_none() && !c.mqtt {
                p.add(
                    format!("contacts[{i}].email"),
                    "e-mail needs [notify.smtp], and this contact has no other channel".into(),
                );
            }
        }
        self.validate_china_channels(p);
        // A policy that does not build is reported by its own check.
        if let Ok(policy) = self.dispatch.build() {
            for (field, id) in policy.contact_ids() {
                if !self.contacts.iter().any(|c| c.id == id) {
                    p.add(field, format!("`{id}` is not one of the [[contacts]]"));
                }
            }
        }
        if let Some(t) = &self.http.admin_token
            && t.chars().count() < crate::app::cli::MIN_ADMIN_TOKEN
        {
            p.add("http.admin_token", "must be at least 16 characters".into());
        }
        for (i, t) in self.http.tokens.iter().enumerate() {
            match (&t.token, &t.token_sha256) {
                (Some(token), None) if token.len() < 16 => {
                    p.add(
                        format!("http.tokens[{i}].token"),
                        "must be at least 16 characters".into(),
                    );
                }
                (None, Some(h)) if crate::api::auth::parse_digest(h).is_none() => {
                    p.add(
                        format!("http.tokens[{i}].token_sha256"),
                        "must be 64 hex digits (the token's SHA-256)".into(),
                    );
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    p.add(
                        format!("http.tokens[{i}].token"),
                        "give `token` or `token_sha256`, one of them".into(),
                    );
                }
            }
            if self.http.tokens[..i]
                .iter()
                .any(|o| crate::api::auth::digest_of(o) == crate::api::auth::digest_of(t))
            {
                p.add(
                    format!("http.tokens[{i}].token"),
                    "is the same as another token's".into(),
                );
            }
            let contractor = t.role == crate::api::auth::Role::Contractor;
            if contractor != t.contractor.is_some() {
                p.add(
                    format!("http.tokens[{i}].contractor"),
                    "a contractor token names its `contractor`, and only a contractor token does".into(),
                );
            }
        }
        let r = &self.notify;
        p.take(duration("notify.first_retry", &r.first_retry));
        p.take(duration("notify.max_retry", &r.max_retry));
        p.take(duration("notify.webhook_timeout", &r.webhook_timeout));
        if r.attempts == 0 {
            p.add("notify.attempts", "must be at least 1".into());
        }
        if r.queue == 0 {
            p.add("notify.queue", "must be at least 1".into());
        }
        if r.mqtt_prefix.is_empty() || r.mqtt_prefix.contains(['+', '#']) || r.mqtt_prefix.starts_with("fm/v1/+") {
            p.add("notify.mqtt_prefix", "must be a topic without + or #".into());
        }
        p.take(duration("records.checkpoint_every", &self.records.checkpoint_every));
        if self.records.checkpoint_records == 0 {
            p.add("records.checkpoint_records", "must be at least 1".into());
        }
    }

    /// The WeCom, DingTalk and SMS channels (docs/notifications.md): base
    /// URLs, the SMS gateway's description, each contact's robots and numbers.
    fn validate_china_channels(&self, p: &mut Problems) {
        let n = &self.notify;
        p.take(n.wecom.check());
        p.take(n.dingtalk.check());
        if let Some(sms) = &n.sms {
            p.take(sms.check());
        }
        for (i, c) in self.contacts.iter().enumerate() {
            if let Err((field, message)) = c.check() {
                p.add(format!("contacts[{i}].{field}"), message);
            }
            if !c.sms.is_empty() && n.sms.is_none() {
                p.add(format!("contacts[{i}].sms"), "SMS needs [notify.sms]".into());
            }
        }
    }

    /// Rules across fields that serde cannot check, each problem added to `p`.
    fn validate(&self, p: &mut Problems) {
        if self.storage.retention_days == 0 {
            p.add("storage.retention_days", "must be at least 1 day".into());
        }
        self.validate_modbus(p);
        for (field, message) in self.commands.problems() {
            p.add(field, message);
        }
        if let Some(s) = &self.sparkplug {
            for (field, message) in s.problems() {
                p.add(field, message);
            }
        }
        self.http.validate(p);
        if let Some(i) = &self.influx {
            if !(i.url.starts_with("http://") || i.url.starts_with("https://")) {
                p.add("influx.url", format!("`{}` must start with http:// or https://", i.url));
            }
            if i.bucket.is_empty() || i.org.is_empty() {
                p.add("influx.bucket", "`org` and `bucket` must not be empty".into());
            }
            if i.batch_points == 0 || i.batch_points > 100_000 {
                p.add("influx.batch_points", "must be 1 to 100000".into());
            }
        }
        if let Some(b) = &self.mqtt.broker {
            validate_broker(b, p);
        }
        self.mqtt.validate(p);
        self.upstream.validate(p);
        if let Err(e) = self.judgement.settings() {
            p.add(format!("judgement.{}", e.field), e.message);
        }
    }
}

/// Problems found so far, (field, message): each check adds its own and
/// goes on, so `gateway check` names them all at once.
#[derive(Debug, Default)]
struct Problems(Vec<(Cow<'static, str>, String)>);

impl Problems {
    fn add(&mut self, field: impl Into<Cow<'static, str>>, message: String) {
        self.0.push((field.into(), message));
    }

    /// The value of `r`, or its problem added.
    fn take<T, F: Into<Cow<'static, str>>>(&mut self, r: Result<T, (F, String)>) -> Option<T> {
        r.map_err(|(f, m)| self.add(f, m)).ok()
    }
}

/// Every problem of a section whose builder stops at its first (the
/// alerting and dispatch crates): the element or setting at fault is taken
/// out of a copy (`peel`) and the builder run again, until it passes or the
/// problem names nothing that can be taken out. Problems of later elements
/// are renamed to their index in the file.
fn every_problem<C: Clone>(
    section: &C,
    build: impl Fn(&C) -> Result<(), (String, String)>,
    peel: fn(&mut C, &str, Option<usize>) -> bool,
    p: &mut Problems,
) {
    let mut copy = section.clone();
    // For each array taken from, the file's index of each element left.
    let mut left: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for _ in 0..64 {
        let Err((field, message)) = build(&copy) else { return };
        let indexed = field.split_once('[').and_then(|(head, rest)| {
            let (i, tail) = rest.split_once(']')?;
            Some((head.to_owned(), i.parse::<usize>().ok()?, tail.to_owned()))
        });
        let (field, taken) = if let Some((head, i, tail)) = indexed {
            let slots = left.entry(head.clone()).or_insert_with(|| (0..4096).collect());
            let original = slots.get(i).copied().unwrap_or(i);
            let taken = peel(&mut copy, &head, Some(i));
            if taken && i < slots.len() {
                slots.remove(i);
            }
            (format!("{head}[{original}]{tail}"), taken)
        } else {
            let taken = peel(&mut copy, &field, None);
            (field, taken)
        };
        p.add(field, message);
        if !taken {
            return;
        }
    }
}

/// Removes element `i` of `v`; whether there was one.
fn remove_at<T>(v: &mut Vec<T>, i: usize) -> bool {
    (i < v.len()).then(|| v.remove(i)).is_some()
}

/// Takes the part of `[alerting]` a problem names out of a copy.
fn peel_alerting(c: &mut alerting::AlertingConfig, field: &str, i: Option<usize>) -> bool {
    match (field, i) {
        ("alerting.rules", Some(i)) => remove_at(&mut c.rules, i),
        ("alerting.overrides", Some(i)) => remove_at(&mut c.overrides, i),
        ("alerting.maintenance", Some(i)) => remove_at(&mut c.maintenance, i),
        ("alerting.buildings", Some(i)) => remove_at(&mut c.buildings, i),
        ("alerting.group_wait", None) => c.group_wait.take().is_some(),
        ("alerting.flap_window", None) => c.flap_window.take().is_some(),
        ("alerting.flap_starts", None) => c.flap_starts.take().is_some(),
        ("alerting.flap_hold", None) => c.flap_hold.take().is_some(),
        ("alerting.uplink_for", None) => c.uplink_for.take().is_some(),
        ("alerting.will_grace", None) => c.will_grace.take().is_some(),
        ("alerting.site_min_devices", None) => {
            let site = c.site_min_devices.take().is_some();
            c.bus_min_devices.take().is_some() || site
        }
        _ => false,
    }
}

/// Takes the part of `[dispatch]` a problem names out of a copy.
fn peel_dispatch(c: &mut dispatch::PolicyConfig, field: &str, i: Option<usize>) -> bool {
    match (field, i) {
        ("dispatch.sla", Some(i)) => remove_at(&mut c.sla, i),
        ("dispatch.assign", Some(i)) => remove_at(&mut c.assign, i),
        ("dispatch.duties", Some(i)) => remove_at(&mut c.duties, i),
        ("dispatch.last_done", Some(i)) => remove_at(&mut c.last_done, i),
        ("dispatch.bureau", None) => c.bureau.take().is_some(),
        _ => false,
    }
}

/// Secrets kept outside the file: any secret key (`token`, `password`,
/// `secret`, `…_token`, `…_password`, `…_secret`) may be given as
/// `KEY_file = "/path"` (the file's text, one trailing newline dropped: how
/// systemd credentials and Kubernetes secrets arrive) or `KEY_env = "NAME"`
/// (an environment variable). The file then holds no secret, and neither
/// does its configuration record. `None` when the text uses neither; every
/// secret that cannot be read, with the table of the others, on error.
fn secrets_from_outside(path: &Path, text: &str) -> Result<Option<toml::Table>, (toml::Table, Vec<ConfigError>)> {
    // Cheap test first: most files use neither, and keep their located errors.
    if !(text.contains("_file") || text.contains("_env")) {
        return Ok(None);
    }
    let Ok(mut table) = text.parse::<toml::Table>() else {
        // A syntax error: reported, located, by the normal parse.
        return Ok(None);
    };
    let mut found = false;
    let mut failures = Vec::new();
    substitute(&mut table, "", &mut found, &mut failures);
    if failures.is_empty() {
        return Ok(found.then_some(table));
    }
    let errors = failures
        .into_iter()
        .map(|(field, message)| {
            let key = field.rsplit('.').next().unwrap_or(&field).to_owned();
            let (line, column) = text
                .lines()
                .enumerate()
                .find(|(_, l)| l.trim_start().split_once('=').is_some_and(|(k, _)| k.trim() == key))
                .map_or((None, None), |(i, l)| {
                    (Some(i + 1), Some(l.len() - l.trim_start().len() + 1))
                });
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                field: Some(field),
                message,
            }
        })
        .collect();
    Err((table, errors))
}

/// `text` with every secret's source (`token_file = "/run/…"`,
/// `secret_env = "VAR"`) written as the secret itself (`token = "…"`, a
/// placeholder of 32 characters), line for line: for locating problems in a
/// file whose secrets come from outside, without reading them.
fn sources_in_place(text: &str) -> String {
    const PLACEHOLDER: &str = "\"secret-read-from-outside-000000\"";
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // `done`: how much of the line is already out.
        let mut done = 0;
        let mut from = 0;
        while let Some(at) = line[from..].find('_').map(|a| a + from) {
            from = at + 1;
            let Some(suffix) = ["_file", "_env"].into_iter().find(|s| line[at..].starts_with(s)) else {
                continue;
            };
            let key_start = line[..at].rfind(|c: char| !word(c)).map_or(0, |k| k + 1);
            let after = &line[at + suffix.len()..];
            if key_start < done || after.starts_with(word) || !crate::ops::redact::is_secret(&line[key_start..at]) {
                continue;
            }
            let Some(value) = after.trim_start().strip_prefix('=').map(str::trim_start) else {
                continue;
            };
            let Some(len) = value.strip_prefix('"').and_then(|v| v.find('"')).map(|e| e + 2) else {
                continue;
            };
            let value_end = line.len() - value.len() + len;
            out.push_str(&line[done..at]);
            out.push_str(" = ");
            out.push_str(PLACEHOLDER);
            done = value_end;
            from = value_end;
        }
        out.push_str(&line[done..]);
    }
    out
}

/// Replaces `KEY_file`/`KEY_env` of secret keys in `table` and below.
fn substitute(table: &mut toml::Table, at: &str, found: &mut bool, failures: &mut Vec<(String, String)>) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let field = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match table.get_mut(&key) {
            Some(toml::Value::Table(t)) => substitute(t, &field, found, failures),
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(t) = item {
                        substitute(t, &format!("{field}[{i}]"), found, failures);
                    }
                }
            }
            _ => {}
        }
        let (secret, from_file) = match (key.strip_suffix("_file"), key.strip_suffix("_env")) {
            (Some(k), _) => (k, true),
            (_, Some(k)) => (k, false),
            _ => continue,
        };
        if !crate::ops::redact::is_secret(secret) {
            continue;
        }
        let secret = secret.to_owned();
        let Some(toml::Value::String(source)) = table.remove(&key) else {
            failures.push((field, "must be a string (a file path or a variable name)".into()));
            continue;
        };
        if table.contains_key(&secret) {
            failures.push((field, format!("give `{secret}` or `{key}`, not both")));
            continue;
        }
        let value = if from_file {
            std::fs::read_to_string(&source)
                .map(|v| {
                    let line = v.strip_suffix('\n').unwrap_or(&v);
                    line.strip_suffix('\r').unwrap_or(line).to_owned()
                })
                .map_err(|e| format!("{source}: {e}"))
        } else {
            std::env::var(&source).map_err(|e| format!("environment variable {source}: {e}"))
        };
        match value {
            Ok(v) if v.is_empty() => failures.push((field, format!("{source} is empty"))),
            Ok(v) => {
                table.insert(secret, toml::Value::String(v));
                *found = true;
            }
            Err(m) => failures.push((field, m)),
        }
    }
}

/// A line without its `#` comment, trimmed (`[http]  # the API` is the table `http`).
fn without_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or_default().trim()
}

/// Line, column and dotted key path of a byte offset in TOML text.
fn locate(text: &str, offset: usize) -> (Option<usize>, Option<usize>, Option<String>) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(1, |l| l.chars().count() + 1);
    let mut table = String::new();
    for l in before.lines() {
        let t = without_comment(l);
        if t.starts_with('[') && t.ends_with(']') {
            t.trim_matches(|c| c == '[' || c == ']').trim().clone_into(&mut table);
        }
    }
    let this_line = text.lines().nth(line - 1).unwrap_or_default();
    let key = this_line
        .split_once('=')
        .map(|(k, _)| k.trim().to_owned())
        .filter(|k| !k.starts_with('['));
    let field = match (table.is_empty(), key) {
        (_, None) if table.is_empty() => None,
        (_, None) => Some(table),
        (true, Some(k)) => Some(k),
        (false, Some(k)) => Some(format!("{table}.{k}")),
    };
    (Some(line), Some(column), field)
}

/// The line and column of `a.b.key = ...` in TOML text, if it is written there.
fn find_key(text: &str, field: &str) -> (Option<usize>, Option<usize>) {
    let (table, key) = field.rsplit_once('.').unwrap_or(("", field));
    let mut current = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = without_comment(l);
        if t.starts_with('[') && t.ends_with(']') {
            t.trim_matches(|c| c == '[' || c == ']').trim().clone_into(&mut current);
        } else if current == table && t.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
            return (Some(i + 1), Some(l.len() - l.trim_start().len() + 1));
        }
    }
    (None, None)
}

/// The line and column of a field with array indices
/// (`alerting.overrides[2].params.low_pressure_mpa`): the header of the
/// indexed `[[array]]` table, then the first line in it that sets the next
/// key (a `key = ` line, or its `[table.key]` sub-table); the header when
/// the key is not written out.
fn find_field(text: &str, field: &str) -> (Option<usize>, Option<usize>) {
    let Some((head, rest)) = field.split_once('[') else {
        return find_key(text, field);
    };
    let Some((index, after)) = rest.split_once(']') else {
        return (None, None);
    };
    let Ok(index) = index.parse::<usize>() else {
        return (None, None);
    };
    let header = format!("[[{head}]]");
    // An array inside an element (`modbus.devices[0].registers[2].bit`):
    // the same search within the element's lines, for its own `[[a.b]]`.
    if let Some((key, inner)) = after.strip_prefix('.').and_then(|a| a.split_once('['))
        && !key.contains('.')
    {
        let lines: Vec<&str> = text.lines().collect();
        let from = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| without_comment(l).replace(' ', "") == header)
            .nth(index)
            .map(|(i, _)| i);
        if let Some(from) = from {
            let under = format!("{head}.");
            let to = (from + 1..lines.len())
                .find(|&i| {
                    let t = without_comment(lines[i]);
                    t.starts_with('[') && !t.trim_matches(|c| c == '[' || c == ']').trim().starts_with(&under)
                })
                .unwrap_or(lines.len());
            if let (Some(line), column) = find_field(&lines[from..to].join("\n"), &format!("{head}.{key}[{inner}")) {
                return (Some(from + line), column);
            }
        }
    }
    let mut seen = 0;
    let mut start = None;
    for (i, l) in text.lines().enumerate() {
        let t = without_comment(l);
        if start.is_some() && t.starts_with('[') && !t.starts_with(&format!("[{head}.")) {
            break;
        }
        if t.replace(' ', "") == header {
            if seen == index {
                start = Some(i);
            }
            seen += 1;
            continue;
        }
        let Some(_) = start else { continue };
        let key = after
            .trim_start_matches('.')
            .split(['.', ' ', '(', '['])
            .next()
            .unwrap_or_default();
        let sets = t.split_once('=').is_some_and(|(k, _)| k.trim() == key);
        let sub = t.trim_matches(|c| c == '[' || c == ']').rsplit('.').next() == Some(key) && t.starts_with('[');
        if !key.is_empty() && (sets || sub) {
            return (Some(i + 1), Some(l.len() - l.trim_start().len() + 1));
        }
    }
    start.map_or((None, None), |i| (Some(i + 1), Some(1)))
}

/// An outside broker's settings.
fn validate_broker(b: &BrokerConfig, p: &mut Problems) {
    if b.host.trim().is_empty() {
        p.add("mqtt.broker.host", "must not be empty".into());
    }
    if b.client_id.is_empty() || b.client_id.len() > 64 {
        p.add("mqtt.broker.client_id", "must be 1 to 64 characters".into());
    }
    if let Some(g) = &b.share_group
        && (g.is_empty() || g.contains(['/', '+', '#']))
    {
        p.add(
            "mqtt.broker.share_group",
            "must be a non-empty name without / + #".into(),
        );
    }
    if b.tls && b.ca_file.is_none() {
        p.add("mqtt.broker.ca_file", "is required with `tls = true`".into());
    }
    if b.client_cert_file.is_some() != b.client_key_file.is_some() {
        p.add(
            "mqtt.broker.client_key_file",
            "give both `client_cert_file` and `client_key_file`, or neither".into(),
        );
    }
    for (field, file) in [
        ("mqtt.broker.ca_file", &b.ca_file),
        ("mqtt.broker.client_cert_file", &b.client_cert_file),
        ("mqtt.broker.client_key_file", &b.client_key_file),
    ] {
        if let Some(f) = file
            && let Err(e) = std::fs::metadata(f)
        {
            p.add(field, format!("{}: {e}", f.display()));
        }
    }
    if b.password.is_some() && b.username.is_none() {
        p.add("mqtt.broker.password", "needs `username` too".into());
    }
}

#[cfg(test)]
mod tests {
    use super::sources_in_place;

    #[test]
    fn secrets_sources_are_put_in_place_line_for_line() {
        let text = "[http]\nadmin_token_file = \"/run/t\"\n[[contacts]]\nid = \"a\"\n\
                    wecom = { token_env = \"K\", mention_mobiles = [] }\n\
                    client_secret_file = \"/x\" # c\nlog_file = \"/var/log\"\n";
        let placed = sources_in_place(text);
        let lines: Vec<&str> = placed.lines().collect();
        assert_eq!(lines.len(), text.lines().count());
        assert_eq!(lines[1], "admin_token = \"secret-read-from-outside-000000\"");
        assert_eq!(
            lines[4],
            "wecom = { token = \"secret-read-from-outside-000000\", mention_mobiles = [] }"
        );
        assert_eq!(lines[5], "client_secret = \"secret-read-from-outside-000000\" # c");
        assert_eq!(lines[6], "log_file = \"/var/log\"", "not a secret: left alone");
        assert!(placed.parse::<toml::Table>().is_ok());
    }
}
