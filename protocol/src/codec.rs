//! Encoding and decoding payloads: JSON (the reference) and a compact binary
//! form, told apart by the first byte.
//!
//! ```text
//! JSON:    { ... }                       first non-blank byte is `{`
//! binary:  0xF1 <kind id> <postcard>      0xF1 never starts UTF-8 text
//! ```
//!
//! Encoding writes into the caller's buffer, so a node needs no heap. Decoding
//! never panics on any input (property-tested and fuzzed) and always runs
//! [`Message::validate`], so a value that decodes is one the rules can trust.

use core::fmt::{self, Write as _};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::class::Kind;
use crate::limits::MAX_PAYLOAD;
use crate::message::{Invalid, Message, Sample};

/// First byte of a binary payload. 0xF1 can never begin UTF-8 text, so a JSON
/// payload (with or without leading blanks) is never mistaken for one.
pub const BINARY_MARKER: u8 = 0xF1;

/// The two payload encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON, UTF-8, one object: the reference encoding.
    Json,
    /// [`BINARY_MARKER`], the kind's id, then the message in `postcard`.
    Binary,
}

/// Longest error text kept from a JSON parser.
const JSON_ERROR_LEN: usize = 160;

/// A JSON parser's message, cut to a fixed size so errors need no heap.
pub type JsonErrorText = heapless::String<JSON_ERROR_LEN>;

/// Why a payload was rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("payload is empty")]
    Empty,
    /// Over [`MAX_PAYLOAD`].
    #[error("payload is {len} bytes, at most {max} are allowed")]
    TooLarge {
        /// The payload's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Neither `{` nor [`BINARY_MARKER`] first.
    #[error("payload starts with byte 0x{0:02x}: neither a JSON object nor the binary marker 0xf1")]
    UnknownFormat(u8),
    /// Bad JSON, or JSON that does not fit the message (wrong types, missing fields).
    #[error("bad JSON {kind} payload: {message}")]
    Json {
        /// The kind the topic named.
        kind: Kind,
        /// What the parser said (with line and column on the gateway).
        message: JsonErrorText,
    },
    /// Bad binary payload.
    #[error("bad binary {kind} payload: {error}")]
    Binary {
        /// The kind the topic named.
        kind: Kind,
        /// What postcard said.
        error: postcard::Error,
    },
    /// A binary payload of another kind than its topic says.
    #[error("binary payload is of kind id {found}, but the topic says `{expected}`")]
    WrongKind {
        /// The topic's kind.
        expected: Kind,
        /// The kind id in the payload.
        found: u8,
    },
    /// Well-formed, but a value breaks a rule.
    #[error("{kind} payload: {invalid}")]
    Invalid {
        /// The kind the topic named.
        kind: Kind,
        /// Which field and why.
        invalid: Invalid,
    },
}

impl DecodeError {
    /// A short, stable reason for metrics labels and rejected-input counters.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "oversize",
            DecodeError::UnknownFormat(_) => "unknown_format",
            DecodeError::Json { .. } => "bad_json",
            DecodeError::Binary { .. } | DecodeError::WrongKind { .. } => "bad_binary",
            DecodeError::Invalid { .. } => "invalid_value",
        }
    }
}

/// Why a message could not be encoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The message breaks a rule (e.g. a NaN value).
    #[error("cannot encode: {0}")]
    Invalid(#[from] Invalid),
    /// The buffer is too small.
    #[error("buffer of {0} bytes is too small")]
    BufferFull(usize),
    /// The serializer failed for another reason.
    #[error("encoding failed: {0}")]
    Other(&'static str),
}

/// Looks at the first byte (after JSON blanks) to tell the encoding.
///
/// # Errors
/// [`DecodeError::Empty`], [`DecodeError::TooLarge`] or [`DecodeError::UnknownFormat`].
pub fn detect(payload: &[u8]) -> Result<Format, DecodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    let first = payload
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .ok_or(DecodeError::Empty)?;
    match first {
        b'{' => Ok(Format::Json),
        BINARY_MARKER => Ok(Format::Binary),
        other => Err(DecodeError::UnknownFormat(other)),
    }
}

