//! The gateway's configuration: TOML, parsed with serde into typed fields, so
//! a bad address, an unknown key or a wrong type is reported with the file,
//! line, column and field that caused it (`gateway check`).

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
    pub influx: Option<crate::influx::InfluxConfig>,
    /// Rule packs, overrides, maintenance windows, buildings, timings (see docs/rules.md).
    pub alerting: alerting::AlertingConfig,
}

/// Devices polled over Modbus.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModbusConfig {
    /// The devices, each `[[modbus.devices]]`.
    pub devices: Vec<crate::modbus::DeviceConfig>,
}

/// The MQTT side: an embedded broker by default, or an outside one.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Address of the embedded broker (ignored when `broker` is set).
    pub listen: SocketAddr,
    /// An outside broker to connect to instead of embedding one.
    pub broker: Option<BrokerConfig>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            broker: None,
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

/// The HTTP API.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
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
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("data"),
            retention_days: 400,
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
    /// As [`Config::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column, field) = match e.span() {
                Some(span) => locate(text, span.start),
                None => (None, None, None),
            };
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                field,
                message: e.message().to_owned(),
            }
        })?;
        config.validate().map_err(|(field, message)| {
            let (line, column) = find_key(text, field);
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                field: Some(field.to_owned()),
                message,
            }
        })?;
        config.alerting.build().map_err(|p| {
            let (line, column) = find_field(text, &p.field);
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                field: Some(p.field.clone()),
                message: p.message,
            }
        })?;
        Ok(config)
    }

    /// The Modbus devices: ids, one transport each, timings, maps, no repeats.
    fn validate_modbus(&self) -> Result<(), (&'static str, String)> {
        for (i, d) in self.modbus.devices.iter().enumerate() {
            if protocol::SiteId::new(&d.site).is_err() {
                return Err((
                    "modbus.devices.site",
                    format!("device #{}: `{}` is not a site id ([a-z0-9-]{{1,32}})", i + 1, d.site),
                ));
            }
            if protocol::DeviceId::new(&d.device).is_err() {
                return Err((
                    "modbus.devices.device",
                    format!("device #{}: `{}` is not a device id", i + 1, d.device),
                ));
            }
            match (&d.address, &d.serial) {
                (Some(_), None) => {}
                (None, Some(serial)) => {
                    if let Err(e) = serial.check() {
                        return Err(("modbus.devices.serial", format!("device `{}`: {e}", d.device)));
                    }
                }
                _ => {
                    return Err((
                        "modbus.devices.address",
                        format!("device `{}`: give either `address` (TCP) or `serial` (RTU)", d.device),
                    ));
                }
            }
            if d.interval_ms < 100 {
                return Err((
                    "modbus.devices.interval_ms",
                    format!("device `{}`: at least 100 ms", d.device),
                ));
            }
            if d.timeout_ms == 0 || d.timeout_ms >= d.interval_ms.max(100) * 10 {
                return Err((
                    "modbus.devices.timeout_ms",
                    format!("device `{}`: between 1 ms and 10 × the interval", d.device),
                ));
            }
            if let Err(e) = d.points() {
                return Err(("modbus.devices.registers", format!("device `{}`: {e}", d.device)));
            }
            if self.modbus.devices[..i]
                .iter()
                .any(|o| o.site == d.site && o.device == d.device)
            {
                return Err((
                    "modbus.devices.device",
                    format!("device `{}` is configured twice", d.device),
                ));
            }
        }
        Ok(())
    }

    /// Rules across fields that serde cannot check.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.storage.retention_days == 0 {
            return Err(("storage.retention_days", "must be at least 1 day".into()));
        }
        self.validate_modbus()?;
        if let Some(i) = &self.influx {
            if !(i.url.starts_with("http://") || i.url.starts_with("https://")) {
                return Err(("influx.url", format!("`{}` must start with http:// or https://", i.url)));
            }
            if i.bucket.is_empty() || i.org.is_empty() {
                return Err(("influx.bucket", "`org` and `bucket` must not be empty".into()));
            }
            if i.batch_points == 0 || i.batch_points > 100_000 {
                return Err(("influx.batch_points", "must be 1 to 100000".into()));
            }
        }
        if let Some(b) = &self.mqtt.broker {
            validate_broker(b)?;
        }
        Ok(())
    }
}

/// Line, column and dotted key path of a byte offset in TOML text.
fn locate(text: &str, offset: usize) -> (Option<usize>, Option<usize>, Option<String>) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(1, |l| l.chars().count() + 1);
    let mut table = String::new();
    for l in before.lines() {
        let t = l.trim();
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
        let t = l.trim();
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
    let mut seen = 0;
    let mut start = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
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
fn validate_broker(b: &BrokerConfig) -> Result<(), (&'static str, String)> {
    if b.host.trim().is_empty() {
        return Err(("mqtt.broker.host", "must not be empty".into()));
    }
    if b.client_id.is_empty() || b.client_id.len() > 64 {
        return Err(("mqtt.broker.client_id", "must be 1 to 64 characters".into()));
    }
    if let Some(g) = &b.share_group
        && (g.is_empty() || g.contains(['/', '+', '#']))
    {
        return Err((
            "mqtt.broker.share_group",
            "must be a non-empty name without / + #".into(),
        ));
    }
    if b.tls && b.ca_file.is_none() {
        return Err(("mqtt.broker.ca_file", "is required with `tls = true`".into()));
    }
    if b.client_cert_file.is_some() != b.client_key_file.is_some() {
        return Err((
            "mqtt.broker.client_key_file",
            "give both `client_cert_file` and `client_key_file`, or neither".into(),
        ));
    }
    for (field, file) in [
        ("mqtt.broker.ca_file", &b.ca_file),
        ("mqtt.broker.client_cert_file", &b.client_cert_file),
        ("mqtt.broker.client_key_file", &b.client_key_file),
    ] {
        if let Some(f) = file
            && let Err(e) = std::fs::metadata(f)
        {
            return Err((field, format!("{}: {e}", f.display())));
        }
    }
    if b.password.is_some() && b.username.is_none() {
        return Err(("mqtt.broker.password", "needs `username` too".into()));
    }
    Ok(())
}
