//! The e-mail channel: one SMTP transaction per attempt through lettre, with
//! rustls for TLS.

use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use crate::{Channel, Contact, InitError, Message, SendError, SendFuture, error_chain};

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or a test server; the
    /// password and the message cross the network readable.
    None,
    /// Connect in plain text and upgrade with STARTTLS (usually port 587);
    /// the upgrade is required, so a relay that does not offer it fails
    /// rather than silently downgrading. The default.
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS", usually port 465).
    Tls,
}

/// The mail relay the gateway submits through, as the configuration writes it:
///
/// ```toml
/// [notify.smtp]
/// host = "smtp.example.com"
/// port = 587
/// tls = "starttls"        # "none" | "starttls" | "tls"
/// username = "fm-gateway"
/// password = "…"
/// from = "FM Gateway <fm@example.com>"
/// timeout = "30s"         # per SMTP command, default 30s
/// ```
///
/// `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host name; also the name its TLS certificate must carry.
    pub host: String,
    /// The relay's port (587 for STARTTLS, 465 for TLS, 25 for plain).
    pub port: u16,
    /// Transport security, `starttls` unless set.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login, when the relay requires authentication (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, `addr@host` or `Name <addr@host>`.
    pub from: String,
    /// Limit on each SMTP step (connect, each command), written like `"30s"`
    /// in configuration; 30 s unless set. Bounds how long one slow relay
    /// holds an outbox permit.
    #[serde(default = "default_timeout", deserialize_with = "crate::serde_duration::deserialize")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends the message as a UTF-8 plain-text mail: subject = the message's
/// subject, body = its text, a blank line, then the pretty-printed JSON body
/// (for people who forward it to a program). The message id travels in an
/// `X-FM-Id` header for de-duplication.
///
/// A permanent (5xx) SMTP reply, e.g. an unknown mailbox, is not retryable;
/// a transient (4xx) reply (greylisting, mailbox busy), a timeout and a
/// refused or dropped connection are. A relay that does not offer STARTTLS
/// when `starttls` is configured is permanent: nothing is sent in the clear.
/// Each attempt opens its own connection:
/// notifications are rare and a pooled connection idling at the relay only
/// adds failure modes.
#[derive(Clone)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Email {
    /// A channel for the relay `cfg`, validated now so a bad sender address
    /// or half-given credentials stop the gateway at start.
    ///
    /// TLS uses rustls with the process-wide crypto provider if one is
    /// installed (the gateway installs ring), else ring; certificates are
    /// checked against the bundled web PKI roots.
    ///
    /// # Errors
    /// If `from` is not a mailbox, only one of `username`/`password` is
    /// given, or the TLS parameters cannot be built.
    pub fn new(cfg: SmtpConfig) -> Result<Email, InitError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| InitError::Smtp(format!("from {:?}: {e}", cfg.from)))?;
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned())
                .map_err(|e| InitError::Smtp(format!("TLS for {host}: {}", error_chain(&e))))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host);
        builder = match cfg.tls {
            SmtpTls::None => builder,
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(&cfg.host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(&cfg.host)?)),
        };
        builder = builder.port(cfg.port).timeout(Some(cfg.timeout));
        match (cfg.username, cfg.password) {
            (Some(user), Some(password)) => builder = builder.credentials(Credentials::new(user, password)),
            (None, None) => {}
            _ => return Err(InitError::Smtp("username and password go together".into())),
        }
        Ok(Email {
            transport: builder.build(),
            from,
        })
    }

    /// The mail for one attempt; any failure here is permanent (the address
    /// or the message will not change on a retry).
    fn compose(&self, to: &Contact, msg: &Message) -> Result<lettre::Message, SendError> {
        let Some(address) = &to.email else {
            return Err(SendError::permanent(format!("contact {} has no e-mail address", to.id)));
        };
        let address: Address = address
            .parse()
            .map_err(|e| SendError::permanent(format!("e-mail address {address:?}: {e}")))?;
        let recipient = Mailbox::new(to.name.clone(), address);
        let payload = serde_json::to_string_pretty(&msg.body)
            .map_err(|e| SendError::permanent(format!("encoding the message body: {e}")))?;
        let text = format!("{}\n\n{payload}\n", msg.text.trim_end());
        lettre::Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(one_line(&msg.subject))
            .header(FmId(msg.id.clone()))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text))
            .map_err(|e| SendError::permanent(format!("building the mail: {e}")))
    }

    async fn deliver(&self, to: &Contact, msg: &Message) -> Result<(), SendError> {
        let mail = self.compose(to, msg)?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let message = format!("SMTP: {}", error_chain(&e));
                // 5xx is the relay's final word; a client-side error is a
                // message lettre cannot write or a relay that does not offer
                // the required STARTTLS (configuration). Everything else
                // (4xx, I/O, timeouts, TLS handshakes cut short) may pass
                // later.
                if e.is_permanent() || e.is_client() {
                    Err(SendError::permanent(message))
                } else {
                    Err(SendError::retryable(message))
                }
            }
        }
    }
}

impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn reaches(&self, to: &Contact) -> bool {
        to.email.is_some()
    }

    fn send<'a>(&'a self, to: &'a Contact, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(self.deliver(to, msg))
    }
}

/// A subject is one header line: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `X-FM-Id` mail header: the de-duplication key, like the webhook's.
#[derive(Clone)]
struct FmId(String);

impl Header for FmId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-FM-Id")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(FmId(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), one_line(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_redaction() {
        let cfg: SmtpConfig = serde_json::from_str(
            r#"{"host":"smtp.example.com","port":587,"from":"fm@example.com","username":"u","password":"hunter2"}"#,
        )
        .unwrap();
        assert_eq!(cfg.tls, SmtpTls::Starttls);
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let cfg: SmtpConfig =
            serde_json::from_str(r#"{"host":"h","port":25,"tls":"none","from":"fm@example.com","timeout":"500ms"}"#)
                .unwrap();
        assert_eq!(cfg.tls, SmtpTls::None);
        assert_eq!(cfg.timeout, Duration::from_millis(500));
        assert!(serde_json::from_str::<SmtpConfig>(r#"{"host":"h","port":25,"from":"a@b","tls":"ssl"}"#).is_err());
        assert!(serde_json::from_str::<SmtpConfig>(r#"{"host":"h","port":25,"from":"a@b","user":"x"}"#).is_err());
    }

    #[test]
    fn bad_config_fails_at_start() {
        let cfg = |from: &str, user: Option<&str>| SmtpConfig {
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            username: user.map(Into::into),
            password: None,
            from: from.into(),
            timeout: Duration::from_secs(1),
        };
        assert!(Email::new(cfg("not an address", None)).is_err());
        assert!(Email::new(cfg("fm@example.com", Some("u"))).is_err());
        assert!(Email::new(cfg("FM 网关 <fm@example.com>", None)).is_ok());
    }

    #[test]
    fn subject_is_one_line() {
        assert_eq!(one_line("电梯困人\r\n3号楼"), "电梯困人 3号楼");
    }
}
