//! The elevator supervision platform (电梯应急处置/监管平台, 96333), fed in
//! the GB/T 24476 style (CONTRACT §10): every elevator alert change as an
//! alarm (`new` / `cleared`) and every step of its work order as a disposal
//! (`01` occurred, `02` responded, `04` arrived, `00` done, `05` false
//! alarm), over HTTPS with OAuth 2.0 client credentials.
//!
//! Two halves, as every connector ([`super`]): [`ElevatorMapper`] decides the
//! rows on the pipeline thread, with the profile's field names, codes and
//! time format already applied (a row is the request's path and body,
//! exactly what will be sent, so a configuration change later does not
//! rewrite what was decided); [`Platform`] sends them.
//!
//! Cities differ in field names, code tables, endpoints and time formats, so
//! those are a **profile**: `generic` is built in (the contract's JSON) and
//! `[[upstream.elevator_profile]]` describes a region's as changes to it.
//!
//! OAuth 2.0 is a plain form POST with reqwest (already the gateway's HTTP
//! client), not the `oauth2` crate: the client-credentials grant is one
//! request and one JSON answer, and the crate would bring its own HTTP
//! client features, `chrono`, `url` and `rand` for flows the gateway never
//! uses (docs/architecture.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::outbox::{Connector, Entry, Failure, Row};

/// The connector's name prefix: rows of the platform `name` are those of
/// the connector `elevator:{name}`.
pub const PREFIX: &str = "elevator:";

/// `[[upstream.elevator_platform]]`: one platform the lifts' alarms go to.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// Its name, unique among the platforms (records, metrics, the outbox).
    #[serde(default = "default_name")]
    pub name: String,
    /// The API's base URL: alarms go to `{url}/alarms`, disposals to
    /// `{url}/disposals` (the profile may name other paths).
    pub url: String,
    /// The OAuth 2.0 token endpoint (client credentials grant).
    pub token_url: String,
    /// The OAuth 2.0 client id the platform issued.
    pub client_id: String,
    /// Its secret: best given as `client_secret_file` or
    /// `client_secret_env`. Never logged; redacted in records.
    pub client_secret: String,
    /// `generic` (built in) or the name of an `[[upstream.elevator_profile]]`.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// The OAuth 2.0 scope to ask for, if the platform wants one.
    #[serde(default)]
    pub scope: Option<String>,
    /// How the client authenticates at the token endpoint: `basic` (HTTP
    /// Basic, RFC 6749 §2.3.1) or `body` (`client_id` and `client_secret`
    /// in the form).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The compounds whose lifts it receives (all if absent).
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Each request's timeout (`10s`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

// Hand-written: the derived one would print the secret into any log line
// that shows the configuration.
impl std::fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("profile", &self.profile)
            .field("scope", &self.scope)
            .field("client_auth", &self.client_auth)
            .field("sites", &self.sites)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn default_name() -> String {
    "elevator-platform".into()
}

fn default_profile() -> String {
    "generic".into()
}

fn default_timeout() -> String {
    "10s".into()
}

/// How the client id and secret reach the token endpoint.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic (the RFC's preference).
    #[default]
    Basic,
    /// In the form body.
    Body,
}

/// How times are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 in China's time: `2026-11-03T08:02:00.000+08:00`.
    #[default]
    Rfc3339,
    /// Milliseconds since the Unix epoch, a number.
    EpochMs,
    /// Seconds since the Unix epoch, a number.
    EpochS,
    /// `2026-11-03 08:02:00`, China's time without an offset (what many
    /// regional platforms take).
    Local,
}

