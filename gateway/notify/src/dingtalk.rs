//! The DingTalk (钉钉) custom robot channel, with DingTalk's signed URLs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::http;
use crate::text::{SIGNATURE, Words, cut_bytes, words};
use crate::wecom::{check_mentions, robot_answer};
use crate::{Channel, Contact, InitError, Message, SendError, SendFuture};

/// The real DingTalk API, the default base URL.
pub const DINGTALK_BASE_URL: &str = "https://oapi.dingtalk.com";

/// The most a message's text may be here: DingTalk takes more, but a
/// group message longer than this is not read anyway (the console has it all).
const TEXT_LIMIT: usize = 4096;

/// The errcodes another attempt can get past: `-1` (system busy), `130101`
/// (more than 20 messages a minute: the robot is throttled) and `410100`
/// (throttled). Every other errcode (`310000` a wrong signature, a stale
/// timestamp, a missing keyword or an address not allowed; `300001` an
/// unknown access token; `400102` a disabled robot, ...) is the same on every
/// retry: a dead letter at once.
pub const DINGTALK_RETRY_ERRCODES: [i64; 3] = [-1, 130_101, 410_100];

/// `[notify.dingtalk]`: where the DingTalk API is (configurable for tests
/// and proxies, as for WeCom).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DingtalkConfig {
    /// `https://oapi.dingtalk.com` unless set; `/robot/send` is added to it.
    pub base_url: String,
}

impl Default for DingtalkConfig {
    fn default() -> Self {
        DingtalkConfig {
            base_url: DINGTALK_BASE_URL.into(),
        }
    }
}

impl DingtalkConfig {
    /// Checks the base URL.
    ///
    /// # Errors
    /// The field and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        http::check_base_url(&self.base_url).map_err(|m| ("notify.dingtalk.base_url", m))
    }
}

/// A contact's DingTalk custom robot:
/// `dingtalk = { access_token = "…", secret = "SEC…" }`.
///
/// `access_token` is the `access_token=` of the robot's webhook URL;
/// `secret` is the signing secret shown when the robot's security setting
/// is "加签" (sign). Both are secrets (`…_file`/`…_env` work, records show
/// them redacted, `Debug` never prints them).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingtalkTarget {
    /// The robot's access token.
    pub access_token: String,
    /// The signing secret (`SEC…`); without it requests are unsigned, which
    /// DingTalk takes only from robots secured by keywords or addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Mobile numbers to @-mention when people are in danger (`at.atMobiles`,
    /// and `@number` in the text, which DingTalk needs to highlight them);
    /// `"@all"` sets `isAtAll`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mention_mobiles: Vec<String>,
}

impl std::fmt::Debug for DingtalkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DingtalkTarget")
            .field("access_token", &"<redacted>")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("mention_mobiles", &self.mention_mobiles)
            .finish()
    }
}

impl DingtalkTarget {
    /// Checks the token, the secret and the numbers.
    ///
    /// # Errors
    /// What is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.access_token.trim().is_empty() || self.access_token.contains(['&', '#', ' ', '/', '?']) {
            return Err(
                "`access_token` must be the robot's access token (the `access_token=` of its URL, nothing else)".into(),
            );
        }
        if self.secret.as_ref().is_some_and(|s| s.trim().is_empty()) {
            return Err("`secret` must not be empty (leave it out for an unsigned robot)".into());
        }
        check_mentions(&self.mention_mobiles)
    }
}