/// Decodes a payload received on a topic of `kind`, in either encoding, and
/// validates it. With the `std` feature JSON goes through `serde_json` (exact
/// error positions, any value type); without it, through `serde-json-core`.
///
/// # Errors
/// A [`DecodeError`] saying what is wrong; nothing panics, whatever the bytes.
pub fn decode(kind: Kind, payload: &[u8]) -> Result<Message, DecodeError> {
    match detect(payload)? {
        Format::Binary => decode_binary(kind, payload),
        #[cfg(feature = "std")]
        Format::Json => json_std::decode(kind, payload),
        #[cfg(not(feature = "std"))]
        Format::Json => json_core::decode(kind, payload),
    }
}

/// Decodes a binary payload.
///
/// # Errors
/// A [`DecodeError`].
pub fn decode_binary(kind: Kind, payload: &[u8]) -> Result<Message, DecodeError> {
    let body = match payload {
        [BINARY_MARKER, id, body @ ..] if *id == kind.id() => body,
        [BINARY_MARKER, id, ..] => {
            return Err(DecodeError::WrongKind {
                expected: kind,
                found: *id,
            });
        }
        [BINARY_MARKER] => {
            return Err(DecodeError::Binary {
                kind,
                error: postcard::Error::DeserializeUnexpectedEnd,
            });
        }
        [] => return Err(DecodeError::Empty),
        [other, ..] => return Err(DecodeError::UnknownFormat(*other)),
    };
    let err = |error| DecodeError::Binary { kind, error };
    let msg = match kind {
        Kind::Birth => Message::Birth(postcard_exact(body).map_err(err)?),
        Kind::Death => Message::Death(postcard_exact(body).map_err(err)?),
        Kind::Data => Message::Data(postcard_exact(body).map_err(err)?),
        Kind::Event => Message::Event(postcard_exact(body).map_err(err)?),
        Kind::Cmd => Message::Cmd(decode_binary_cmd(body).map_err(err)?),
        Kind::Ack => Message::Ack(postcard_exact(body).map_err(err)?),
    };
    msg.validate()
        .map_err(|invalid| DecodeError::Invalid { kind, invalid })?;
    Ok(msg)
}

/// A binary `cmd`, read in three layers, each a prefix of the next: the
/// head through `args` (a body that ends there is the layout from before
/// commands were signed: an unsigned command), then `ctr`, `exp` and `mac`
/// (a body that ends there is any command without `args.hold`), then
/// `args.hold` (written only when present). So every older layout still
/// decodes, and nothing else is guessed at: a body that ends inside a layer,
/// or goes on after `hold`, keeps its error.
fn decode_binary_cmd(body: &[u8]) -> Result<crate::message::Cmd, postcard::Error> {
    type Auth = (Option<u64>, Option<crate::time::Timestamp>, Option<crate::cmdauth::Mac>);
    let (head, rest) = postcard::take_from_bytes::<crate::message::UnsignedCmd>(body)?;
    let mut cmd = crate::message::Cmd::from(head);
    if rest.is_empty() {
        return Ok(cmd);
    }
    let ((ctr, exp, mac), rest) = postcard::take_from_bytes::<Auth>(rest)?;
    (cmd.ctr, cmd.exp, cmd.mac) = (ctr, exp, mac);
    if !rest.is_empty() {
        cmd.args.hold = postcard_exact::<Option<bool>>(rest)?;
    }
    Ok(cmd)
}

