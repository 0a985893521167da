//! The e-mail channel against aiosmtpd (Debian's `python3-aiosmtpd`), reading
//! what arrived in its maildir with Python's own mail parser, so encoding is
//! checked by a decoder not written here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use notify::{Channel, Contact, Delivery, Email, Outbox, SmtpConfig, SmtpTls};

use crate::common::{fast_policy, message, next_outcome, until};

/// A handler that stores mail like `aiosmtpd.handlers.Mailbox` but answers
/// RCPT for `gone@…` with a permanent 550 and for `busy@…` with a
/// transient 451, so both SMTP failure classes come from a real server.
const HANDLER: &str = r#"
from aiosmtpd.handlers import Mailbox

class Picky(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy@"):
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"
"#;

/// aiosmtpd on a free port, storing mail in a maildir; killed when dropped.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Smtp {
    fn start(dir: &Path) -> Smtp {
        std::fs::write(dir.join("fm_test_smtp.py"), HANDLER).unwrap();
        let maildir = dir.join("maildir");
        let port = testkit::free_port();
        let log = std::fs::File::create(dir.join("aiosmtpd.log")).unwrap();
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "fm_test_smtp.Picky",
            ])
            .arg(&maildir)
            .env("PYTHONPATH", dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3-aiosmtpd is not installed: run scripts/install-test-deps.sh");
        // Polls the port with a deadline (10 s).
        testkit::wait_port(port);
        Smtp { child, port, maildir }
    }

    fn config(&self) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "FM 网关 <fm-gateway@example.com>".into(),
            timeout: Duration::from_secs(5),
        }
    }

    fn delivered(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.maildir.join("new"))
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses a stored mail with Python's `email` package (modern policy:
/// RFC 2047 words and transfer encodings decoded).
fn parse_mail(path: &Path) -> serde_json::Value {
    let script = r#"
import email, email.policy, json, sys
with open(sys.argv[1], "rb") as f:
    m = email.message_from_binary_file(f, policy=email.policy.default)
print(json.dumps({
    "to": str(m["To"]), "from": str(m["From"]), "subject": str(m["Subject"]),
    "id": str(m["X-FM-Id"]), "content_type": m.get_content_type(),
    "charset": m.get_content_charset(), "body": m.get_content(),
}))
"#;
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn email_contact(address: &str) -> Contact {
    Contact {
        id: "duty-engineer".into(),
        name: Some("值班工程师".into()),
        webhook: None,
        email: Some(address.into()),
        mqtt: false,
        wecom: None,
        dingtalk: None,
        sms: Vec::new(),
    }
}

#[tokio::test]
async fn a_utf8_mail_arrives_with_subject_text_and_payload() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    let email: Arc<dyn Channel> = Arc::new(Email::new(smtp.config()).unwrap());
    let (outbox, mut rx, _task) = Outbox::start(vec![email], fast_policy(3), 8, 2);
    let msg = message("m-mail");
    outbox
        .submit(Delivery::new(email_contact("duty@example.com"), msg.clone()))
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!((out.channel, out.result, out.attempts), ("email", Ok(()), 1));

    until("the mail in the maildir", || !smtp.delivered().is_empty()).await;
    let mail = parse_mail(&smtp.delivered()[0]);
    assert_eq!(mail["to"], "值班工程师 <duty@example.com>");
    assert_eq!(mail["subject"], "电梯困人 3号楼 2单元");
    assert_eq!(mail["id"], "m-mail");
    assert_eq!(mail["content_type"], "text/plain");
    assert_eq!(mail["charset"], "utf-8");
    let body = mail["body"].as_str().unwrap().replace("\r\n", "\n");
    let pretty = serde_json::to_string_pretty(&msg.body).unwrap();
    assert!(
        body.starts_with(&format!("{}\n\n{pretty}", msg.text)),
        "text, a blank line, then the JSON:\n{body}"
    );
    assert!(body.contains("电梯困人，请立即到场处理"));
}

#[tokio::test]
async fn smtp_5xx_is_permanent_and_4xx_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    let email = Email::new(smtp.config()).unwrap();
    let msg = message("m");

    let err = email.send(&email_contact("gone@example.com"), &msg).await.unwrap_err();
    assert!(!err.retryable && err.message.contains("550"), "{err}");
    let err = email.send(&email_contact("busy@example.com"), &msg).await.unwrap_err();
    assert!(err.retryable && err.message.contains("451"), "{err}");
    let err = email.send(&email_contact("not an address"), &msg).await.unwrap_err();
    assert!(!err.retryable, "{err}");
    assert!(!email.reaches(&Contact {
        email: None,
        ..email_contact("x@example.com")
    }));

    // Through the outbox: the 550 is a dead letter after one attempt, the
    // 451 uses every attempt.
    let email: Arc<dyn Channel> = Arc::new(email);
    let (outbox, mut rx, _task) = Outbox::start(vec![email], fast_policy(3), 8, 2);
    for (id, to) in [("m-1-gone", "gone@example.com"), ("m-2-busy", "busy@example.com")] {
        outbox.submit(Delivery::new(email_contact(to), message(id))).unwrap();
    }
    let all = crate::common::outcomes(&mut rx, 2).await;
    assert_eq!((all[0].id.as_str(), all[0].attempts), ("m-1-gone", 1));
    assert_eq!((all[1].id.as_str(), all[1].attempts), ("m-2-busy", 3));
    assert!(all.iter().all(|o| o.result.is_err()));
    assert!(smtp.delivered().is_empty());
}

#[tokio::test]
async fn a_refused_smtp_connection_is_retryable() {
    let mut cfg = SmtpConfig {
        host: "127.0.0.1".into(),
        port: testkit::free_port(),
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "fm@example.com".into(),
        timeout: Duration::from_secs(2),
    };
    let email = Email::new(cfg.clone()).unwrap();
    let err = email
        .send(&email_contact("duty@example.com"), &message("m"))
        .await
        .unwrap_err();
    assert!(err.retryable, "{err}");
    // STARTTLS is required when configured: a plain server is not silently used.
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    cfg.port = smtp.port;
    cfg.tls = SmtpTls::Starttls;
    let email = Email::new(cfg).unwrap();
    let err = email
        .send(&email_contact("duty@example.com"), &message("m"))
        .await
        .unwrap_err();
    assert!(err.message.contains("STARTTLS"), "{err}");
    assert!(
        !err.retryable,
        "a relay without STARTTLS is a configuration error: {err}"
    );
    assert!(smtp.delivered().is_empty());
}