/// DingTalk's `sign` for a request at `timestamp_ms`:
/// `base64(HMAC-SHA256(key = secret, "{timestamp_ms}\n{secret}"))`, before
/// URL encoding (the channel's URL builder percent-encodes `+`, `/`, `=`).
/// DingTalk refuses a timestamp more than an hour from its clock, so the
/// gateway's clock must be right (NTP).
#[must_use]
pub fn sign_dingtalk(secret: &str, timestamp_ms: u64) -> String {
    // HMAC accepts keys of any length (long ones are hashed first).
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC-SHA256 takes keys of any length")
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `sign` (URL-decoded) is DingTalk's signature of `timestamp` with
/// `secret`, compared in constant time: what DingTalk checks, for mock
/// receivers and tests.
#[must_use]
pub fn verify_dingtalk(secret: &str, timestamp: &str, sign: &str) -> bool {
    let Ok(tag) = BASE64.decode(sign) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    mac.verify_slice(&tag).is_ok()
}

/// Posts to a contact's DingTalk custom robot.
///
/// Every message is `markdown` (`title` is the notification's title, `text`
/// the heading, the detail lines and the gateway's name); a critical one
/// also @-mentions `mention_mobiles`. With a `secret`, the URL carries
/// `timestamp` (ms) and `sign` ([`sign_dingtalk`]). Success is HTTP 2xx with
/// `{"errcode":0}`; errcodes in [`DINGTALK_RETRY_ERRCODES`] and HTTP
/// 408/429/5xx are retried (each attempt signed afresh), anything else is a
/// dead letter. No error text carries the URL, token or signature.
#[derive(Clone, Debug)]
pub struct Dingtalk {
    client: reqwest::Client,
    base_url: String,
}

impl Dingtalk {
    /// A channel posting to `cfg.base_url`, every attempt bounded by `timeout`.
    ///
    /// # Errors
    /// If the base URL is not one, or the HTTP client cannot be built.
    pub fn new(cfg: &DingtalkConfig, timeout: Duration) -> Result<Dingtalk, InitError> {
        cfg.check().map_err(|(_, m)| InitError::Http(m))?;
        Ok(Dingtalk {
            client: http::client(timeout)?,
            base_url: cfg.base_url.clone(),
        })
    }

    async fn post(&self, to: &Contact, msg: &Message) -> Result<(), SendError> {
        let Some(target) = &to.dingtalk else {
            return Err(SendError::permanent(format!("contact {} has no DingTalk robot", to.id)));
        };
        let what = format!("DingTalk robot of {} at {}", to.id, self.base_url);
        let mut url = http::join(&self.base_url, "/robot/send").map_err(SendError::permanent)?;
        let mut sign = String::new();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("access_token", &target.access_token);
            if let Some(secret) = &target.secret {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                sign = sign_dingtalk(secret, now);
                query.append_pair("timestamp", &now.to_string());
                query.append_pair("sign", &sign);
            }
        }
        let secrets = [
            target.access_token.as_str(),
            target.secret.as_deref().unwrap_or_default(),
            sign.as_str(),
        ];
        let body = dingtalk_body(&words(msg), &target.mention_mobiles);
        let (status, bytes) = http::post_json(&self.client, url, &what, &body, &secrets).await?;
        robot_answer(&what, status, &bytes, &DINGTALK_RETRY_ERRCODES, &secrets)
    }
}

impl Channel for Dingtalk {
    fn name(&self) -> &'static str {
        "dingtalk"
    }

    fn reaches(&self, to: &Contact) -> bool {
        to.dingtalk.is_some()
    }

    fn send<'a>(&'a self, to: &'a Contact, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(self.post(to, msg))
    }
}

