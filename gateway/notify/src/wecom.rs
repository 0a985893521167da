//! The WeCom (企业微信) group robot channel.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::{self, redact};
use crate::text::{SIGNATURE, Words, cut_bytes, words};
use crate::{Channel, Contact, InitError, Message, SendError, SendFuture};

/// The real WeCom API, the default base URL.
pub const WECOM_BASE_URL: &str = "https://qyapi.weixin.qq.com";

/// WeCom's limits on one message: 4096 bytes of markdown, 2048 of text.
const MARKDOWN_LIMIT: usize = 4096;
const TEXT_LIMIT: usize = 2048;

/// The errcodes another attempt can get past: `-1` (system busy), `45009`
/// (the robot's 20 messages a minute are used up), `45033` (too many calls
/// at once). Every other errcode (`93000` an unknown or deleted robot key,
/// `40008` a message type it does not take, `44004` an empty message, ...)
/// is the same on every retry: a dead letter at once.
pub const WECOM_RETRY_ERRCODES: [i64; 3] = [-1, 45009, 45033];

/// `[notify.wecom]`: where the WeCom API is.
///
/// The base URL is configurable so tests reach a local mock, and a
/// deployment without direct Internet access reaches its own proxy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WecomConfig {
    /// `https://qyapi.weixin.qq.com` unless set; `/cgi-bin/webhook/send` is
    /// added to it.
    pub base_url: String,
}

impl Default for WecomConfig {
    fn default() -> Self {
        WecomConfig {
            base_url: WECOM_BASE_URL.into(),
        }
    }
}

impl WecomConfig {
    /// Checks the base URL.
    ///
    /// # Errors
    /// The field and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        http::check_base_url(&self.base_url).map_err(|m| ("notify.wecom.base_url", m))
    }
}

/// A contact's WeCom group robot: `wecom = { token = "KEY" }`.
///
/// `token` is the robot's webhook key (the `key=` of the URL WeCom shows
/// when the robot is added to a group). Named `token` so that the
/// configuration's secret handling applies: `token_file`/`token_env` keep
/// it out of the file, and configuration records show it redacted. Whoever
/// has the key can post to the group; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomTarget {
    /// The robot's webhook key.
    pub token: String,
    /// Mobile numbers to @-mention when people are in danger (a critical
    /// alert): the message is then sent as `text` with
    /// `mentioned_mobile_list`, since WeCom's markdown cannot mention by
    /// number. `"@all"` mentions everybody in the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mention_mobiles: Vec<String>,
}

impl std::fmt::Debug for WecomTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WecomTarget")
            .field("token", &"<redacted>")
            .field("mention_mobiles", &self.mention_mobiles)
            .finish()
    }
}

impl WecomTarget {
    /// Checks the key and the numbers.
    ///
    /// # Errors
    /// What is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.token.trim().is_empty() || self.token.contains(['&', '#', ' ', '/', '?']) {
            return Err("`token` must be the robot's webhook key (the `key=` of its URL, nothing else)".into());
        }
        check_mentions(&self.mention_mobiles)
    }
}

/// Mentions are mobile numbers or `@all`.
pub(crate) fn check_mentions(mobiles: &[String]) -> Result<(), String> {
    match mobiles.iter().find(|m| *m != "@all" && !http::is_phone(m)) {
        Some(m) => Err(format!(
            "`mention_mobiles`: `{m}` is not a mobile number (digits, an optional +) or \"@all\""
        )),
        None => Ok(()),
    }
}

/// Posts to a contact's WeCom group robot.
///
/// A message is `markdown` (a heading, the detail lines, the gateway's
/// name), or, when it is critical and the target has `mention_mobiles`,
/// `text` with `mentioned_mobile_list`, so the phones on duty ring. Success
/// is HTTP 2xx with `{"errcode":0}`; errcodes in [`WECOM_RETRY_ERRCODES`]
/// and HTTP 408/429/5xx are retried, anything else is a dead letter. The
/// key is in the URL's query, so no error text carries the URL.
#[derive(Clone, Debug)]
pub struct Wecom {
    client: reqwest::Client,
    base_url: String,
}