/// `[[upstream.elevator_profile]]`: a region's differences from `generic`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// Its name, as a platform's `profile` gives it.
    pub name: String,
    /// The alarms' path under the platform's `url` (`/alarms`).
    pub alarms_path: Option<String>,
    /// The disposals' path (`/disposals`).
    pub disposals_path: Option<String>,
    /// How times are written: `rfc3339`, `epoch_ms`, `epoch_s`, `local`.
    pub time_format: TimeFormat,
    /// Our field names to theirs (`registration_code = "equipCode"`); a field
    /// mapped to `""` is left out.
    pub fields: BTreeMap<String, String>,
    /// Our codes to their fault codes, over the generic table
    /// (`trapped = "3001"`).
    pub codes: BTreeMap<String, String>,
    /// Our alarm statuses (`new`, `cleared`) to theirs.
    pub statuses: BTreeMap<String, String>,
    /// Our disposal statuses (`01`, `02`, `04`, `00`, `05`) to theirs.
    pub disposal_statuses: BTreeMap<String, String>,
    /// Fields added to every body as they are (`platform_code = "WH-0012"`).
    pub extra: BTreeMap<String, Value>,
    /// A field of the platform's answer that says whether it took the
    /// message (many answer HTTP 200 with `{"code": 500}`); unset: any 2xx is taken.
    pub ok_field: Option<String>,
    /// The values of `ok_field` that mean taken (`["0", "200"]`); a number
    /// is compared as its text.
    pub ok_values: Vec<String>,
}

/// The disposal statuses of work-order steps (GB/T 24476 style).
pub const DISPOSALS: &[(&str, &str, &str)] = &[
    ("01", "dispatched", "发生 occurred: the order was dispatched"),
    ("02", "responded", "响应 responded"),
    ("04", "arrived", "到场 arrived on site"),
    ("00", "completed", "完成 done"),
    ("05", "false_alarm", "误报 false alarm"),
];

/// The fault code the generic profile sends for one of our codes: the
/// GB/T 24476 number as two digits where the standard has one (01–08, 41,
/// 90: `protocol::EventCode::gbt24476`), else the code's name.
#[must_use]
pub fn generic_code(code: &str) -> String {
    protocol::EventCode::from_name(code)
        .and_then(protocol::EventCode::gbt24476)
        .map_or_else(|| code.to_owned(), |n| format!("{n:02}"))
}

/// A profile ready to render bodies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    cfg: ProfileConfig,
}

impl Profile {
    /// The profile a platform names: `generic`, or one of `profiles`.
    #[must_use]
    pub fn named(name: &str, profiles: &[ProfileConfig]) -> Option<Profile> {
        if name == "generic" {
            return Some(Profile::default());
        }
        profiles
            .iter()
            .find(|p| p.name == name)
            .map(|p| Profile { cfg: p.clone() })
    }

    fn code(&self, code: &str) -> String {
        self.cfg.codes.get(code).cloned().unwrap_or_else(|| generic_code(code))
    }

    /// A time as the profile writes it.
    #[must_use]
    pub fn time(&self, ms: i64) -> Value {
        let china = || {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .ok()
                .map(|t| t.to_offset(time::macros::offset!(+8)))
        };
        match self.cfg.time_format {
            TimeFormat::EpochMs => json!(ms),
            TimeFormat::EpochS => json!(ms.div_euclid(1000)),
            TimeFormat::Rfc3339 => {
                let f = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+08:00"
                );
                json!(china().and_then(|t| t.format(&f).ok()).unwrap_or_default())
            }
            TimeFormat::Local => {
                let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
                json!(china().and_then(|t| t.format(&f).ok()).unwrap_or_default())
            }
        }
    }

    /// Our body under their names, with their constants.
    fn finish(&self, ours: Map<String, Value>) -> Value {
        let mut out = Map::new();
        for (k, v) in ours {
            match self.cfg.fields.get(&k) {
                Some(theirs) if theirs.is_empty() => {}
                Some(theirs) => {
                    out.insert(theirs.clone(), v);
                }
                None => {
                    out.insert(k, v);
                }
            }
        }
        for (k, v) in &self.cfg.extra {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }

    fn path(&self, alarms: bool) -> String {
        let (set, default) = if alarms {
            (&self.cfg.alarms_path, "/alarms")
        } else {
            (&self.cfg.disposals_path, "/disposals")
        };
        set.clone().unwrap_or_else(|| default.to_owned())
    }

    /// An alarm's request: its path and body.
    #[must_use]
    pub fn alarm(&self, a: &alerting::AlertView, status: &str, occurred: i64, reported: i64) -> Value {
        let floor = a
            .evidence
            .iter()
            .find(|e| e.metric == "floor" && e.port.is_none())
            .map_or(Value::Null, |e| number(e.value));
        let name = if a.label_zh.is_empty() {
            protocol::EventCode::label_zh_of(&a.code)
        } else {
            &a.label_zh
        };
        let mut b = Map::new();
        b.insert("registration_code".into(), json!(a.device));
        b.insert("fault_code".into(), json!(self.code(&a.code)));
        b.insert("fault_name".into(), json!(name));
        b.insert(
            "status".into(),
            json!(self.cfg.statuses.get(status).map_or(status, String::as_str)),
        );
        b.insert("occurred_at".into(), self.time(occurred));
        b.insert("reported_at".into(), self.time(reported));
        b.insert("floor".into(), floor);
        b.insert("channel".into(), json!("iot"));
        b.insert("alarm_id".into(), json!(alarm_id(a.id, a.since)));
        json!({ "path": self.path(true), "body": self.finish(b) })
    }

    /// A disposal's request: its path and body.
    #[must_use]
    pub fn disposal(&self, alarm: &str, status: &str, at: i64, operator: &str) -> Value {
        let mut b = Map::new();
        b.insert("alarm_id".into(), json!(alarm));
        b.insert(
            "disposal_status".into(),
            json!(self.cfg.disposal_statuses.get(status).map_or(status, String::as_str)),
        );
        b.insert("at".into(), self.time(at));
        b.insert("operator".into(), json!(operator));
        json!({ "path": self.path(false), "body": self.finish(b) })
    }
}

