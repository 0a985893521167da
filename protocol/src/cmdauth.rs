//! Signed commands: who may make a node act.
//!
//! A `cmd` cuts power to a charging port, clears a latched cut-off, starts a
//! fire pump or moves a threshold. Whoever can publish on a node's `cmd` topic
//! (a broker misconfigured, a stolen gateway account, a man in the middle)
//! could do all of that, so every command carries a MAC the node checks with
//! a key only it and the gateway hold, and a node carries out nothing that
//! does not verify.
//!
//! # The MAC (version 1)
//!
//! HMAC-SHA256 with the device's 32-byte command key ([`CommandKey`], handed
//! out at provisioning as `cmd_key`, 64 hex digits) over a canonical byte
//! string, never over the JSON: JSON may be re-spaced, re-ordered or
//! re-escaped on the way and has two decoders here (`serde_json` on the
//! gateway, `serde-json-core` on the node), so what is signed must not
//! depend on how the payload was written. The string ([`signed_bytes`]):
//!
//! ```text
//! "fm-cmd-v1"                        9 bytes, ASCII: the domain (Modbus tags use "fm-modbus-v1")
//! text(site) text(class) text(device)   the topic's segments: the command's addressee
//! text(id) text(op)                  op as on the wire ("cut_off"; an unknown op as its text)
//! opt(port)                          0x00, or 0x01 and the port as one byte
//! opt(name)                          0x00, or 0x01 and text(name)
//! opt(value)                         0x00, or 0x01 and the f64's IEEE 754 bits, 8 bytes big-endian
//! hold                               nothing when absent, or 0x01 and 0x00 (release) / 0x01 (hold)
//! ctr                                u64, 8 bytes big-endian
//! exp                                i64 (ms since the Unix epoch), 8 bytes big-endian
//! ```
//!
//! where `text(s)` is one length byte and the UTF-8 bytes (every text here
//! is at most 48 bytes). Length prefixes make the string unambiguous: no two
//! commands share one (`hold`, added with `hold_doors`, is told apart by the
//! length: `ctr` and `exp` are always the last 16 bytes, and leaving it out
//! when absent keeps the MAC of every other command unchanged). What is not covered is what does not change what the
//! node does: `v`, `seq`, `ts`, `hist`, `bdseq`, and `args` fields the node
//! does not know (it ignores them).
//!
//! `value` is signed as the number the JSON carries decodes to: both JSON
//! decoders here round correctly, so `60`, `60.0` and `6e1` are one value
//! and one MAC (property-tested in `tests/protocol/cmdauth.rs`).
//!
//! # Freshness
//!
//! `ctr` is the gateway's counter for the device: each command it signs has a
//! larger one than the last (it starts at 1). A node accepts a command only
//! if its `ctr` is above the last one it accepted, so a recorded command
//! cannot be played again. `exp` bounds a command's life: a node whose clock
//! is set refuses one whose `exp` is before its clock. [`Guard`] keeps the
//! counter and applies both rules; a refused command changes nothing, the
//! counter included (so a forged `ctr` of `u64::MAX` cannot lock the node).
//!
//! # Modbus
//!
//! A Modbus master cannot send a counter and a MAC with a coil write, so the
//! node's slave serves a challenge, and a write carries a truncated tag over
//! the challenge, the address and the values ([`modbus`]). Same key, another
//! domain string: an MQTT MAC is never a valid Modbus tag.

use core::fmt;

use hmac::{Hmac, Mac as _};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use sha2_nostd::Sha256;

use crate::class::DeviceClass;
use crate::message::Cmd;
use crate::time::Timestamp;
use crate::topic::Topic;

type HmacSha256 = Hmac<Sha256>;

/// Bytes in a command key.
pub const KEY_LEN: usize = 32;
/// Bytes in a command MAC (a full HMAC-SHA256).
pub const MAC_LEN: usize = 32;
/// The domain string that starts every signed command.
pub const DOMAIN: &[u8] = b"fm-cmd-v1";
/// Longest [`signed_bytes`]: every text at its limit.
pub const MAX_SIGNED_LEN: usize = 256;

