//! From an MQTT publish to a judged message: topic and payload decoded with
//! `protocol`, or a rejection with a stable reason. Pure: no I/O, so every
//! kind of bad input is tested without a broker.

use protocol::{DecodeError, Message, Topic};

/// A message that passed the topic and payload checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    /// Where it came from.
    pub topic: Topic,
    /// What it says.
    pub message: Message,
    /// Gateway clock when received, ms since the Unix epoch.
    pub received_ms: i64,
}

/// A publish that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Stable reason, a label of `fm_ingest_rejected_total`.
    pub reason: &'static str,
    /// The topic as received.
    pub topic: String,
    /// What the decoder said.
    pub detail: String,
}

/// The reasons a publish can be refused, for metrics labels.
pub const REASONS: &[&str] = &[
    "bad_topic",
    "downlink",
    "empty",
    "oversize",
    "unknown_format",
    "bad_json",
    "bad_binary",
    "invalid_value",
];

/// Decodes one publish.
///
/// # Errors
/// A [`Rejected`] with the reason and the decoder's message.
pub fn ingest(topic: &str, payload: &[u8], received_ms: i64) -> Result<Incoming, Rejected> {
    let reject = |reason, detail: String| Rejected {
        reason,
        topic: topic.to_owned(),
        detail,
    };
    let parsed = Topic::parse(topic).map_err(|e| reject("bad_topic", e.to_string()))?;
    if parsed.kind.is_downlink() {
        return Err(reject(
            "downlink",
            "the gateway sends commands; it does not ingest them".into(),
        ));
    }
    let message = protocol::decode(parsed.kind, payload).map_err(|e: DecodeError| reject(e.reason(), e.to_string()))?;
    Ok(Incoming {
        topic: parsed,
        message,
        received_ms,
    })
}
