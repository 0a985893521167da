//! SMS through a configurable HTTP SMS gateway.
//!
//! China's SMS providers each have their own HTTP API, and most deployments
//! reach them through a company gateway anyway, so the request is described
//! in configuration rather than coded per provider: URL, method, headers, a
//! body template with placeholders, JSON or form encoding, and what a
//! successful answer looks like. A provider whose API wants a per-request
//! signature computed over the request (Aliyun's, Tencent Cloud's TC3) is
//! reached through a small relay or the provider's own HTTP gateway that
//! takes a static key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::http::{self, mask_phone, redact};
use crate::text::{china_time, words};
use crate::{Channel, Contact, InitError, Message, SendError, SendFuture};

/// One SMS segment of Chinese text (UCS-2): 70 characters.
pub const SMS_SEGMENT_CHARS: usize = 70;

/// How long the numbers already reached for a message are remembered: longer
/// than any retry schedule worth having.
const REMEMBER: Duration = Duration::from_hours(6);

/// The placeholders a template may use (`{name}`; `{{` and `}}` are literal
/// braces).
pub const SMS_PLACEHOLDERS: [&str; 16] = [
    "phone",
    "text",
    "template_id",
    "token",
    "secret",
    "id",
    "kind",
    "site",
    "building",
    "subject",
    "code",
    "label",
    "device",
    "severity",
    "time",
    "order",
];

/// The request's method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SmsMethod {
    /// `POST` (the default).
    #[default]
    Post,
    /// `PUT`.
    Put,
    /// `GET`: everything in `query`, no body.
    Get,
}

/// How the body is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsEncoding {
    /// `application/json` (the default): `body` as JSON, any nesting.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`: `body` must be flat.
    Form,
}

/// `[notify.sms]`: the HTTP SMS gateway.
///
/// ```toml
/// [notify.sms]
/// url = "https://sms.example.com/v1/send"
/// method = "POST"                        # POST | PUT | GET
/// encoding = "json"                      # json | form
/// token_env = "SMS_TOKEN"                # a secret: {token}
/// headers = { Authorization = "Bearer {token}" }
/// template_id = "SMS_0001"
/// body = { to = "{phone}", content = "{text}", template = "{template_id}", params = ["{label}", "{site}"] }
/// success_field = "code"                 # a dotted path into the JSON answer
/// success_value = "OK"
/// retry_values = ["LIMIT_CONTROL"]       # values of the field that mean "later"
/// max_chars = 70                         # one segment
/// ```
///
/// Secrets belong in `token` and `secret` (which may come from
/// `token_file`/`token_env`, are redacted in configuration records and never
/// printed) and are written into headers, query or body as `{token}` and
/// `{secret}`: a key written straight into a header would be recorded.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The gateway's absolute `http(s)://` URL (no placeholders: put
    /// parameters in `query`, which is encoded properly).
    pub url: String,
    /// `POST` unless set.
    #[serde(default)]
    pub method: SmsMethod,
    /// `json` unless set.
    #[serde(default)]
    pub encoding: SmsEncoding,
    /// Request headers; values may use placeholders.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to the URL; values may use placeholders.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// The body template: every string in it may use placeholders. Unset:
    /// `{"phone": "{phone}", "text": "{text}"}` (none for `GET`).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// The provider's template id, for `{template_id}`.
    #[serde(default)]
    pub template_id: Option<String>,
    /// A secret for `{token}` (an API key).
    #[serde(default)]
    pub token: Option<String>,
    /// A second secret for `{secret}`.
    #[serde(default)]
    pub secret: Option<String>,
    /// The statuses that may mean success; any 2xx unless set.
    #[serde(default)]
    pub success_status: Vec<u16>,
    /// A dotted path into the JSON answer (`code`, `result.0.status`) whose
    /// value must be `success_value`; unset: the status alone decides.
    #[serde(default)]
    pub success_field: Option<String>,
    /// The value of `success_field` that means sent (compared as text:
    /// `0` matches the number 0 and the string "0").
    #[serde(default)]
    pub success_value: Option<String>,
    /// Values of `success_field` that mean "not now" (throttling): retried.
    /// Any other value is a dead letter at once.
    #[serde(default)]
    pub retry_values: Vec<String>,
    /// The longest text, in characters; 70 (one segment) unless set. Count
    /// the signature the provider adds (`【某物业】`) against it.
    #[serde(default = "default_max_chars")]
    pub max_chars: usize,
}

