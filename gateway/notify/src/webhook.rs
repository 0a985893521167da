//! The webhook channel: an HTTP POST of the JSON message, signed with
//! HMAC-SHA256 when the target has a secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;

use crate::{Channel, Contact, InitError, Message, SendError, SendFuture, error_chain};

type HmacSha256 = Hmac<Sha256>;

/// How much of an error response's body goes into the error message: enough
/// for "invalid token", not a whole HTML error page in every log line.
const ERROR_BODY_LIMIT: usize = 300;

/// POSTs `{"id","kind","site","subject","text","body"}` to the contact's URL.
///
/// Headers: `Content-Type: application/json`, `X-FM-Id` (the de-duplication
/// key, the same on every retry), `X-FM-Timestamp` (unix seconds of this
/// attempt) and, when the target has a secret, `X-FM-Signature:
/// sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` (see the crate
/// docs for the receiver's check). Any 2xx is delivered; 408, 429 and 5xx,
/// timeouts and connection failures are retryable; redirects are not
/// followed (a POST turned into a GET would lose the message) and, like every
/// other 4xx, are permanent: a configuration problem retrying cannot fix.
#[derive(Clone, Debug)]
pub struct Webhook {
    client: reqwest::Client,
}

impl Webhook {
    /// A webhook channel whose every attempt (connect, send, response) ends
    /// within `timeout`, so a hung receiver holds a concurrency permit no
    /// longer than that.
    ///
    /// # Errors
    /// If the HTTP client (its TLS backend) cannot be initialised.
    pub fn new(timeout: Duration) -> Result<Webhook, InitError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fm-gateway-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| InitError::Http(error_chain(&e)))?;
        Ok(Webhook { client })
    }

    async fn post(&self, to: &Contact, msg: &Message) -> Result<(), SendError> {
        let Some(target) = &to.webhook else {
            return Err(SendError::permanent(format!("contact {} has no webhook", to.id)));
        };
        let body = serde_json::to_vec(msg).map_err(|e| SendError::permanent(format!("encoding the message: {e}")))?;
        let timestamp = unix_now();
        let mut request = self
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-FM-Id", &msg.id)
            .header("X-FM-Timestamp", timestamp.to_string());
        if let Some(secret) = &target.secret {
            request = request.header("X-FM-Signature", sign_webhook(secret, timestamp, &body));
        }
        let response = request.body(body).send().await.map_err(|e| classify(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = error_body(response).await;
        let message = format!("HTTP {status} from {}{detail}", target.url);
        if retryable_status(status) {
            Err(SendError::retryable(message))
        } else {
            Err(SendError::permanent(message))
        }
    }
}

impl Channel for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn reaches(&self, to: &Contact) -> bool {
        to.webhook.is_some()
    }

    fn send<'a>(&'a self, to: &'a Contact, msg: &'a Message) -> SendFuture<'a> {
        Box::pin(self.post(to, msg))
    }
}

/// 408 (the receiver timed out), 429 (slow down) and every 5xx can succeed
/// later; any other status is an answer that will not change.
fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
}

/// A request that could not even be built (bad URL, invalid header value) is
/// permanent; everything on the wire (refused, reset, timed out) is not.
fn classify(err: &reqwest::Error) -> SendError {
    let message = error_chain(err);
    if err.is_builder() || err.is_redirect() {
        SendError::permanent(message)
    } else {
        SendError::retryable(message)
    }
}

/// The start of an error response's body, for the error message.
async fn error_body(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let text: String = text.chars().take(ERROR_BODY_LIMIT).collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long ones are hashed first).
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC-SHA256 takes keys of any length")
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-FM-Signature` value for a body sent at `timestamp` (unix seconds):
/// `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with
/// `secret`. Public so a receiver written in Rust (and the tests) computes it
/// exactly as the sender does.
pub fn sign_webhook(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body).finalize().into_bytes();
    format!("sha256={}", hex::encode(tag))
}

/// Whether `signature` (an `X-FM-Signature` header) is the sender's MAC of
/// `body` at `timestamp` (the `X-FM-Timestamp` header, as received). The
/// comparison runs in constant time so its timing reveals nothing about the
/// expected value. It does not judge freshness: the receiver must also
/// reject a timestamp too far from its own clock (replays) and an `X-FM-Id`
/// it has already processed (retries).
pub fn verify_webhook(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(tag) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(tag) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_tamper() {
        let sig = sign_webhook("s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify_webhook("s3cret", "1700000000", b"{\"a\":1}", &sig));
        assert!(!verify_webhook("s3cret", "1700000000", b"{\"a\":2}", &sig));
        assert!(!verify_webhook("s3cret", "1700000001", b"{\"a\":1}", &sig));
        assert!(!verify_webhook("other", "1700000000", b"{\"a\":1}", &sig));
        assert!(!verify_webhook("s3cret", "1700000000", b"{\"a\":1}", &sig[7..]));
    }

    /// The vector computed by Python's `hmac` module, as the operations
    /// guide's receiver does it: both sides agree byte for byte.
    #[test]
    fn signature_matches_python_hmac() {
        assert_eq!(
            sign_webhook("s3cret-密钥", 1_700_000_000, "{\"a\":\"电梯\"}".as_bytes()),
            "sha256=979ab7924c7f2826b18d3df7cbdef266f9e07586f965157c83e8d27fad9f06d7"
        );
    }

    #[test]
    fn status_classes() {
        for (code, retry) in [
            (500, true),
            (503, true),
            (408, true),
            (429, true),
            (400, false),
            (404, false),
            (301, false),
        ] {
            assert_eq!(retryable_status(StatusCode::from_u16(code).unwrap()), retry, "{code}");
        }
    }
}