/// The JSON DingTalk takes for `w`: `markdown`, with `at` filled in when
/// the message is critical.
#[must_use]
pub fn dingtalk_body(w: &Words, mention_mobiles: &[String]) -> serde_json::Value {
    let mention = w.critical && !mention_mobiles.is_empty();
    let at_all = mention && mention_mobiles.iter().any(|m| m == "@all");
    let mobiles: Vec<&str> = if mention {
        mention_mobiles
            .iter()
            .filter(|m| *m != "@all")
            .map(String::as_str)
            .collect()
    } else {
        Vec::new()
    };
    // DingTalk's markdown joins single line breaks: a blank line between
    // facts keeps one fact a line.
    let mut text = format!("#### {}", w.title);
    for l in &w.lines {
        text.push_str("\n\n");
        text.push_str(l);
    }
    if !mobiles.is_empty() {
        text.push_str("\n\n");
        text.push_str(&mobiles.iter().map(|m| format!("@{m}")).collect::<Vec<_>>().join(" "));
    }
    text.push_str("\n\n###### ");
    text.push_str(SIGNATURE);
    serde_json::json!({
        "msgtype": "markdown",
        "markdown": { "title": cut_bytes(&w.title, 256), "text": cut_bytes(&text, TEXT_LIMIT) },
        "at": { "atMobiles": mobiles, "isAtAll": at_all },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known answer, computed outside Rust:
    ///
    /// ```sh
    /// S='SEC1b2c3d4e5f60718293a4b5c6d7e8f9012345678'; T=1700000000000
    /// printf '%s\n%s' "$T" "$S" | openssl dgst -sha256 -hmac "$S" -binary | base64
    /// # 2A4/QTXJNzaaMV9/iWlEg++gkIvIsECB4JuvnZDWEik=
    /// python3 -c 'import urllib.parse; print(urllib.parse.quote_plus("2A4/QTXJNzaaMV9/iWlEg++gkIvIsECB4JuvnZDWEik="))'
    /// # 2A4%2FQTXJNzaaMV9%2FiWlEg%2B%2BgkIvIsECB4JuvnZDWEik%3D
    /// ```
    #[test]
    fn signature_known_answer() {
        let secret = "SEC1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
        let sign = sign_dingtalk(secret, 1_700_000_000_000);
        assert_eq!(sign, "2A4/QTXJNzaaMV9/iWlEg++gkIvIsECB4JuvnZDWEik=");
        assert!(verify_dingtalk(secret, "1700000000000", &sign));
        assert!(!verify_dingtalk(secret, "1700000000001", &sign));
        assert!(!verify_dingtalk("SECother", "1700000000000", &sign));
        assert!(!verify_dingtalk(secret, "1700000000000", "not base64!"));
        // The URL carries it percent-encoded, as DingTalk's own samples do.
        let mut url = reqwest::Url::parse("https://oapi.dingtalk.com/robot/send").unwrap();
        url.query_pairs_mut().append_pair("sign", &sign);
        assert_eq!(
            url.query(),
            Some("sign=2A4%2FQTXJNzaaMV9%2FiWlEg%2B%2BgkIvIsECB4JuvnZDWEik%3D")
        );
    }

    fn words(critical: bool) -> Words {
        Words {
            title: "【新工单 New work order】#12 困人 trapped · lakeside EL-3".into(),
            lines: vec!["位置 where：lakeside".into(), "设备 device：EL-3".into()],
            short_zh: String::new(),
            short_en: String::new(),
            critical,
        }
    }

    #[test]
    fn markdown_with_mentions_only_when_critical() {
        let mentions = ["13800138000".to_owned(), "@all".to_owned()];
        let calm = dingtalk_body(&words(false), &mentions);
        assert_eq!(calm["msgtype"], "markdown");
        assert_eq!(
            calm["markdown"]["title"],
            "【新工单 New work order】#12 困人 trapped · lakeside EL-3"
        );
        assert_eq!(
            calm["markdown"]["text"],
            "#### 【新工单 New work order】#12 困人 trapped · lakeside EL-3\n\n位置 where：lakeside\n\n设备 device：EL-3\n\n###### 设施安全网关 facility-safety gateway"
        );
        assert_eq!(calm["at"], serde_json::json!({"atMobiles": [], "isAtAll": false}));

        let urgent = dingtalk_body(&words(true), &mentions);
        assert_eq!(
            urgent["at"],
            serde_json::json!({"atMobiles": ["13800138000"], "isAtAll": true})
        );
        assert!(
            urgent["markdown"]["text"]
                .as_str()
                .unwrap()
                .contains("\n\n@13800138000\n\n")
        );
    }

    #[test]
    fn errcodes() {
        let ok = reqwest::StatusCode::OK;
        let judge = |body: &str| robot_answer("d", ok, body.as_bytes(), &DINGTALK_RETRY_ERRCODES, &[]);
        assert_eq!(judge(r#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        assert!(
            judge(r#"{"errcode":130101,"errmsg":"send too fast"}"#)
                .unwrap_err()
                .retryable
        );
        assert!(
            !judge(r#"{"errcode":310000,"errmsg":"sign not match"}"#)
                .unwrap_err()
                .retryable
        );
        assert!(
            !judge(r#"{"errcode":300001,"errmsg":"token is not exist"}"#)
                .unwrap_err()
                .retryable
        );
    }

    #[test]
    fn targets_are_checked_and_never_print_secrets() {
        let t: DingtalkTarget =
            serde_json::from_str(r#"{"access_token":"abc123","secret":"SECxyz","mention_mobiles":["@all"]}"#).unwrap();
        assert!(t.check().is_ok());
        let printed = format!("{t:?}");
        assert!(!printed.contains("abc123") && !printed.contains("SECxyz"), "{printed}");
        let empty: DingtalkTarget = serde_json::from_str(r#"{"access_token":"abc","secret":""}"#).unwrap();
        assert!(empty.check().is_err());
        let url: DingtalkTarget = serde_json::from_str(r#"{"access_token":"x?access_token=y"}"#).unwrap();
        assert!(url.check().is_err());
    }
}