fn default_max_chars() -> usize {
    SMS_SEGMENT_CHARS
}

impl std::fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
        f.debug_struct("SmsConfig")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("encoding", &self.encoding)
            .field("headers", &names(&self.headers))
            .field("query", &names(&self.query))
            .field("template_id", &self.template_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("success_status", &self.success_status)
            .field("success_field", &self.success_field)
            .field("success_value", &self.success_value)
            .field("retry_values", &self.retry_values)
            .field("max_chars", &self.max_chars)
            .finish_non_exhaustive()
    }
}

impl SmsConfig {
    /// Checks everything that can be checked before the first SMS: the URL,
    /// header names, every placeholder, the body's shape, the success check.
    ///
    /// # Errors
    /// The field (under `notify.sms`) and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let parsed = reqwest::Url::parse(&self.url).map_err(|e| ("notify.sms.url", format!("`{}`: {e}", self.url)))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err((
                "notify.sms.url",
                format!("`{}` must start with http:// or https://", self.url),
            ));
        }
        if self.url.contains(['{', '}']) {
            return Err((
                "notify.sms.url",
                "has no placeholders; put parameters in `query`".into(),
            ));
        }
        let known = |name: &str| -> Result<String, String> {
            match name {
                "token" if self.token.is_none() => Err("`{token}` is used but `token` is not set".into()),
                "secret" if self.secret.is_none() => Err("`{secret}` is used but `secret` is not set".into()),
                "template_id" if self.template_id.is_none() => {
                    Err("`{template_id}` is used but `template_id` is not set".into())
                }
                n if SMS_PLACEHOLDERS.contains(&n) => Ok(String::new()),
                n => Err(format!(
                    "unknown placeholder `{{{n}}}` (known: {})",
                    SMS_PLACEHOLDERS.join(", ")
                )),
            }
        };
        for (name, value) in &self.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ("notify.sms.headers", format!("`{name}` is not a header name")))?;
            fill(value, &known).map_err(|m| ("notify.sms.headers", format!("{name}: {m}")))?;
        }
        for (name, value) in &self.query {
            fill(value, &known).map_err(|m| ("notify.sms.query", format!("{name}: {m}")))?;
        }
        if let Some(body) = &self.body {
            if self.method == SmsMethod::Get {
                return Err(("notify.sms.body", "a GET has no body: use `query`".into()));
            }
            fill_value(body, &known).map_err(|m| ("notify.sms.body", m))?;
            if self.encoding == SmsEncoding::Form {
                form_pairs(body, &known).map_err(|m| ("notify.sms.body", m))?;
            }
        }
        if self
            .success_status
            .iter()
            .any(|s| reqwest::StatusCode::from_u16(*s).is_err())
        {
            return Err((
                "notify.sms.success_status",
                "must be HTTP statuses (200, 201, ...)".into(),
            ));
        }
        if self.success_field.is_some() != self.success_value.is_some() {
            return Err((
                "notify.sms.success_value",
                "`success_field` and `success_value` go together".into(),
            ));
        }
        if !self.retry_values.is_empty() && self.success_field.is_none() {
            return Err(("notify.sms.retry_values", "needs `success_field`".into()));
        }
        if self.max_chars < 20 {
            return Err(("notify.sms.max_chars", "must be at least 20 characters".into()));
        }
        Ok(())
    }

    /// The secrets no error text may carry: `token`, `secret`, and every
    /// header and query value as configured (a key written straight in).
    fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = [&self.token, &self.secret].into_iter().flatten().cloned().collect();
        s.extend(
            self.headers
                .values()
                .chain(self.query.values())
                .filter(|v| !v.contains('{'))
                .cloned(),
        );
        s
    }
}

