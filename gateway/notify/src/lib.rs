//! Notification channels (webhook, MQTT, e-mail, and for property staff in
//! China the WeCom and DingTalk group robots and SMS) behind one trait, and an
//! [`Outbox`] that delivers through them with retries, exponential backoff and
//! a dead-letter outcome, without ever blocking the caller.
//!
//! # Why it is shaped this way
//!
//! The gateway decides *what* to tell *whom* on its synchronous pipeline
//! thread (alerts, work orders, supervision flags). Reaching a person is slow
//! and unreliable: a contractor's webhook times out, a mail relay greylists, a
//! broker is restarting. None of that may stall alert evaluation, so:
//!
//! - [`Outbox::submit`] only puts a [`Delivery`] in a bounded queue and returns
//!   at once, from any thread, runtime or not. A full or closed queue hands the
//!   delivery back ([`SubmitError`]) so the caller can count and record it:
//!   back-pressure is visible, never a hidden wait.
//! - Every delivery ends in exactly one [`Outcome`] per channel that reaches
//!   the contact: delivered, or a dead letter carrying the last error. The
//!   gateway turns outcomes into supervision records and metrics, so "we tried
//!   six times over a minute and the webhook kept answering 503" is provable.
//! - A [`Channel`] makes one attempt and says whether retrying can help
//!   ([`SendError::retryable`]); the outbox owns the retry schedule
//!   ([`RetryPolicy`]), the concurrency bound and shutdown. Channels stay small
//!   and testable, and a new channel (SMS, a vendor app) is one trait impl.
//! - Delivery is *at least once*: a retry after a lost reply repeats a message.
//!   [`Message::id`] is unique per (message, recipient) and travels with every
//!   attempt (`X-FM-Id` header, `id` field, `X-FM-Id` mail header) so a
//!   receiver drops duplicates.
//!
//! The trait is dyn-compatible without the `async-trait` crate: `send` returns
//! a boxed future, so the outbox holds `Arc<dyn Channel>` and tests can plug in
//! their own.
//!
//! # Channels
//!
//! | channel | reaches a contact with | one attempt is |
//! |---|---|---|
//! | [`Webhook`] | `webhook = { url, secret }` | an HTTP POST of the JSON message; 2xx is delivered |
//! | [`Mqtt`] | `mqtt = true` | a QoS 1 publish to `{prefix}/{contact id}/{kind}` handed to the gateway's MQTT client |
//! | [`Email`] | `email = "a@b"` | one SMTP transaction (UTF-8 subject and body) |
//! | [`Wecom`] | `wecom = { token }` | a POST to the WeCom group robot; `{"errcode":0}` is delivered |
//! | [`Dingtalk`] | `dingtalk = { access_token, secret }` | a signed POST to the DingTalk custom robot; `{"errcode":0}` is delivered |
//! | [`Sms`] | `sms = ["138…"]` | one request per number to the configured HTTP SMS gateway |
//!
//! The JSON every machine channel carries is [`Message`] serialized:
//! `{"id","kind","site","subject","text","body"}`, and `notice` (the facts)
//! when the gateway gave them. The channels people read on a phone (WeCom,
//! DingTalk, SMS) word the facts with one builder ([`text`]), Chinese first
//! with English beside it, times in China's zone (`+08:00`). Their secrets
//! (keys in URLs, tokens in headers) never reach an error text, so never a
//! log or a dead letter (docs/notifications.md).
//!
//! # Checking a webhook's signature (receiver side)
//!
//! A webhook whose target has a `secret` carries
//!
//! ```text
//! X-FM-Id:        <message id, the same on every retry>
//! X-FM-Timestamp: <unix seconds when this attempt was signed>
//! X-FM-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<raw body bytes>")>
//! ```
//!
//! The timestamp is inside the MAC so a captured request cannot be replayed
//! later with a fresh timestamp. A receiver:
//!
//! 1. reads the **raw** body bytes (before any JSON parsing: re-serializing
//!    changes bytes and breaks the MAC);
//! 2. rejects the request if `X-FM-Timestamp` is more than a few minutes from
//!    its own clock (5 min is usual);
//! 3. computes `HMAC-SHA256(secret, timestamp + "." + body)`, hex-encodes it
//!    and compares it with the header after `sha256=` **in constant time**
//!    (`hmac.compare_digest` in Python, `Mac::verify_slice` in Rust), so the
//!    comparison's timing leaks nothing about the expected value;
//! 4. drops the request if it has already processed this `X-FM-Id`.
//!
//! [`verify_webhook`] does step 3 for Rust receivers and tests.
//!
//! # Retries and dead letters
//!
//! An attempt that fails with a retryable error is tried again after
//! `first`, `2·first`, `4·first`, … capped at `max`, until `attempts` attempts
//! have been made; the last error is then the dead letter's reason. A
//! non-retryable error (HTTP 4xx other than 408/429, SMTP 5xx, an invalid
//! address) is a dead letter at once. Each retry logs a `warn`, each dead
//! letter an `error` (tracing). A contact no channel reaches gives one outcome
//! with channel `"none"` at once.
//!
//! # Shutdown
//!
//! [`Outbox::close`] stops new submissions; work already accepted keeps going
//! (first attempts and retries) until the grace period ends, then whatever is
//! unfinished is cut off and reported with `Err("shutdown: …")`. A delivery
//! whose next retry would fall after the grace is reported at once, and the
//! task ends as soon as nothing is left. Nothing accepted is ever dropped
//! without an [`Outcome`], not even when a channel panics.