impl Wecom {
    /// A channel posting to `cfg.base_url`, every attempt bounded by `timeout`.
    ///
    /// # Errors
    /// If the base URL is not one, or the HTTP client cannot be built.
    pub fn new(cfg: &WecomConfig, timeout: Duration) -> Result<Wecom, InitError> {
        cfg.check().map_err(|(_, m)| InitError::Http(m))?;
        Ok(Wecom {
            client: http::client(timeout)?,
            base_url: cfg.base_url.clone(),
        })
    }

    async fn post(&self, to: &Contact, msg: &Message) -> Result<(), SendError> {
        let Some(target) = &to.wecom else {
            return Err(SendError::permanent(format!("contact {} has no WeCom robot", to.id)));
        };
        let secrets = [target.token.as_str()];
        let what = format!("WeCom robot of {} at {}", to.id, self.base_url);
        let mut url = http::join(&self.base_url, "/cgi-bin/webhook/send")
            .map_err(|e| SendError::permanent(redact(&e, &secrets)))?;
        url.query_pairs_mut().append_pair("key", &target.token);
        let body = wecom_body(&words(msg), &target.mention_mobiles);
        let (status, bytes) = http::post_json(&self.client, url, &what, &body, &secrets).await?;
        robot_answer(&what, status, &bytes, &WECOM_RETRY_ERRCODES, &secrets)
    }
}

impl Channel for Wecom {
    fn name(&self) -> &'static str {
        "wecom"
    }

    fn reaches(&self, to: &Contact) -> bool {
        to.wecom.is_some()
    }

    fn send<'a>(&'a self, to: &'a Contact, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(self.post(to, msg))
    }
}

/// The JSON WeCom takes for `w`: `text` with mentions when critical and
/// somebody is to be mentioned, else `markdown`.
#[must_use]
pub fn wecom_body(w: &Words, mention_mobiles: &[String]) -> serde_json::Value {
    if w.critical && !mention_mobiles.is_empty() {
        let content = cut_bytes(&format!("{}\n{SIGNATURE}", w.plain()), TEXT_LIMIT);
        return serde_json::json!({
            "msgtype": "text",
            "text": { "content": content, "mentioned_mobile_list": mention_mobiles },
        });
    }
    let title = if w.critical {
        format!("### <font color=\"warning\">{}</font>", w.title)
    } else {
        format!("### {}", w.title)
    };
    let mut content = title;
    for l in &w.lines {
        content.push_str("\n> ");
        content.push_str(l);
    }
    content.push_str("\n<font color=\"comment\">");
    content.push_str(SIGNATURE);
    content.push_str("</font>");
    serde_json::json!({
        "msgtype": "markdown",
        "markdown": { "content": cut_bytes(&content, MARKDOWN_LIMIT) },
    })
}