/// A device's command key: 32 random bytes the gateway makes at provisioning
/// and the node keeps in its configuration.
///
/// Never printed (`Debug` says `<redacted>`), compared in constant time.
#[derive(Clone)]
pub struct CommandKey([u8; KEY_LEN]);

/// Why a key or MAC text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Not exactly 64 characters.
    #[error("must be 64 hex digits")]
    Length,
    /// A character outside `0-9a-fA-F`.
    #[error("must be hex digits only")]
    Digit,
}

const fn nibble(c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError::Digit),
    }
}

/// 64 hex digits to 32 bytes; `const` so a key compiled into a board's image
/// is checked by the build.
const fn hex32(s: &str) -> Result<[u8; 32], HexError> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return Err(HexError::Length);
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let hi = match nibble(b[2 * i]) {
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        let lo = match nibble(b[2 * i + 1]) {
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        out[i] = (hi << 4) | lo;
        i += 1;
    }
    Ok(out)
}

fn to_hex(bytes: &[u8; 32]) -> heapless::String<64> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = heapless::String::new();
    for b in bytes {
        // 64 characters into a 64-character string: cannot fail.
        let _ = s.push(char::from(DIGITS[usize::from(b >> 4)]));
        let _ = s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

/// Equal in time independent of where the first difference is.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl CommandKey {
    /// A key from its bytes (the gateway's store).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        CommandKey(bytes)
    }

    /// A key from its 64 hex digits (`cmd_key` as provisioning prints it).
    ///
    /// # Errors
    /// [`HexError`] if it is not 64 hex digits.
    pub const fn from_hex(hex: &str) -> Result<Self, HexError> {
        match hex32(hex) {
            Ok(b) => Ok(CommandKey(b)),
            Err(e) => Err(e),
        }
    }

    fn hmac(&self) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts 32-byte keys"),
        }
    }
}

impl fmt::Debug for CommandKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommandKey(<redacted>)")
    }
}

impl PartialEq for CommandKey {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for CommandKey {}

/// A command's MAC: HMAC-SHA256, 32 bytes. JSON carries it as 64 lowercase
/// hex digits (either case is read), the binary encoding as 32 bytes.
///
/// Not secret. Do not compare two with `==` to authenticate a command: that
/// is [`verify`]'s job, in constant time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; MAC_LEN]);

impl Mac {
    /// The MAC as 64 lowercase hex digits.
    #[must_use]
    pub fn to_hex(&self) -> heapless::String<64> {
        to_hex(&self.0)
    }

    /// A MAC from 64 hex digits.
    ///
    /// # Errors
    /// [`HexError`].
    pub fn from_hex(hex: &str) -> Result<Self, HexError> {
        hex32(hex).map(Mac)
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({})", self.to_hex())
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hex;
        impl Visitor<'_> for Hex {
            type Value = Mac;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a MAC of 64 hex digits")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mac, E> {
                Mac::from_hex(v).map_err(|e| E::custom(format_args!("`mac` {e}")))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(Hex)
        } else {
            <[u8; MAC_LEN]>::deserialize(d).map(Mac)
        }
    }
}

/// Who a command is for: the `site`, `class` and `device` of its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient<'a> {
    /// The compound.
    pub site: &'a str,
    /// The device's class.
    pub class: DeviceClass,
    /// The device id.
    pub device: &'a str,
}

impl<'a> Recipient<'a> {
    /// The addressee of a topic (its kind is ignored).
    #[must_use]
    pub fn of(topic: &'a Topic) -> Self {
        Recipient {
            site: topic.site.as_str(),
            class: topic.class,
            device: topic.device.as_str(),
        }
    }
}

