//! What the HTTP channels of China's services (WeCom, DingTalk, an SMS
//! gateway) share: a client, reading an answer, classifying failures, and
//! keeping secrets out of every error text.
//!
//! Their secrets travel in the URL (WeCom's `key`, DingTalk's
//! `access_token`) or in headers, and reqwest puts the whole URL into its
//! errors' text. So every error here is built from `reqwest::Error::without_url`
//! and then passed through [`redact`], which blanks every secret the channel
//! knows: a receiver that echoes a request back cannot leak one either.

use std::time::Duration;

use reqwest::StatusCode;

use crate::{InitError, SendError, error_chain};

/// How much of an answer is read: a robot's answer is a few dozen bytes; a
/// proxy's HTML error page need not be read whole.
const ANSWER_LIMIT: usize = 64 * 1024;

/// How much of an answer goes into an error text.
const DETAIL_LIMIT: usize = 300;

/// An HTTP client whose every request (connect, send, answer) ends within
/// `timeout`; redirects are not followed (a POST turned into a GET loses
/// the message, and a redirect could carry the key to another host).
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, InitError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fm-gateway-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| InitError::Http(error_chain(&e)))
}

/// `text` with every non-empty secret replaced by `<redacted>`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if !s.is_empty() && out.contains(s) {
            out = out.replace(s, "<redacted>");
        }
    }
    out
}

/// A failure on the wire (refused, reset, timed out) is retryable; a request
/// that could not even be built is permanent. The text never has the URL.
pub(crate) fn transport_error(what: &str, err: reqwest::Error, secrets: &[&str]) -> SendError {
    let permanent = err.is_builder() || err.is_redirect();
    let message = redact(&format!("{what}: {}", error_chain(&err.without_url())), secrets);
    if permanent {
        SendError::permanent(message)
    } else {
        SendError::retryable(message)
    }
}

/// 408 (the receiver timed out), 429 (slow down) and every 5xx can succeed
/// later; any other status is an answer that will not change.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
}

/// The answer's status and (the start of) its body. A body cut off by the
/// network is a retryable failure: the request may not have been taken.
pub(crate) async fn answer(
    what: &str,
    mut response: reqwest::Response,
    secrets: &[&str],
) -> Result<(StatusCode, Vec<u8>), SendError> {
    let status = response.status();
    let mut bytes = Vec::new();
    while bytes.len() < ANSWER_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(transport_error(what, e, secrets)),
        }
    }
    Ok((status, bytes))
}

/// POSTs `body` as JSON to `url` and reads the answer ([`answer`]): what a
/// group robot (WeCom, DingTalk) is sent. Errors name `what`, secrets blanked.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: reqwest::Url,
    what: &str,
    body: &serde_json::Value,
    secrets: &[&str],
) -> Result<(StatusCode, Vec<u8>), SendError> {
    let body = serde_json::to_vec(body).map_err(|e| SendError::permanent(format!("encoding the message: {e}")))?;
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(what, e, secrets))?;
    answer(what, response, secrets).await
}

/// The start of a body for an error text, on one line, secrets blanked.
pub(crate) fn detail(bytes: &[u8], secrets: &[&str]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text
        .chars()
        .take(DETAIL_LIMIT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    redact(text.trim(), secrets)
}

/// A failed HTTP status as an error: retryable or not by [`retryable_status`].
pub(crate) fn status_error(what: &str, status: StatusCode, body: &[u8], secrets: &[&str]) -> SendError {
    let detail = detail(body, secrets);
    let message = if detail.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {detail}")
    };
    if retryable_status(status) {
        SendError::retryable(message)
    } else {
        SendError::permanent(message)
    }
}

/// A base URL must be absolute `http://` or `https://`, with no query: the
/// channel adds the path and its own query (with the secret) to it.
pub(crate) fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("`{url}` must start with http:// or https://"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("`{url}` must have no query (the channel adds its own)"));
    }
    Ok(())
}

/// `base` (no trailing `/`) joined with `path`.
pub(crate) fn join(base: &str, path: &str) -> Result<reqwest::Url, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    reqwest::Url::parse(&url).map_err(|e| format!("`{url}`: {e}"))
}

/// A phone number as it may be logged: `138****8000`. Numbers are personal
/// data; the first three and last four digits are enough to tell two
/// recipients apart in a record.
#[must_use]
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 8 {
        return "****".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// Whether `text` looks like a mobile number a robot or an SMS gateway can
/// take: digits, an optional leading `+`, 5 to 20 characters.
pub(crate) fn is_phone(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or(text);
    (5..=20).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_blanks_every_secret_and_ignores_empty_ones() {
        assert_eq!(
            redact("key=abc&x=abc def", &["abc", "", "def"]),
            "key=<redacted>&x=<redacted> <redacted>"
        );
    }

    #[test]
    fn base_urls() {
        assert!(check_base_url("https://qyapi.weixin.qq.com").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080/proxy/").is_ok());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("qyapi.weixin.qq.com").is_err());
        assert!(check_base_url("https://x/?key=1").is_err());
        assert_eq!(
            join("http://h/p/", "/robot/send").unwrap().as_str(),
            "http://h/p/robot/send"
        );
    }

    #[test]
    fn phones() {
        assert_eq!(mask_phone("13800138000"), "138****8000");
        assert_eq!(mask_phone("+8613800138000"), "+86****8000");
        assert_eq!(mask_phone("12345"), "****");
        assert!(is_phone("13800138000") && is_phone("+8613800138000"));
        assert!(!is_phone("138-0013-8000") && !is_phone("1234") && !is_phone("@all"));
    }

    #[test]
    fn detail_is_one_short_line() {
        let long = "x".repeat(1000);
        assert_eq!(detail(long.as_bytes(), &[]).len(), DETAIL_LIMIT);
        assert_eq!(detail(b" a\nb\r\n ", &[]), "a b");
    }
}