/// Decodes postcard, rejecting trailing bytes (a truncated or padded frame is
/// a sign of corruption, not something to guess around).
fn postcard_exact<T: DeserializeOwned>(body: &[u8]) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes(body)? {
        (v, []) => Ok(v),
        (_, _) => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// Runs a per-kind JSON parser, wraps its error text, and validates.
///
/// The message is built in place in its `Message` variant and validated
/// there: a `Data` is 7.9 KiB (room for every limit, no heap), and every move
/// of it costs more than parsing a typical sample.
macro_rules! decode_kind {
    ($kind:expr, $parse:expr) => {{
        let kind = $kind;
        let json = |e| DecodeError::Json { kind, message: cut(&e) };
        let msg = match kind {
            Kind::Birth => Message::Birth($parse.map_err(json)?),
            Kind::Death => Message::Death($parse.map_err(json)?),
            Kind::Data => Message::Data($parse.map_err(json)?),
            Kind::Event => Message::Event($parse.map_err(json)?),
            Kind::Cmd => Message::Cmd($parse.map_err(json)?),
            Kind::Ack => Message::Ack($parse.map_err(json)?),
        };
        msg.validate()
            .map_err(|invalid| DecodeError::Invalid { kind, invalid })?;
        Ok(msg)
    }};
}

/// JSON through `serde-json-core`: no heap, for nodes.
///
/// It cannot read values whose type the schema does not fix (an unknown
/// metric's value, an event's `detail`): those need [`json_std`]. A node only
/// decodes `cmd`, whose fields are all typed, so this is no limit there.
pub mod json_core {
    use super::{DecodeError, Kind, Message, cut};
    use serde::de::DeserializeOwned;

    /// Unescaping room for the longest string field.
    const SCRATCH: usize = 128;

    /// Decodes a JSON payload of `kind` and validates it.
    ///
    /// # Errors
    /// A [`DecodeError`].
    pub fn decode(kind: Kind, payload: &[u8]) -> Result<Message, DecodeError> {
        decode_kind!(kind, parse(payload))
    }

    fn parse<T: DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json_core::de::Error> {
        let mut scratch = [0u8; SCRATCH];
        let (v, used) = serde_json_core::from_slice_escaped(payload, &mut scratch)?;
        let rest = payload.get(used..).unwrap_or_default();
        if rest.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
            Ok(v)
        } else {
            Err(serde_json_core::de::Error::TrailingCharacters)
        }
    }
}

/// JSON through `serde_json`: the gateway's decoder, with line and column in
/// every error and support for values of any type.
#[cfg(feature = "std")]
pub mod json_std {
    use super::{DecodeError, Kind, Message, cut};

    /// Decodes a JSON payload of `kind` and validates it.
    ///
    /// # Errors
    /// A [`DecodeError`].
    pub fn decode(kind: Kind, payload: &[u8]) -> Result<Message, DecodeError> {
        decode_kind!(kind, serde_json::from_slice(payload))
    }
}

/// Keeps as much of an error message as fits, on a character boundary.
fn cut(e: &dyn fmt::Display) -> JsonErrorText {
    struct Cut(JsonErrorText);
    impl fmt::Write for Cut {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for ch in s.chars() {
                if self.0.push(ch).is_err() {
                    return Err(fmt::Error);
                }
            }
            Ok(())
        }
    }
    let mut out = Cut(JsonErrorText::new());
    // A full buffer ends the write early; what fits is kept.
    let _ = write!(out, "{e}");
    out.0
}

/// Encodes a message into `buf`, returning the number of bytes written.
/// Validates first, so a node can never publish a payload the gateway rejects.
///
/// # Errors
/// [`EncodeError`] if the message is invalid or `buf` too small.
pub fn encode(msg: &Message, format: Format, buf: &mut [u8]) -> Result<usize, EncodeError> {
    msg.validate()?;
    match format {
        Format::Json => match msg {
            Message::Birth(m) => json_into(m, buf),
            Message::Death(m) => json_into(m, buf),
            Message::Data(m) => json_into(m, buf),
            Message::Event(m) => json_into(m, buf),
            Message::Cmd(m) => json_into(m, buf),
            Message::Ack(m) => json_into(m, buf),
        },
        Format::Binary => {
            let [marker, kind, body @ ..] = buf else {
                return Err(EncodeError::BufferFull(buf.len()));
            };
            *marker = BINARY_MARKER;
            *kind = msg.kind().id();
            let n = match msg {
                Message::Birth(m) => postcard_into(m, body),
                Message::Death(m) => postcard_into(m, body),
                Message::Data(m) => postcard_into(m, body),
                Message::Event(m) => postcard_into(m, body),
                Message::Cmd(m) => postcard_into(m, body),
                Message::Ack(m) => postcard_into(m, body),
            }?;
            Ok(n + 2)
        }
    }
}