/// Why a node refused a command. [`Refusal::as_str`] is the `error` of its ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The node has no command key configured: it carries out nothing.
    NoKey,
    /// `ctr`, `exp` or `mac` is missing.
    Unsigned,
    /// The MAC does not verify: another key, or a field changed on the way.
    BadMac,
    /// `ctr` is not above the last command the node accepted.
    Replayed,
    /// `exp` is before the node's clock.
    Expired,
}

impl Refusal {
    /// The ack's `error` text.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::NoKey => "no_key",
            Refusal::Unsigned => "unsigned",
            Refusal::BadMac => "bad_mac",
            Refusal::Replayed => "replayed",
            Refusal::Expired => "expired",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Feeds the canonical string of a command to `out`, piece by piece, so the
/// node hashes it without a buffer.
fn feed(to: &Recipient<'_>, cmd: &Cmd, ctr: u64, exp: Timestamp, out: &mut impl FnMut(&[u8])) {
    for s in [to.site, to.class.as_str(), to.device, cmd.id.as_str(), cmd.op.as_str()] {
        text(s, out);
    }
    match cmd.args.port {
        Some(p) => out(&[1, p]),
        None => out(&[0]),
    }
    match &cmd.args.name {
        Some(n) => {
            out(&[1]);
            text(n.as_str(), out);
        }
        None => out(&[0]),
    }
    match cmd.args.value {
        Some(v) => {
            out(&[1]);
            out(&v.to_bits().to_be_bytes());
        }
        None => out(&[0]),
    }
    // Nothing when absent, so every command without it signs as before.
    if let Some(h) = cmd.args.hold {
        out(&[1, u8::from(h)]);
    }
    out(&ctr.to_be_bytes());
    out(&exp.as_millis().to_be_bytes());
}

/// `text(s)`: one length byte and the UTF-8 bytes. Every text here is
/// validated to at most 48 bytes; the cap only keeps the length byte honest
/// if a caller passes something longer.
fn text(s: &str, out: &mut impl FnMut(&[u8])) {
    let b = s.as_bytes();
    let b = &b[..b.len().min(255)];
    #[allow(clippy::cast_possible_truncation)]
    out(&[b.len() as u8]);
    out(b);
}

/// The canonical string a command's MAC covers (see the module doc), for
/// tests and for implementations in other languages to compare with.
#[must_use]
pub fn signed_bytes(to: &Recipient<'_>, cmd: &Cmd, ctr: u64, exp: Timestamp) -> heapless::Vec<u8, MAX_SIGNED_LEN> {
    let mut v = heapless::Vec::new();
    let _ = v.extend_from_slice(DOMAIN);
    feed(to, cmd, ctr, exp, &mut |b| {
        // MAX_SIGNED_LEN holds the longest possible string.
        let _ = v.extend_from_slice(b);
    });
    v
}

fn hmac_of(key: &CommandKey, to: &Recipient<'_>, cmd: &Cmd, ctr: u64, exp: Timestamp) -> HmacSha256 {
    let mut m = key.hmac();
    m.update(DOMAIN);
    feed(to, cmd, ctr, exp, &mut |b| m.update(b));
    m
}

/// The MAC of `cmd` for `to` with this counter and expiry.
#[must_use]
pub fn mac(key: &CommandKey, to: &Recipient<'_>, cmd: &Cmd, ctr: u64, exp: Timestamp) -> Mac {
    Mac(hmac_of(key, to, cmd, ctr, exp).finalize().into_bytes().into())
}

/// Signs `cmd` for `to`: sets its `ctr`, `exp` and `mac`. The gateway calls
/// this last, after `id`, `op` and `args` are final.
pub fn sign(key: &CommandKey, to: &Recipient<'_>, cmd: &mut Cmd, ctr: u64, exp: Timestamp) {
    cmd.mac = Some(mac(key, to, cmd, ctr, exp));
    cmd.ctr = Some(ctr);
    cmd.exp = Some(exp);
}

/// Checks `cmd`'s MAC for `to`, in constant time. Says nothing about
/// freshness: that is [`Guard::check`].
///
/// # Errors
/// [`Refusal::Unsigned`] if `ctr`, `exp` or `mac` is missing,
/// [`Refusal::BadMac`] if the MAC does not verify.
pub fn verify(key: &CommandKey, to: &Recipient<'_>, cmd: &Cmd) -> Result<(), Refusal> {
    let (Some(ctr), Some(exp), Some(mac)) = (cmd.ctr, cmd.exp, cmd.mac) else {
        return Err(Refusal::Unsigned);
    };
    hmac_of(key, to, cmd, ctr, exp)
        .verify_slice(&mac.0)
        .map_err(|_| Refusal::BadMac)
}

/// A node's side of signed commands: the last counter it accepted.
///
/// Kept in RAM. A board with battery-backed memory may keep it there too
/// ([`Guard::last`], [`Guard::restore`]); without it, the counter starts from
/// 0 at every boot and only `exp` bounds how long a command recorded before
/// the reboot can be played again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    last: u64,
}