/// A robot's answer (WeCom's and DingTalk's have the same shape).
#[derive(Deserialize)]
struct RobotAnswer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// Judges a robot's answer: 2xx with errcode 0 is delivered; an errcode in
/// `retry` or a retryable HTTP status may pass later; any other errcode or
/// status is final. A 2xx that is not a robot's answer (a proxy's page) is
/// retried: it says nothing about the message.
pub(crate) fn robot_answer(
    what: &str,
    status: reqwest::StatusCode,
    body: &[u8],
    retry: &[i64],
    secrets: &[&str],
) -> Result<(), SendError> {
    if !status.is_success() {
        return Err(http::status_error(what, status, body, secrets));
    }
    match serde_json::from_slice::<RobotAnswer>(body) {
        Ok(a) if a.errcode == 0 => Ok(()),
        Ok(a) => {
            let message = redact(
                &format!(
                    "{what}: errcode {} {}",
                    a.errcode,
                    http::detail(a.errmsg.as_bytes(), &[])
                ),
                secrets,
            );
            if retry.contains(&a.errcode) {
                Err(SendError::retryable(message))
            } else {
                Err(SendError::permanent(message))
            }
        }
        Err(_) => Err(SendError::retryable(format!(
            "{what}: HTTP {status} without an errcode: {}",
            http::detail(body, secrets)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(critical: bool) -> Words {
        Words {
            title: "【紧急告警 Critical alert】困人 trapped · lakeside EL-3".into(),
            lines: vec![
                "位置 where：lakeside".into(),
                "时间 time：2026-12-01 08:00:00 +08:00".into(),
            ],
            short_zh: String::new(),
            short_en: String::new(),
            critical,
        }
    }

    #[test]
    fn markdown_unless_critical_with_mentions() {
        let md = wecom_body(&words(false), &["13800138000".into()]);
        assert_eq!(md["msgtype"], "markdown");
        let content = md["markdown"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("### 【紧急告警 Critical alert】困人 trapped"),
            "{content}"
        );
        assert!(content.contains("\n> 位置 where：lakeside\n"), "{content}");
        assert!(
            content.ends_with("设施安全网关 facility-safety gateway</font>"),
            "{content}"
        );

        let critical_nobody = wecom_body(&words(true), &[]);
        assert_eq!(critical_nobody["msgtype"], "markdown");
        assert!(
            critical_nobody["markdown"]["content"]
                .as_str()
                .unwrap()
                .contains("color=\"warning\"")
        );

        let text = wecom_body(&words(true), &["13800138000".into(), "@all".into()]);
        assert_eq!(text["msgtype"], "text");
        assert_eq!(
            text["text"]["mentioned_mobile_list"],
            serde_json::json!(["13800138000", "@all"])
        );
        assert!(text["text"]["content"].as_str().unwrap().starts_with("【紧急告警"));
    }

    #[test]
    fn long_messages_are_cut_to_wecoms_limits() {
        let mut w = words(false);
        w.lines = vec!["告警 firing".repeat(40); 40];
        let md = wecom_body(&w, &[]);
        assert!(md["markdown"]["content"].as_str().unwrap().len() <= MARKDOWN_LIMIT);
        w.critical = true;
        let text = wecom_body(&w, &["13800138000".into()]);
        assert!(text["text"]["content"].as_str().unwrap().len() <= TEXT_LIMIT);
    }

    #[test]
    fn errcodes() {
        let ok = reqwest::StatusCode::OK;
        let judge = |body: &str| robot_answer("w", ok, body.as_bytes(), &WECOM_RETRY_ERRCODES, &["KEY"]);
        assert_eq!(judge(r#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        let limited = judge(r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#).unwrap_err();
        assert!(limited.retryable && limited.message.contains("45009"), "{limited:?}");
        let busy = judge(r#"{"errcode":-1,"errmsg":"system busy"}"#).unwrap_err();
        assert!(busy.retryable);
        let bad = judge(r#"{"errcode":93000,"errmsg":"invalid webhook url KEY"}"#).unwrap_err();
        assert!(!bad.retryable && bad.message.contains("93000"), "{bad:?}");
        assert!(!bad.message.contains("KEY"), "{bad:?}");
        assert!(judge("<html>proxy</html>").unwrap_err().retryable);
        let e = robot_answer("w", reqwest::StatusCode::BAD_GATEWAY, b"", &[], &[]).unwrap_err();
        assert!(e.retryable);
        let e = robot_answer("w", reqwest::StatusCode::NOT_FOUND, b"", &[], &[]).unwrap_err();
        assert!(!e.retryable);
    }

    #[test]
    fn targets_are_checked_and_never_print_their_key() {
        let t: WecomTarget =
            serde_json::from_str(r#"{"token":"693a91f6-7xxx","mention_mobiles":["13800138000"]}"#).unwrap();
        assert!(t.check().is_ok());
        assert!(!format!("{t:?}").contains("693a91f6"));
        let url: WecomTarget =
            serde_json::from_str(r#"{"token":"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=1"}"#).unwrap();
        assert!(url.check().is_err());
        let bad: WecomTarget = serde_json::from_str(r#"{"token":"k","mention_mobiles":["zhang"]}"#).unwrap();
        assert!(bad.check().is_err());
        assert!(serde_json::from_str::<WecomTarget>(r#"{"key":"k"}"#).is_err());
    }
}