mod dingtalk;
mod email;
mod http;
mod mqtt;
mod outbox;
mod serde_duration;
mod sms;
pub mod text;
mod webhook;
mod wecom;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use dingtalk::{
    DINGTALK_BASE_URL, DINGTALK_RETRY_ERRCODES, Dingtalk, DingtalkConfig, DingtalkTarget, dingtalk_body, sign_dingtalk,
    verify_dingtalk,
};
pub use email::{Email, SmtpConfig, SmtpTls};
pub use http::mask_phone;
pub use mqtt::Mqtt;
pub use outbox::{Delivery, Outbox, Outcome, RetryPolicy, SubmitError};
pub use sms::{SMS_PLACEHOLDERS, SMS_SEGMENT_CHARS, Sms, SmsConfig, SmsEncoding, SmsMethod};
pub use text::{AlertFacts, Due, Notice, OrderFacts};
pub use webhook::{Webhook, sign_webhook, verify_webhook};
pub use wecom::{WECOM_BASE_URL, WECOM_RETRY_ERRCODES, Wecom, WecomConfig, WecomTarget, wecom_body};

/// One message to one recipient.
///
/// The gateway renders it once per recipient so every channel sends the same
/// words and the same machine payload. `id` is unique per (message,
/// recipient) and is sent along on every attempt (header / field) so a
/// receiver can drop a duplicate after a retry: delivery is at least once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Unique per (message, recipient); the receiver's de-duplication key.
    pub id: String,
    /// What happened, so a receiver can route without parsing `body`:
    /// `alert_notification`, `order_dispatched`, `order_escalated`,
    /// `bureau_flag`, `duty_missed`, …
    pub kind: String,
    /// The compound (site id) it concerns, for receivers serving several.
    pub site: String,
    /// One line for a mail subject or a phone notification title.
    pub subject: String,
    /// The human-readable body, may be multi-line; any Unicode (Chinese text
    /// such as `电梯困人` survives every channel).
    pub text: String,
    /// The machine payload (alert, work order, …) for programs.
    pub body: serde_json::Value,
    /// The facts, for the channels that word them for people on a phone
    /// (WeCom, DingTalk, SMS); none for a message queued by an older
    /// version, which those channels then send as `subject` and `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
}

/// Where one recipient is reached: any subset of the channels.
///
/// The gateway's configuration embeds it as TOML, which is why unknown fields
/// are rejected (a typo such as `emial` must fail at start, not silently
/// leave a contractor unreachable):
///
/// ```toml
/// [[contacts]]
/// id = "elevator-contractor-a"
/// name = "Wuhan Lift Service"
/// webhook = { url = "https://lift.example/fm", secret = "change-me" }
/// email = "duty@lift.example"
/// mqtt = true
/// wecom = { token_env = "WECOM_LIFT_KEY", mention_mobiles = ["13800138000"] }
/// dingtalk = { access_token_file = "/run/credentials/dingtalk-token", secret_env = "DINGTALK_SECRET" }
/// sms = ["13800138000"]
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Stable id: the MQTT topic level, and `Outcome::to` in records.
    pub id: String,
    /// Display name, used as the mail recipient's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Reached by HTTP POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTarget>,
    /// Reached by e-mail at this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Reached on the gateway's MQTT broker (`{prefix}/{id}/{kind}`).
    #[serde(default)]
    pub mqtt: bool,
    /// Reached in a WeCom group through its robot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wecom: Option<WecomTarget>,
    /// Reached in a DingTalk group through its custom robot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dingtalk: Option<DingtalkTarget>,
    /// Reached by SMS at each of these mobile numbers (the people on duty
    /// for this role at this compound), through `[notify.sms]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sms: Vec<String>,
}