impl Guard {
    /// A guard that has accepted nothing (counter 0: the first command needs
    /// `ctr` ≥ 1).
    #[must_use]
    pub const fn new() -> Self {
        Guard { last: 0 }
    }

    /// The counter of the last command accepted (0: none).
    #[must_use]
    pub const fn last(&self) -> u64 {
        self.last
    }

    /// Restores the counter from memory that survived a reset. It only
    /// moves forward.
    pub fn restore(&mut self, last: u64) {
        self.last = self.last.max(last);
    }

    /// Decides on a command for `to`: no key, unsigned, bad MAC, replayed,
    /// expired (checked in that order), or accepted, in which case its
    /// counter becomes the last one. `now` is the node's wall clock, `None`
    /// while it is not set (then `exp` cannot be judged and only the counter
    /// protects).
    ///
    /// # Errors
    /// The [`Refusal`]; nothing changes.
    pub fn check(
        &mut self,
        key: Option<&CommandKey>,
        to: &Recipient<'_>,
        cmd: &Cmd,
        now: Option<Timestamp>,
    ) -> Result<(), Refusal> {
        let key = key.ok_or(Refusal::NoKey)?;
        verify(key, to, cmd)?;
        let (Some(ctr), Some(exp)) = (cmd.ctr, cmd.exp) else {
            return Err(Refusal::Unsigned);
        };
        if ctr <= self.last {
            return Err(Refusal::Replayed);
        }
        if now.is_some_and(|now| exp < now) {
            return Err(Refusal::Expired);
        }
        self.last = ctr;
        Ok(())
    }
}

/// Signed Modbus writes: the registers our nodes' slaves serve for them, and
/// the tag a master computes.
///
/// ```text
/// holding registers (FC03 read; same on every class, outside the class maps)
///   1000–1003  challenge, u64, high word first       read
///   1004–1005  refused writes, u32, high word first  read
///   1006       write mode: 0 read-only, 1 signed     read
///   1010–      signed write, FC16 only:
///              [first coil, n, value × n, tag × 4]   write
/// ```
///
/// A master reads the challenge, then writes `n` command coils from `first
/// coil` (values 0 or 1, as the class map's coils) in one FC16 at 1010,
/// followed by the tag: the first 8 bytes of HMAC-SHA256(key, `"fm-modbus-v1"`
/// ‖ challenge (8 bytes big-endian) ‖ first coil (2) ‖ n (2) ‖ each value
/// (2)), as 4 registers, high word first. After a write whose tag verifies,
/// the challenge changes, so a recorded write is never accepted again.
pub mod modbus {
    use super::{CommandKey, HmacSha256};
    use hmac::Mac as _;