/// A whole number as an integer, else as it is.
fn number(v: f64) -> Value {
    #[allow(clippy::cast_possible_truncation)]
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// The alarm's id on the platform: the alert's episode number and the
/// moment its fault began, so a gateway whose store was wiped (ids start
/// again) never reuses one.
#[must_use]
pub fn alarm_id(alert: u64, since: i64) -> String {
    format!("{alert}-{since}")
}

/// Decides a platform's rows: elevator alerts that fire or clear, and the
/// steps of their corrective work orders.
pub struct ElevatorMapper {
    connector: String,
    sites: Option<Vec<String>>,
    profile: Profile,
    /// Alerts reported `new` and not yet cleared, so one that fired under
    /// maintenance is reported once it leaves maintenance, and only once
    /// (after a restart it may be once more, under the same idempotency key).
    reported: std::collections::HashSet<u64>,
}

impl ElevatorMapper {
    /// The mapper of `platform` with its profile.
    #[must_use]
    pub fn new(platform: &PlatformConfig, profile: Profile) -> ElevatorMapper {
        ElevatorMapper {
            connector: format!("{PREFIX}{}", platform.name),
            sites: platform.sites.clone(),
            profile,
            reported: std::collections::HashSet::new(),
        }
    }

    fn wants(&self, class: &str, site: &str) -> bool {
        class == "elevator" && self.sites.as_ref().is_none_or(|s| s.iter().any(|x| x == site))
    }

    fn alarm(&mut self, now: i64, c: &alerting::AlertChange) -> Option<Entry> {
        let a = &c.alert;
        // A lift under maintenance (somebody on site for its maintenance
        // order) is recorded, never notified: nor is it reported, or the
        // platform would send a rescue to a fitter's test. An alert keeps
        // that flag once notified, so one that fired under maintenance and
        // cleared in it is never reported, and one reported is cleared.
        if !self.wants(&a.class, &a.site) || a.maintenance {
            return None;
        }
        let open = matches!(a.state, alerting::State::Firing | alerting::State::Acknowledged);
        let (status, occurred) = match c.change {
            alerting::Change::Fired => ("new", a.since),
            // Out of maintenance while still firing: notified now, and
            // reported now.
            alerting::Change::Updated if open && !self.reported.contains(&a.id) => ("new", a.since),
            alerting::Change::Resolved => ("cleared", a.resolved_at.unwrap_or(now)),
            _ => return None,
        };
        if status == "new" {
            self.reported.insert(a.id);
        } else {
            self.reported.remove(&a.id);
        }
        let id = alarm_id(a.id, a.since);
        Some(Entry {
            connector: self.connector.clone(),
            key: format!("{id}/{status}"),
            payload: self.profile.alarm(a, status, occurred, now),
            site: a.site.clone(),
            class: a.class.clone(),
            device: a.device.clone(),
            subject: format!("alert:{}", a.id),
            created: now,
        })
    }

    fn disposal(&self, now: i64, change: &dispatch::OrderChange, o: &dispatch::Order) -> Option<Entry> {
        use dispatch::{OrderChange, Status};
        if !self.wants(&o.class, &o.site) || o.kind != dispatch::Kind::Corrective {
            return None;
        }
        let first = *o.alerts.first()?;
        let status = match change {
            OrderChange::Dispatched => Status::Dispatched,
            OrderChange::Stepped { status } => *status,
            _ => return None,
        };
        let code = match status {
            Status::Dispatched => "01",
            Status::Responded => "02",
            Status::Arrived => "04",
            Status::Completed => "00",
            Status::FalseAlarm => "05",
        };
        let step = o.steps.iter().rev().find(|s| s.status == status);
        let (at, operator) = match (status, step) {
            (Status::Dispatched, _) => (o.created_at, o.contractor.clone().unwrap_or_default()),
            (_, Some(s)) => (s.at, s.by.clone()),
            (_, None) => (now, String::new()),
        };
        let alarm = alarm_id(first, o.fault_since);
        Some(Entry {
            connector: self.connector.clone(),
            key: format!("{alarm}/disposal/{code}"),
            payload: self.profile.disposal(&alarm, code, at, &operator),
            site: o.site.clone(),
            class: o.class.clone(),
            device: o.device.clone(),
            subject: format!("order:{}", o.id),
            created: now,
        })
    }
}

impl super::Mapper for ElevatorMapper {
    fn connector(&self) -> &str {
        &self.connector
    }

    fn map(&mut self, now: i64, effects: &[alerting::Effect], outs: &[dispatch::Out], rows: &mut Vec<Entry>) {
        for e in effects {
            if let alerting::Effect::Alert(c) = e
                && let Some(r) = self.alarm(now, c)
            {
                rows.push(r);
            }
        }
        for o in outs {
            if let dispatch::Out::Order { change, order } = o
                && let Some(r) = self.disposal(now, change, order)
            {
                rows.push(r);
            }
        }
    }
}

/// The token endpoint's answer (RFC 6749 §5.1), what of it is used.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

/// A bearer token and when to stop using it.
struct Token {
    value: String,
    until: Option<Instant>,
}

/// Sends a platform's rows: a token from its token endpoint (again when it
/// expires, and once more on a 401), then the row's POST with its
/// idempotency key.
pub struct Platform {
    cfg: PlatformConfig,
    url: String,
    ok: Option<(String, Vec<String>)>,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<Token>>,
}

/// How long before its expiry a token is replaced.
const EARLY: Duration = Duration::from_mins(1);

/// How much of an answer's body an error keeps.
const SNIPPET: usize = 300;

impl Platform {
    /// The connector of `cfg`, answers judged by `profile`.
    ///
    /// # Errors
    /// A bad timeout or an HTTP client that cannot be built.
    pub fn new(cfg: &PlatformConfig, profile: &Profile) -> Result<Platform, String> {
        let timeout = humantime::parse_duration(&cfg.timeout).map_err(|e| format!("timeout: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Platform {
            url: cfg.url.trim_end_matches('/').to_owned(),
            ok: profile.cfg.ok_field.clone().map(|f| (f, profile.cfg.ok_values.clone())),
            cfg: cfg.clone(),
            http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The connector's name.
    #[must_use]
    pub fn connector(&self) -> String {
        format!("{PREFIX}{}", self.cfg.name)
    }

    /// A token: the one held while it is fresh, else a new one.
    async fn bearer(&self, fresh: bool) -> Result<String, Failure> {
        let mut held = self.token.lock().await;
        if !fresh
            && let Some(t) = held.as_ref()
            && t.until.is_none_or(|u| Instant::now() < u)
        {
            return Ok(t.value.clone());
        }
        *held = None;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = &self.cfg.scope {
            form.push(("scope", s));
        }
        let mut req = self.http.post(&self.cfg.token_url);
        match self.cfg.client_auth {
            ClientAuth::Basic => req = req.basic_auth(&self.cfg.client_id, Some(&self.cfg.client_secret)),
            ClientAuth::Body => {
                form.push(("client_id", &self.cfg.client_id));
                form.push(("client_secret", &self.cfg.client_secret));
            }
        }
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("token endpoint: {}", e.without_url())))?;
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if !status.is_success() {
            // A refused client is a configuration problem the operator
            // fixes; the rows wait (retried) rather than die meanwhile.
            return Err(Failure::Retry(format!(
                "token endpoint answered HTTP {}: {}",
                status.as_u16(),
                snippet(&body)
            )));
        }
        let a: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| Failure::Retry(format!("token endpoint: not a token answer: {e}")))?;
        let until = a.expires_in.map(|s| {
            let life = Duration::from_secs(s);
            Instant::now() + life.saturating_sub(EARLY.min(life / 10))
        });
        tracing::info!(connector = %self.connector(), expires_in = ?a.expires_in, "upstream token obtained");
        let value = a.access_token.clone();
        *held = Some(Token {
            value: a.access_token,
            until,
        });
        Ok(value)
    }

    /// Whether a 2xx answer's body says it was taken.
    fn taken(&self, body: &[u8]) -> Result<(), Failure> {
        let Some((field, values)) = &self.ok else {
            return Ok(());
        };
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let got = match v.get(field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        if values.contains(&got) {
            Ok(())
        } else {
            Err(Failure::Retry(format!(
                "the platform did not take it ({field} = {got:?}): {}",
                snippet(body)
            )))
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(SNIPPET).collect()
}

impl Connector for Platform {
    async fn deliver(&self, row: &Row) -> Result<(), Failure> {
        let path = row.entry.payload["path"].as_str().unwrap_or("/alarms");
        let body = row.entry.payload["body"].to_string();
        let url = format!("{}{path}", self.url);
        let mut refreshed = false;
        loop {
            let token = self.bearer(refreshed).await?;
            let resp = self
                .http
                .post(&url)
                .bearer_auth(&token)
                .header("Idempotency-Key", &row.entry.key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| Failure::Retry(format!("{path}: {}", e.without_url())))?;
            let status = resp.status().as_u16();
            let answer = resp.bytes().await.unwrap_or_default();
            match status {
                200..=299 => return self.taken(&answer),
                // The token was revoked or expired early: one fresh token.
                401 if !refreshed => {
                    tracing::info!(connector = %self.connector(), "the platform refused the token: getting a new one");
                    refreshed = true;
                }
                401 | 408 | 425 | 429 | 500..=599 => {
                    return Err(Failure::Retry(format!("{path}: HTTP {status}: {}", snippet(&answer))));
                }
                _ => {
                    return Err(Failure::Permanent(format!(
                        "{path}: HTTP {status}: {}",
                        snippet(&answer)
                    )));
                }
            }
        }
    }
}

/// The problems of the platforms and profiles, as (field, message).
#[must_use]
pub fn check(platforms: &[PlatformConfig], profiles: &[ProfileConfig]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, p) in profiles.iter().enumerate() {
        let at = format!("upstream.elevator_profile[{i}]");
        if p.name.is_empty() || p.name == "generic" {
            out.push((format!("{at}.name"), "must be a name other than `generic`".into()));
        }
        if profiles[..i].iter().any(|o| o.name == p.name) {
            out.push((format!("{at}.name"), format!("`{}` is named twice", p.name)));
        }
        for (field, path) in [("alarms_path", &p.alarms_path), ("disposals_path", &p.disposals_path)] {
            if path.as_ref().is_some_and(|s| !s.starts_with('/')) {
                out.push((format!("{at}.{field}"), "must start with /".into()));
            }
        }
        if p.ok_field.is_some() && p.ok_values.is_empty() {
            out.push((format!("{at}.ok_values"), "is required with `ok_field`".into()));
        }
    }
    for (i, p) in platforms.iter().enumerate() {
        let at = format!("upstream.elevator_platform[{i}]");
        if p.name.is_empty() {
            out.push((format!("{at}.name"), "must not be empty".into()));
        }
        if platforms[..i].iter().any(|o| o.name == p.name) {
            out.push((
                format!("{at}.name"),
                format!("`{}` is named twice: give each platform its own `name`", p.name),
            ));
        }
        for (field, url) in [("url", &p.url), ("token_url", &p.token_url)] {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => out.push((format!("{at}.{field}"), format!("`{url}` is not an http(s) URL"))),
            }
        }
        if p.client_id.is_empty() || p.client_secret.is_empty() {
            out.push((
                format!("{at}.client_secret"),
                "`client_id` and `client_secret` must not be empty".into(),
            ));
        }
        if Profile::named(&p.profile, profiles).is_none() {
            out.push((
                format!("{at}.profile"),
                format!(
                    "`{}` is neither `generic` nor an [[upstream.elevator_profile]]",
                    p.profile
                ),
            ));
        }
        match humantime::parse_duration(&p.timeout) {
            Ok(d) if !d.is_zero() => {}
            _ => out.push((
                format!("{at}.timeout"),
                format!("`{}` is not a duration (10s)", p.timeout),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Mapper as _;

    fn mapper() -> ElevatorMapper {
        let platform: PlatformConfig = serde_json::from_value(serde_json::json!({
            "url": "https://96333.example/api", "token_url": "https://96333.example/token",
            "client_id": "fm", "client_secret": "s"
        }))
        .unwrap();
        ElevatorMapper::new(&platform, Profile::named("generic", &[]).unwrap())
    }

    fn change(change: alerting::Change, state: &str, maintenance: bool) -> alerting::Effect {
        let alert: alerting::AlertView = serde_json::from_value(serde_json::json!({
            "id": 7, "site": "lakeside", "class": "elevator", "device": "EL-1", "code": "trapped",
            "port": null, "severity": "critical", "state": state, "since": 1_000, "fired_at": 1_000,
            "acked_at": null, "acked_by": null, "resolved_at": if state == "resolved" { Some(9_000) } else { None },
            "flapping": false, "data": "fresh", "inhibited_by": null, "maintenance": maintenance,
            "sources": [], "building": null, "evidence": []
        }))
        .unwrap();
        alerting::Effect::Alert(alerting::AlertChange { change, alert })
    }

    fn statuses(m: &mut ElevatorMapper, effects: &[alerting::Effect]) -> Vec<String> {
        let mut rows = Vec::new();
        m.map(10_000, effects, &[], &mut rows);
        rows.iter().map(|r| r.key.clone()).collect()
    }

    #[test]
    fn an_alarm_under_maintenance_is_reported_when_it_leaves_it_and_cleared_once() {
        use alerting::Change::{Fired, Resolved, Updated};
        let mut m = mapper();
        // Fired under maintenance: nothing; cleared in it: nothing.
        assert!(statuses(&mut m, &[change(Fired, "firing", true)]).is_empty());
        assert!(statuses(&mut m, &[change(Resolved, "resolved", true)]).is_empty());
        // Fired under maintenance, out of it while firing: `new` then, once;
        // its clearing follows.
        assert!(statuses(&mut m, &[change(Fired, "firing", true)]).is_empty());
        assert_eq!(statuses(&mut m, &[change(Updated, "firing", false)]), ["7-1000/new"]);
        assert!(statuses(&mut m, &[change(Updated, "firing", false)]).is_empty());
        assert_eq!(
            statuses(&mut m, &[change(Resolved, "resolved", false)]),
            ["7-1000/cleared"]
        );
        // Fired plainly: `new` at once, and an update is no second `new`.
        assert_eq!(statuses(&mut m, &[change(Fired, "firing", false)]), ["7-1000/new"]);
        assert!(statuses(&mut m, &[change(Updated, "acknowledged", false)]).is_empty());
    }
}