impl Contact {
    /// Checks the robots and numbers of this contact, so a mistake stops
    /// the gateway at start rather than dead-lettering every message later.
    ///
    /// # Errors
    /// The field (`wecom`, `dingtalk`, `sms`) and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(w) = &self.wecom {
            w.check().map_err(|m| ("wecom", m))?;
        }
        if let Some(d) = &self.dingtalk {
            d.check().map_err(|m| ("dingtalk", m))?;
        }
        if let Some(p) = self.sms.iter().find(|p| !http::is_phone(p)) {
            return Err((
                "sms",
                format!("`{p}` is not a mobile number (digits, an optional leading +)"),
            ));
        }
        Ok(())
    }
}

/// A webhook endpoint and its optional signing secret.
///
/// The secret lets the receiver prove the request came from this gateway and
/// was not altered or replayed (see the crate docs); `Debug` never prints it,
/// so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Absolute `http://` or `https://` URL the message is sent to (HTTP POST).
    pub url: String,
    /// Shared secret for the `X-FM-Signature` HMAC; none means unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The future one attempt returns: boxed so [`Channel`] stays dyn-compatible
/// without the `async-trait` crate.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// One way of reaching people. The [`Outbox`] owns retries, backoff,
/// concurrency and shutdown; a channel only makes single attempts and
/// classifies their failures, which keeps each implementation small.
pub trait Channel: Send + Sync {
    /// `"webhook"`, `"mqtt"`, `"email"`, `"wecom"`, `"dingtalk"` or `"sms"`:
    /// names the channel in outcomes, logs and metrics.
    fn name(&self) -> &'static str;

    /// Whether this contact can be reached by this channel at all, so the
    /// outbox only reports outcomes for channels that apply.
    fn reaches(&self, to: &Contact) -> bool;

    /// One attempt. `Err` tells whether retrying can help: a 4xx other than
    /// 408/429 cannot; a 5xx, a timeout or a refused connection can.
    ///
    /// Implementations must bound their own time (a timeout), because the
    /// attempt holds one of the outbox's concurrency permits.
    fn send<'a>(&'a self, to: &'a Contact, msg: &'a Message) -> SendFuture<'a>;

    /// Targets of message `id` this channel has reached so far, for a
    /// delivery cut off part-way (`sms:13800138000` for each number an SMS
    /// got through to). A channel that reaches one target per message has
    /// nothing partial to tell: it is reached when its outcome says so.
    fn progress(&self, _id: &str) -> Vec<String> {
        Vec::new()
    }

    /// Told before the first attempt of a delivery an earlier run cut off:
    /// what [`Channel::progress`] said then, so those targets are not sent
    /// the message again.
    fn resume(&self, _id: &str, _reached: &[String]) {}
}

/// Why one attempt failed, and whether another attempt can succeed.
///
/// The split matters: retrying a rejected address only delays the dead
/// letter (and the record that someone was not told), while giving up on a
/// 503 loses a message a minute later would have delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// True when the same attempt later can succeed (5xx, 408, 429,
    /// timeouts, refused or reset connections, SMTP 4xx, a full MQTT queue).
    pub retryable: bool,
    /// What went wrong, for logs and the dead letter's reason.
    pub message: String,
}

impl SendError {
    /// A failure another attempt may fix (server busy, network down).
    pub fn retryable(message: impl Into<String>) -> SendError {
        SendError {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure no retry can fix (rejected request, invalid address).
    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// A channel that cannot be built from its configuration. Returned at start,
/// so a bad `from` address or TLS setup stops the gateway instead of failing
/// every notification later.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// An HTTP channel could not be built (TLS backend initialisation, a
    /// bad base URL or SMS gateway description).
    #[error("HTTP channel: {0}")]
    Http(String),
    /// The SMTP configuration is invalid.
    #[error("smtp: {0}")]
    Smtp(String),
}

/// An error and all its sources on one line: reqwest and lettre put the
/// useful part ("connection refused") in the source chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_rejects_unknown_fields_and_defaults_mqtt() {
        let c: Contact = serde_json::from_str(r#"{"id":"a","email":"a@b"}"#).unwrap();
        assert!(!c.mqtt);
        assert_eq!(c.email.as_deref(), Some("a@b"));
        assert!(serde_json::from_str::<Contact>(r#"{"id":"a","emial":"a@b"}"#).is_err());
        assert!(serde_json::from_str::<Contact>(r#"{"id":"a","webhook":{"url":"u","sekret":"s"}}"#).is_err());
    }

    #[test]
    fn webhook_secret_is_not_debug_printed() {
        let t = WebhookTarget {
            url: "http://x".into(),
            secret: Some("hunter2".into()),
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