    /// The domain string of a Modbus tag.
    pub const DOMAIN: &[u8] = b"fm-modbus-v1";
    /// First of the 4 challenge registers.
    pub const CHALLENGE: u16 = 1000;
    /// First of the 2 registers counting refused writes.
    pub const REFUSED_WRITES: u16 = 1004;
    /// The write mode register: 0 read-only, 1 signed writes.
    pub const WRITE_MODE: u16 = 1006;
    /// Where a signed write is written (FC16).
    pub const SIGNED_WRITE: u16 = 1010;
    /// Registers in the readable part of the block (1000–1006).
    pub const READABLE: u16 = 7;
    /// Registers of a tag.
    pub const TAG_WORDS: usize = 4;
    /// Most coils in one signed write: FC16 writes at most 123 registers,
    /// 6 of which are the first coil, `n` and the tag.
    pub const MAX_COILS: usize = 123 - 2 - TAG_WORDS;

    fn hmac(key: &CommandKey, challenge: u64, first: u16, values: &[u16]) -> HmacSha256 {
        let mut m = key.hmac();
        m.update(DOMAIN);
        m.update(&challenge.to_be_bytes());
        m.update(&first.to_be_bytes());
        // The caller bounds `values` by a Modbus frame (≤ 123).
        m.update(&u16::try_from(values.len()).unwrap_or(u16::MAX).to_be_bytes());
        for v in values {
            m.update(&v.to_be_bytes());
        }
        m
    }

    /// The tag of a signed write of `values` to the coils from `first`.
    #[must_use]
    pub fn tag(key: &CommandKey, challenge: u64, first: u16, values: &[u16]) -> [u16; TAG_WORDS] {
        let full = hmac(key, challenge, first, values).finalize().into_bytes();
        let mut out = [0u16; TAG_WORDS];
        for (o, pair) in out.iter_mut().zip(full.chunks_exact(2)) {
            *o = u16::from_be_bytes([pair[0], pair[1]]);
        }
        out
    }

    /// Whether `tag` is right, in constant time.
    #[must_use]
    pub fn verify(key: &CommandKey, challenge: u64, first: u16, values: &[u16], tag: &[u16; TAG_WORDS]) -> bool {
        let mut bytes = [0u8; 2 * TAG_WORDS];
        for (b, w) in bytes.chunks_exact_mut(2).zip(tag) {
            b.copy_from_slice(&w.to_be_bytes());
        }
        hmac(key, challenge, first, values)
            .verify_truncated_left(&bytes)
            .is_ok()
    }

    /// The registers of a whole signed write, for a master: what to write
    /// with FC16 at [`SIGNED_WRITE`]. `None` for more than [`MAX_COILS`]
    /// values or none.
    #[must_use]
    pub fn request(key: &CommandKey, challenge: u64, first: u16, values: &[u16]) -> Option<heapless::Vec<u16, 123>> {
        if values.is_empty() || values.len() > MAX_COILS {
            return None;
        }
        let mut out = heapless::Vec::new();
        out.push(first).ok()?;
        out.push(u16::try_from(values.len()).ok()?).ok()?;
        out.extend_from_slice(values).ok()?;
        out.extend_from_slice(&tag(key, challenge, first, values)).ok()?;
        Some(out)
    }

    /// A challenge as its 4 registers, high word first.
    #[must_use]
    pub const fn challenge_words(challenge: u64) -> [u16; 4] {
        #[allow(clippy::cast_possible_truncation)]
        [
            (challenge >> 48) as u16,
            (challenge >> 32) as u16,
            (challenge >> 16) as u16,
            challenge as u16,
        ]
    }

    /// The challenge from its 4 registers, high word first.
    #[must_use]
    #[allow(clippy::cast_lossless)] // `u64::from` is not `const`
    pub const fn challenge_of(words: [u16; 4]) -> u64 {
        ((words[0] as u64) << 48) | ((words[1] as u64) << 32) | ((words[2] as u64) << 16) | words[3] as u64
    }
}