/// `template` with each `{name}` replaced by `value(name)`; `{{` and `}}`
/// are literal braces.
fn fill(template: &str, value: &dyn Fn(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if tail.starts_with('}') {
            return Err(format!("a lone `}}` in `{template}` (write `}}}}`)"));
        } else {
            let Some(end) = tail.find('}') else {
                return Err(format!("an unclosed `{{` in `{template}`"));
            };
            out.push_str(&value(&tail[1..end])?);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A JSON template with every string filled.
fn fill_value(
    template: &serde_json::Value,
    value: &dyn Fn(&str) -> Result<String, String>,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match template {
        Value::String(s) => Value::String(fill(s, value)?),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_value(v, value)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), fill_value(v, value)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// A flat body as form pairs.
fn form_pairs(
    template: &serde_json::Value,
    value: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Vec<(String, String)>, String> {
    use serde_json::Value;
    let Value::Object(map) = template else {
        return Err("a form body is a table of names and values".into());
    };
    map.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => fill(s, value)?,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(format!("`{k}`: a form value is a string, number or boolean")),
            };
            Ok((k.clone(), text))
        })
        .collect()
}

/// The value at a dotted path (`result.0.code`) as text.
fn field_text(answer: &serde_json::Value, path: &str) -> Option<String> {
    let mut at = answer;
    for part in path.split('.') {
        at = match at {
            serde_json::Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            serde_json::Value::Object(map) => map.get(part)?,
            _ => return None,
        };
    }
    Some(match at {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Where one message stands: since when, the numbers reached, and those
/// refused for good (a number retried is neither).
#[derive(Clone, Debug)]
struct Standing {
    since: Instant,
    reached: HashSet<String>,
    refused: Vec<(String, String)>,
}

impl Standing {
    fn new() -> Standing {
        Standing {
            since: Instant::now(),
            reached: HashSet::new(),
            refused: Vec::new(),
        }
    }

    fn settled(&self, phone: &str) -> bool {
        self.reached.contains(phone) || self.refused.iter().any(|(p, _)| p == phone)
    }
}

/// Per message id, where it stands.
type Reached = HashMap<String, Standing>;

/// How a number reached is named in [`Channel::progress`].
const PROGRESS_PREFIX: &str = "sms:";

/// Sends the message as one SMS to each number of the contact (`sms = [...]`).
///
/// The text is [`crate::text::Words::sms`] in at most `max_chars`
/// characters. One attempt sends to every number not yet settled for this
/// message: a number reached is not texted again by a retry, nor after a
/// restart (the outbox keeps what [`Channel::progress`] says with a delivery
/// cut off by shutdown, and hands it back through [`Channel::resume`]); a
/// number refused for good is not tried again. The attempt is retried while
/// any number failed for now, even if another was refused for good; once
/// none is left to retry, a refused number makes the message a dead letter
/// naming it, so nobody is left untold silently.
/// Success is a status in `success_status` (any 2xx) and, with
/// `success_field`, that field equal to `success_value`; a value in
/// `retry_values`, HTTP 408/429/5xx and network failures are retried;
/// anything else is final for that number. Numbers appear in errors masked
/// (`138****8000`); secrets never.
#[derive(Clone)]
pub struct Sms {
    client: reqwest::Client,
    cfg: Arc<SmsConfig>,
    secrets: Arc<[String]>,
    /// Per message id: the numbers already reached, and since when.
    reached: Arc<Mutex<Reached>>,
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sms").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Sms {
    /// A channel through the gateway `cfg` (checked now, so a bad template
    /// stops the gateway at start), every request bounded by `timeout`.
    ///
    /// # Errors
    /// If the configuration does not check, or the HTTP client cannot be built.
    pub fn new(cfg: SmsConfig, timeout: Duration) -> Result<Sms, InitError> {
        cfg.check().map_err(|(f, m)| InitError::Http(format!("{f}: {m}")))?;
        Ok(Sms {
            client: http::client(timeout)?,
            secrets: cfg.secrets().into(),
            cfg: Arc::new(cfg),
            reached: Arc::default(),
        })
    }

    async fn send_all(&self, to: &Contact, msg: &Message) -> Result<(), SendError> {
        if to.sms.is_empty() {
            return Err(SendError::permanent(format!("contact {} has no SMS number", to.id)));
        }
        let before = self.standing(&msg.id);
        let mut later: Vec<SendError> = Vec::new();
        for phone in &to.sms {
            if before.settled(phone) {
                continue;
            }
            match self.send_one(to, msg, phone).await {
                Ok(()) => self.update(&msg.id, |s| {
                    s.reached.insert(phone.clone());
                }),
                Err(e) if e.retryable => later.push(e),
                Err(e) => self.update(&msg.id, |s| s.refused.push((phone.clone(), e.message))),
            }
        }
        let now = self.standing(&msg.id);
        let refused = now.refused.len();
        if let Some(first) = later.first() {
            let mut message = first.message.clone();
            if later.len() > 1 {
                let _ = write!(message, " (and {} more numbers failed for now)", later.len() - 1);
            }
            if refused > 0 {
                let _ = write!(message, "; {refused} refused for good");
            }
            return Err(SendError::retryable(message));
        }
        self.forget(&msg.id);
        let Some((_, first)) = now.refused.first() else {
            return Ok(());
        };
        let mut message = first.clone();
        if refused > 1 {
            let _ = write!(message, " (and {} more numbers refused)", refused - 1);
        }
        if !now.reached.is_empty() {
            let _ = write!(message, "; {} reached", now.reached.len());
        }
        Err(SendError::permanent(message))
    }

    /// Where message `id` stands (nothing settled when unknown).
    fn standing(&self, id: &str) -> Standing {
        let Ok(mut map) = self.reached.lock() else {
            return Standing::new();
        };
        map.retain(|_, s| s.since.elapsed() < REMEMBER);
        map.get(id).cloned().unwrap_or_else(Standing::new)
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Standing)) {
        if let Ok(mut map) = self.reached.lock() {
            change(map.entry(id.to_owned()).or_insert_with(Standing::new));
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut map) = self.reached.lock() {
            map.remove(id);
        }
    }

    async fn send_one(&self, to: &Contact, msg: &Message, phone: &str) -> Result<(), SendError> {
        let cfg = &*self.cfg;
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let what = format!("SMS to {} of {}", mask_phone(phone), to.id);
        let w = words(msg);
        let text = w.sms(cfg.max_chars);
        let notice = msg.notice.as_ref();
        let first_alert = notice.and_then(|n| n.alerts.iter().find(|a| !a.resolved).or(n.alerts.first()));
        let (code, device, severity) = match (notice.and_then(|n| n.order.as_ref()), first_alert) {
            (Some(o), _) => (o.code.clone(), o.device.clone(), o.severity.clone()),
            (None, Some(a)) => (a.code.clone(), a.device.clone(), a.severity.clone()),
            (None, None) => Default::default(),
        };
        let value = |name: &str| -> Result<String, String> {
            Ok(match name {
                "phone" => phone.to_owned(),
                "text" => text.clone(),
                "template_id" => cfg.template_id.clone().unwrap_or_default(),
                "token" => cfg.token.clone().unwrap_or_default(),
                "secret" => cfg.secret.clone().unwrap_or_default(),
                "id" => msg.id.clone(),
                "kind" => msg.kind.clone(),
                "site" => msg.site.clone(),
                "building" => notice.and_then(|n| n.building.clone()).unwrap_or_default(),
                "subject" => w.title.clone(),
                "code" => code.clone(),
                "label" => crate::text::label_zh_or_code(&code),
                "device" => device.clone(),
                "severity" => severity.clone(),
                "time" => notice.map(|n| china_time(n.at)).unwrap_or_default(),
                "order" => notice
                    .and_then(|n| n.order.as_ref())
                    .map(|o| o.id.to_string())
                    .unwrap_or_default(),
                other => return Err(format!("unknown placeholder `{{{other}}}`")),
            })
        };
        let permanent = |m: String| SendError::permanent(redact(&format!("{what}: {m}"), &secrets));
        let method = match cfg.method {
            SmsMethod::Post => reqwest::Method::POST,
            SmsMethod::Put => reqwest::Method::PUT,
            SmsMethod::Get => reqwest::Method::GET,
        };
        let mut request = self.client.request(method, &cfg.url);
        let query: Vec<(String, String)> = cfg
            .query
            .iter()
            .map(|(k, v)| Ok((k.clone(), fill(v, &value)?)))
            .collect::<Result<_, String>>()
            .map_err(permanent)?;
        if !query.is_empty() {
            request = request.query(&query);
        }
        for (name, template) in &cfg.headers {
            request = request.header(name.as_str(), fill(template, &value).map_err(permanent)?);
        }
        if cfg.method != SmsMethod::Get {
            let default_body = serde_json::json!({ "phone": "{phone}", "text": "{text}" });
            let template = cfg.body.as_ref().unwrap_or(&default_body);
            request = match cfg.encoding {
                SmsEncoding::Json => {
                    let body = fill_value(template, &value).map_err(permanent)?;
                    let bytes = serde_json::to_vec(&body).map_err(|e| permanent(e.to_string()))?;
                    request
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(bytes)
                }
                SmsEncoding::Form => request.form(&form_pairs(template, &value).map_err(permanent)?),
            };
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::transport_error(&what, e, &secrets))?;
        let (status, body) = http::answer(&what, response, &secrets).await?;
        self.judge(&what, status, &body, &secrets)
    }

    /// Whether the gateway's answer means sent (see [`Sms`]).
    fn judge(&self, what: &str, status: reqwest::StatusCode, body: &[u8], secrets: &[&str]) -> Result<(), SendError> {
        let cfg = &*self.cfg;
        let status_ok = if cfg.success_status.is_empty() {
            status.is_success()
        } else {
            cfg.success_status.contains(&status.as_u16())
        };
        if !status_ok {
            return Err(http::status_error(what, status, body, secrets));
        }
        let (Some(field), Some(want)) = (&cfg.success_field, &cfg.success_value) else {
            return Ok(());
        };
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Err(SendError::retryable(format!(
                "{what}: HTTP {status}, but the answer is not JSON: {}",
                http::detail(body, secrets)
            )));
        };
        let got = field_text(&answer, field);
        if got.as_deref() == Some(want.as_str()) {
            return Ok(());
        }
        let message = format!(
            "{what}: `{field}` is {}, not {want}: {}",
            got.as_deref().unwrap_or("missing"),
            http::detail(body, secrets)
        );
        let message = redact(&message, secrets);
        if got.is_some_and(|g| cfg.retry_values.contains(&g)) {
            Err(SendError::retryable(message))
        } else {
            Err(SendError::permanent(message))
        }
    }
}

impl Channel for Sms {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn reaches(&self, to: &Contact) -> bool {
        !to.sms.is_empty()
    }

    fn send<'a>(&'a self, to: &'a Contact, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(self.send_all(to, msg))
    }

    fn progress(&self, id: &str) -> Vec<String> {
        let mut reached: Vec<String> = self
            .standing(id)
            .reached
            .iter()
            .map(|p| format!("{PROGRESS_PREFIX}{p}"))
            .collect();
        reached.sort();
        reached
    }

    fn resume(&self, id: &str, reached: &[String]) {
        let numbers: Vec<&str> = reached.iter().filter_map(|r| r.strip_prefix(PROGRESS_PREFIX)).collect();
        if !numbers.is_empty() {
            self.update(id, |s| s.reached.extend(numbers.into_iter().map(str::to_owned)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_json: serde_json::Value) -> SmsConfig {
        serde_json::from_value(toml_json).unwrap()
    }

    fn vars(name: &str) -> Result<String, String> {
        match name {
            "phone" => Ok("13800138000".into()),
            "text" => Ok("困人 \"EL-3\"".into()),
            other => Err(format!("unknown {other}")),
        }
    }

    #[test]
    fn placeholders_fill_and_braces_escape() {
        assert_eq!(
            fill("to {phone}: {text}", &vars).unwrap(),
            "to 13800138000: 困人 \"EL-3\""
        );
        assert_eq!(fill("{{literal}} {phone}", &vars).unwrap(), "{literal} 13800138000");
        assert!(fill("{nope}", &vars).is_err());
        assert!(fill("{phone", &vars).is_err());
        assert!(fill("a } b", &vars).is_err());
        // JSON bodies: strings filled anywhere, quotes stay JSON-correct.
        let body = serde_json::json!({"to": ["{phone}"], "msg": {"content": "{text}"}, "n": 1});
        let filled = fill_value(&body, &vars).unwrap();
        assert_eq!(filled["msg"]["content"], "困人 \"EL-3\"");
        assert_eq!(filled["to"][0], "13800138000");
        assert_eq!(filled["n"], 1);
        // Forms: flat only.
        let pairs = form_pairs(&serde_json::json!({"m": "{phone}", "n": 2}), &vars).unwrap();
        assert_eq!(pairs, [("m".into(), "13800138000".into()), ("n".into(), "2".into())]);
        assert!(form_pairs(&serde_json::json!({"m": {"x": 1}}), &vars).is_err());
    }

    #[test]
    fn configuration_is_checked_at_start() {
        let ok = cfg(serde_json::json!({
            "url": "https://sms.example.com/send", "token": "k",
            "headers": {"Authorization": "Bearer {token}"},
            "body": {"to": "{phone}", "text": "{text}"},
            "success_field": "code", "success_value": "0", "retry_values": ["1015"]
        }));
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(ok.max_chars, 70);
        let printed = format!("{ok:?}");
        assert!(
            !printed.contains("Bearer") && printed.contains("<redacted>"),
            "{printed}"
        );
        let bad = |v: serde_json::Value| cfg(v).check().unwrap_err().0;
        assert_eq!(bad(serde_json::json!({"url": "sms.example.com"})), "notify.sms.url");
        assert_eq!(bad(serde_json::json!({"url": "https://x/{token}"})), "notify.sms.url");
        assert_eq!(
            bad(serde_json::json!({"url": "https://x", "headers": {"A": "{token}"}})),
            "notify.sms.headers"
        );
        assert_eq!(
            bad(serde_json::json!({"url": "https://x", "body": {"a": "{what}"}})),
            "notify.sms.body"
        );
        assert_eq!(
            bad(serde_json::json!({"url": "https://x", "method": "GET", "body": {"a": "b"}})),
            "notify.sms.body"
        );
        assert_eq!(
            bad(serde_json::json!({"url": "https://x", "encoding": "form", "body": {"a": ["b"]}})),
            "notify.sms.body"
        );
        assert_eq!(
            bad(serde_json::json!({"url": "https://x", "success_field": "code"})),
            "notify.sms.success_value"
        );
        assert_eq!(
            bad(serde_json::json!({"url": "https://x", "max_chars": 5})),
            "notify.sms.max_chars"
        );
        assert!(
            serde_json::from_value::<SmsConfig>(serde_json::json!({"url": "https://x", "method": "DELETE"})).is_err()
        );
        assert!(serde_json::from_value::<SmsConfig>(serde_json::json!({"url": "https://x", "tokn": "k"})).is_err());
    }

    #[test]
    fn answers_are_judged_by_status_and_field() {
        let sms = Sms::new(
            cfg(serde_json::json!({
                "url": "https://x/send", "token": "KEY",
                "success_field": "result.0.code", "success_value": "0", "retry_values": ["1015"]
            })),
            Duration::from_secs(1),
        )
        .unwrap();
        let ok = reqwest::StatusCode::OK;
        let judge = |status, body: &str| sms.judge("SMS", status, body.as_bytes(), &["KEY"]);
        assert_eq!(judge(ok, r#"{"result":[{"code":0}]}"#), Ok(()));
        assert_eq!(judge(ok, r#"{"result":[{"code":"0"}]}"#), Ok(()));
        let later = judge(ok, r#"{"result":[{"code":1015}]}"#).unwrap_err();
        assert!(later.retryable, "{later:?}");
        let never = judge(ok, r#"{"result":[{"code":22,"msg":"bad KEY"}]}"#).unwrap_err();
        assert!(!never.retryable && !never.message.contains("KEY"), "{never:?}");
        assert!(judge(ok, "<html>").unwrap_err().retryable);
        assert!(
            judge(reqwest::StatusCode::SERVICE_UNAVAILABLE, "")
                .unwrap_err()
                .retryable
        );
        assert!(!judge(reqwest::StatusCode::UNAUTHORIZED, "").unwrap_err().retryable);
    }
}