/// Encodes borrowed telemetry as a `data` payload: the same bytes as a
/// [`Data`] with the same readings, without the node holding one.
///
/// # Errors
/// [`EncodeError`] if the sample is invalid or `buf` too small.
pub fn encode_sample(sample: &Sample<'_>, format: Format, buf: &mut [u8]) -> Result<usize, EncodeError> {
    sample.validate()?;
    match format {
        Format::Json => json_into(sample, buf),
        Format::Binary => {
            let [marker, kind, body @ ..] = buf else {
                return Err(EncodeError::BufferFull(buf.len()));
            };
            *marker = BINARY_MARKER;
            *kind = Kind::Data.id();
            Ok(postcard_into(sample, body)? + 2)
        }
    }
}

/// Copies an encoded payload that was written with `hist: false` into `out`,
/// marked `hist: true`: how a node replays a buffered message without decoding
/// it. `death` has no `hist` and is copied unchanged.
///
/// JSON gets `,"hist":true` before its closing brace (the encoder leaves a false
/// `hist` out, so the key is never repeated); binary has its `hist` byte set,
/// found after the version, `seq` and `ts` varints.
///
/// # Errors
/// [`EncodeError::BufferFull`] if `out` is too small, [`EncodeError::Other`] if
/// `payload` is not one of this crate's encodings.
pub fn mark_hist(kind: Kind, payload: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    let full = EncodeError::BufferFull(out.len());
    if kind == Kind::Death {
        out.get_mut(..payload.len()).ok_or(full)?.copy_from_slice(payload);
        return Ok(payload.len());
    }
    match detect(payload).map_err(|_| EncodeError::Other("not an encoded payload"))? {
        Format::Json => {
            const HIST: &[u8] = b",\"hist\":true}";
            let end = payload
                .iter()
                .rposition(|&b| b == b'}')
                .ok_or(EncodeError::Other("JSON payload without a closing brace"))?;
            let body = &payload[..end];
            // `{}` has no field to follow: drop the comma.
            let hist = if body.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
                &HIST[1..]
            } else {
                HIST
            };
            let n = body.len() + hist.len();
            let dst = out.get_mut(..n).ok_or(full)?;
            dst[..body.len()].copy_from_slice(body);
            dst[body.len()..].copy_from_slice(hist);
            Ok(n)
        }
        Format::Binary => {
            // marker, kind, v (one byte), seq (varint u32), ts (zigzag varint i64), hist.
            let mut at = 3;
            for max_len in [5, 10] {
                let len = payload
                    .get(at..)
                    .and_then(|rest| rest.iter().take(max_len).position(|b| b & 0x80 == 0))
                    .ok_or(EncodeError::Other("truncated binary header"))?;
                at += len + 1;
            }
            if payload.get(at).is_none_or(|&b| b > 1) {
                return Err(EncodeError::Other("binary payload has no hist flag where expected"));
            }
            let dst = out.get_mut(..payload.len()).ok_or(full)?;
            dst.copy_from_slice(payload);
            dst[at] = 1;
            Ok(payload.len())
        }
    }
}

fn json_into<T: Serialize>(v: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    serde_json_core::to_slice(v, buf).map_err(|e| match e {
        serde_json_core::ser::Error::BufferFull => EncodeError::BufferFull(buf.len()),
        _ => EncodeError::Other("JSON serializer refused a value"),
    })
}

fn postcard_into<T: Serialize>(v: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let len = buf.len();
    postcard::to_slice(v, buf).map(|out| out.len()).map_err(|e| match e {
        postcard::Error::SerializeBufferFull => EncodeError::BufferFull(len + 2),
        _ => EncodeError::Other("binary serializer refused a value"),
    })
}

/// Encodes into a new vector sized to fit (gateway side).
///
/// # Errors
/// [`EncodeError::Invalid`] for an invalid message.
#[cfg(feature = "alloc")]
pub fn encode_to_vec(msg: &Message, format: Format) -> Result<alloc::vec::Vec<u8>, EncodeError> {
    let mut buf = alloc::vec![0u8; 1024];
    loop {
        match encode(msg, format, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(EncodeError::BufferFull(_)) if buf.len() < MAX_PAYLOAD => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}
