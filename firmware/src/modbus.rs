//! The node's Modbus slave: serves a [`RegisterImage`] through the class's
//! built-in register map (`protocol::modbus::map_for`) over Modbus RTU (CRC-16)
//! and Modbus TCP (MBAP header). Heap-free: one request slice in, one
//! caller-owned [`MAX_ADU_LEN`]-byte buffer out, nothing kept between requests
//! but four counters.
//!
//! ```text
//! UART / TCP socket ──frames──▶ Slave::handle ──map_for(class).find──▶ RegisterImage
//!                    ◀─response──                ◀─point() / command()──
//! ```
//!
//! # Function codes
//!
//! 01 read coils, 02 read discrete inputs, 03 read holding registers (the
//! signed-write block only), 04 read input registers, and 16 write multiple
//! registers (signed writes only, see below); 05, 06 and 15 are always
//! refused. Anything else is answered with exception 01 (illegal function). The checks run in the order of the Modbus
//! application protocol's state diagrams: function (01), then the request's
//! structure and quantity (03: quantity 1–2000 bits or 1–125 words to read,
//! 1–1968 coils or 1–123 registers to write, a byte count that matches the
//! quantity, a PDU of the right length, an FC05 value other than `FF00`/`0000`),
//! then addresses (02), then processing (04).
//!
//! # Reads
//!
//! * Every address in the requested range must be in the map for the node's
//!   port count, else exception 02 (illegal data address) for the whole
//!   request. The map's port blocks leave gaps (a charger port uses 8 of its
//!   10 registers), so a poller reads one port block at a time.
//! * Info points are answered by the slave: map version ([`MAP_VERSION`]),
//!   class id ([`DeviceClass::id`](protocol::DeviceClass::id)) and port count
//!   (capped at [`MAX_MAP_PORTS`], the most the map addresses).
//! * Other points come from [`RegisterImage::point`], converted with
//!   [`Register::write`] (raw = engineering value / scale, rounded).
//! * A value that does not fit its register (a negative current, 7 kW in a
//!   register that ends at 6553.5 W) saturates to the register type's nearest
//!   end rather than failing or wrapping: an over-range reading stays an
//!   over-range reading for the poller's alarm rules.
//! * A 32-bit point is served word by word, so a range may start or end in the
//!   middle of one; the poller then gets that half, as from most controllers.
//! * Command coils are momentary: reading them (FC01) answers 0.
//!
//! ## Values not measured yet
//!
//! [`RegisterImage::point`] answers `None` before the first sample or while a
//! sensor is missing. Modbus has no "no value" in a register, so:
//!
//! * **bits** (flags and event bits) read 0: an event that cannot be seen is
//!   not active, and a poller reading a bit table must always get an answer;
//! * **registers**: if *every* measured point in the request is `None`, the
//!   request is answered with exception 04 (server device failure), so a
//!   poller reading a point on its own, or a whole block right after boot,
//!   learns that there is no value instead of storing a zero. If at least one
//!   measured point in the request has a value, the `None` ones read as 0 and
//!   the rest is served. Info points do not count either way (they are always
//!   known), so reading the identity registers works from boot on.
//!
//! Why not the alternatives: failing the whole request when *any* point is
//! `None` would make one missing sensor (or a point the node leaves empty
//! outside a charging session) hide every other value of its block from the
//! poller; in-band sentinels (`0x8000`, `0xFFFF`, as solar-inverter maps use)
//! would decode through the shared map as plausible-looking numbers
//! (−3276.8 °C, 6553.5 W) that `protocol::modbus::Register::read` cannot tell
//! apart from readings. The
//! cost of the choice: in a mixed block a missing value is indistinguishable
//! from a measured 0; the MQTT path, which carries missing metrics as missing,
//! remains the authoritative one.
//!
//! # Writes: signed, or none
//!
//! A write makes the node act (cut a port, clear a latch, start a pump), so
//! it needs the same authority as a signed MQTT command
//! ([`protocol::cmdauth`]). Modbus cannot carry a counter and a MAC with a
//! coil write, so the slave serves a **challenge** and takes a command only
//! as a **signed write** ([`protocol::cmdauth::modbus`]):
//!
//! ```text
//! holding registers, the same on every class (outside the class maps)
//!   1000–1003  challenge, u64, high word first     FC03
//!   1004–1005  refused writes, u32, high word first FC03
//!   1006       write mode: 0 read-only, 1 signed   FC03
//!   1010–      FC16 only: first coil, n, n values (0 or 1), tag (4 registers)
//! ```
//!
//! The tag is HMAC-SHA256 with the node's command key over `"fm-modbus-v1"`,
//! the challenge, the first coil, `n` and the values, cut to 8 bytes. The
//! coils are the class map's command coils; each value written 1 performs
//! its command, 0 does nothing. After a write whose tag verifies, the
//! challenge moves on, so a write recorded on the bus is never accepted
//! again; a refused one leaves it (a master that lost a race re-reads it).
//!
//! * **Read-only** ([`Slave::new`], the default; a node without a command
//!   key, or configured read-only): every write function (05, 06, 15, 16)
//!   answers exception 01 (illegal function) at once.
//! * **Signed** ([`Slave::with_command_key`]): FC05, FC06 and FC15 answer 01
//!   (there is no room for a tag); FC16 is checked in the usual order —
//!   structure and quantity (03), then the address: anything but 1010 is 02,
//!   then the envelope: `n` must match the quantity (03), every coil must be
//!   a command coil (02), every value 0 or 1 (03) — and then the tag: a wrong
//!   tag (another key, a stale challenge, a changed value) answers 01, the
//!   spec's "server in the wrong state to process a request of this type".
//! * Broadcast writes (RTU unit 0) are refused: one challenge cannot sign a
//!   write for every node on the line.
//!
//! Every write refused for want of authority (01 for a write function) is
//! counted in [`SlaveStats::refused_writes`] and in registers 1004–1005, so
//! someone probing the bus shows up in the node's diagnostics.
//!
//! A refused command answers exception 04 (server device failure); the
//! node's reason ([`CommandError`](crate::registers::CommandError)) is not
//! carried, Modbus has no place for it. Every coil written 1 is performed in
//! address order even after one is refused, then 04 is answered if any was:
//! a refused `clear` on one port must not stop a `cut_off` on the others. A
//! signed write is therefore not atomic, and its challenge is used up even
//! when a command in it was refused.
//!
//! Command coils read (FC01) as 0: they are momentary triggers.
//!
//! # Unit ids
//!
//! * RTU: a frame for this node's unit id (1–247) is answered; a frame for
//!   unit 0 (broadcast) performs its writes and is never answered (reads are
//!   meaningless as broadcasts and are ignored); frames for other units are
//!   ignored, as the RS-485 bus carries them to every node.
//! * TCP: the unit id is echoed. Unit 0xFF and this node's id are served, and
//!   so is 0: the Modbus TCP implementation guide says 0xFF should be used to
//!   reach a server directly and that 0 is also accepted. TCP has no broadcast.
//!   Other unit ids are ignored (no response): the node is not a gateway, so
//!   there is nothing behind it to route them to.
//!
//! # Framing
//!
//! [`Slave::handle`] takes one complete frame. Finding where frames end is the
//! transport's job, with two pure helpers:
//!
//! * RTU: [`rtu_request_len`] gives a request's length from its first 2 (or 7)
//!   bytes for the eight supported functions, so the UART driver can hand over
//!   a frame as soon as its last byte arrives. For anything else (an unknown
//!   function, line noise) it says [`RequestLen::Unknown`], and the driver ends
//!   the frame at the line's 3.5-character silence ([`rtu_frame_gap_us`]),
//!   which is also how it resynchronises after noise. A frame that fails the
//!   CRC is dropped without an answer, as the serial-line spec asks, and
//!   counted in [`SlaveStats::bad_frames`].
//! * TCP: [`tcp_request_len`] reads the MBAP length. A frame whose MBAP
//!   protocol id is not 0, or whose length field disagrees with the frame, is
//!   dropped and counted; the caller should then close the connection, since
//!   the stream can no longer be split into frames.
//!
//! # Why hand-written framing, not `rmodbus`
//!
//! `rmodbus` 0.13 (a dependency of this crate) was evaluated for the framing:
//! its `ModbusFrame::parse` with `get_external_read`/`get_external_write` does
//! fit a design without a register context. It was not used because:
//!
//! * `get_external_write` indexes the request without checking its length
//!   after `parse` accepted it: a 10-byte TCP request (`00 01 00 00 00 06 01 05
//!   00 00`) or an FC15 whose byte count runs past the frame panics (checked
//!   against 0.13.0 in debug and release builds), and in RTU the byte-count
//!   arithmetic (`7 + bytes` in `u8`) overflows and panics in debug builds. A
//!   node must not be crashable by one malformed frame, and guarding against
//!   that means validating every frame before `rmodbus` sees it, which is most
//!   of the work done here.
//! * It accepts quantity 0 on reads and does not check that an FC15/FC16 byte
//!   count matches the quantity, both exception 03 per the spec.
//! * On TCP it matches the unit id exactly and treats 0 as a broadcast (no
//!   reply), where this node must also serve 0xFF and 0: it would need the
//!   unit id rewritten before parsing and again in the reply.
//! * Not a reason on its own: its response buffer is a `VectorTrait`, which
//!   has no implementation with default features off; its `heapless` feature
//!   (heapless 0.9, the workspace's version) or an implementation on a wrapper
//!   of our own would both have served.
//!
//! What is left is small: a CRC-16 (polynomial 0xA001, bitwise, no table: 256
//! bytes of flash saved for a few µs per frame at RS-485 speeds), a 7-byte MBAP
//! header, and the PDU checks above. The tests check the frames against
//! well-known golden frames, against `rmodbus`'s client (an independent
//! implementation), and against a real master (`mbpoll`).
//!
//! # Cost
//!
//! `RegisterMap::find` scans the map (about 110 entries for a 12-port charger)
//! once per point in the request. A successful read or write touches at most
//! the longest run of consecutive mapped addresses (16 bits, 12 words), and a
//! request stops at its first unmapped address, so a request costs at most a
//! few thousand comparisons whatever quantity it asks for.

use protocol::CommandKey;
use protocol::cmdauth::modbus as signed;
use protocol::modbus::{DataType, Entry, InfoField, MAP_VERSION, MAX_MAP_PORTS, Point, Register, Table, map_for};

use crate::hal::Millis;
use crate::registers::RegisterImage;

/// Largest Modbus frame (ADU) in either transport: a TCP frame is the 7-byte
/// MBAP header plus a PDU of at most 253 bytes. The response buffer has this
/// size so any response fits; RTU frames are at most 256 bytes.
pub const MAX_ADU_LEN: usize = 260;

/// Largest RTU frame: unit id, 253-byte PDU, CRC.
const MAX_RTU_LEN: usize = 256;
/// MBAP header including the unit id.
const MBAP_LEN: usize = 7;
/// Largest PDU (function code and data).
const MAX_PDU_LEN: usize = 253;
/// RTU unit id that addresses every node.
const BROADCAST: u8 = 0;
/// TCP unit id for "the server at this address" (Modbus TCP implementation guide).
const TCP_DIRECT: u8 = 0xFF;

/// Which Modbus framing a request arrived in; decides checksum, header and
/// unit-id handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Modbus RTU on RS-485: unit id, PDU, CRC-16 (low byte first).
    Rtu,
    /// Modbus TCP: MBAP header (transaction id, protocol id 0, length, unit
    /// id), PDU; no checksum.
    Tcp,
}

/// Counters for the node's diagnostics, so a field engineer can tell a silent
/// bus from a noisy one or a misaddressed master. They wrap at `u32::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlaveStats {
    /// Frames addressed to this node (including broadcast writes) that were
    /// processed.
    pub requests: u32,
    /// Processed requests that ended in an exception (also counted for
    /// broadcasts, which are never answered).
    pub exceptions: u32,
    /// Frames dropped as broken: bad CRC, too short or too long, a bad MBAP
    /// header.
    pub bad_frames: u32,
    /// Well-formed frames not for this node (other unit ids) or meaningless
    /// (broadcast reads), dropped without an answer.
    pub ignored: u32,
    /// Writes refused for want of authority: any write while read-only, an
    /// unsigned write function, a signed write with a wrong tag, a broadcast
    /// write. Also counted in `exceptions` (answered or not).
    pub refused_writes: u32,
}

/// How the slave treats writes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Writes {
    /// Every write is refused.
    ReadOnly,
    /// Signed writes only, against this challenge.
    Signed { key: CommandKey, challenge: u64 },
}

/// The Modbus slave of one node: its unit id and counters. It holds no
/// register data; every request is answered from the [`RegisterImage`] passed
/// to [`Slave::handle`], so the values are always current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slave {
    unit_id: u8,
    stats: SlaveStats,
    writes: Writes,
}

/// How long the request at the start of a receive buffer is, for a transport
/// that must find frame ends itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestLen {
    /// Too few bytes to tell yet: keep receiving.
    NeedMore,
    /// The whole request is this many bytes (they may not all have arrived).
    Exactly(usize),
    /// The bytes cannot say. RTU: an unknown function or an impossible length,
    /// so end the frame at the line's 3.5-character silence. TCP: a broken
    /// MBAP header, so close the connection.
    Unknown,
}

/// Modbus exception codes this slave answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Exception {
    IllegalFunction = 0x01,
    IllegalDataAddress = 0x02,
    IllegalDataValue = 0x03,
    ServerDeviceFailure = 0x04,
}

/// Why a request was not served: a Modbus exception, or a write refused for
/// want of authority (answered as 01, and counted on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Exception(Exception),
    Unauthorised,
}

impl From<Exception> for Fault {
    fn from(e: Exception) -> Self {
        Fault::Exception(e)
    }
}

impl Slave {
    /// A read-only slave answering to `unit_id`, which must be a valid RTU
    /// unit address (1–247): 0 is the broadcast address and 248–255 are
    /// reserved. `None` otherwise, since the id comes from the node's
    /// configuration. Read-only is the default: a node takes writes only
    /// once it has a key to check them with ([`Slave::with_command_key`]).
    #[must_use]
    pub const fn new(unit_id: u8) -> Option<Self> {
        if unit_id == 0 || unit_id > 247 {
            return None;
        }
        Some(Self {
            unit_id,
            stats: SlaveStats {
                requests: 0,
                exceptions: 0,
                bad_frames: 0,
                ignored: 0,
                refused_writes: 0,
            },
            writes: Writes::ReadOnly,
        })
    }

    /// Takes signed writes checked with the node's command key. `boot` must
    /// differ on every start (a counter in battery-backed memory): it is the
    /// challenge's high half, so challenges never repeat across reboots and
    /// a write recorded before one cannot be replayed after it. The low half
    /// counts accepted writes.
    #[must_use]
    pub fn with_command_key(mut self, key: CommandKey, boot: u32) -> Self {
        self.writes = Writes::Signed {
            key,
            challenge: u64::from(boot) << 32,
        };
        self
    }

    /// The challenge a signed write must be tagged with; `None` while
    /// read-only.
    #[must_use]
    pub fn challenge(&self) -> Option<u64> {
        match &self.writes {
            Writes::ReadOnly => None,
            Writes::Signed { challenge, .. } => Some(*challenge),
        }
    }

    /// The unit id this slave answers to, for logs and diagnostics.
    #[must_use]
    pub const fn unit_id(&self) -> u8 {
        self.unit_id
    }

    /// The counters so far, for diagnostics.
    #[must_use]
    pub const fn stats(&self) -> SlaveStats {
        self.stats
    }

    /// Handles one complete request frame (see the module doc for framing),
    /// performing its commands on `image` at `now`. Writes the response, if
    /// any, to the start of `response` and returns its length; 0 means send
    /// nothing (broken frame, other unit, broadcast). Never panics, whatever
    /// the bytes.
    pub fn handle(
        &mut self,
        transport: Transport,
        request: &[u8],
        image: &mut impl RegisterImage,
        now: Millis,
        response: &mut [u8; MAX_ADU_LEN],
    ) -> usize {
        let Some((unit, pdu)) = unwrap_frame(transport, request) else {
            self.stats.bad_frames = self.stats.bad_frames.wrapping_add(1);
            return 0;
        };
        let broadcast = match transport {
            Transport::Rtu if unit == self.unit_id => false,
            Transport::Rtu if unit == BROADCAST => true,
            Transport::Tcp if unit == self.unit_id || unit == TCP_DIRECT || unit == 0 => false,
            _ => {
                self.stats.ignored = self.stats.ignored.wrapping_add(1);
                return 0;
            }
        };
        // `unwrap_frame` never returns an empty PDU.
        let function = pdu.first().copied().unwrap_or(0);
        if broadcast && !matches!(function, 5 | 6 | 15 | 16) {
            self.stats.ignored = self.stats.ignored.wrapping_add(1);
            return 0;
        }
        self.stats.requests = self.stats.requests.wrapping_add(1);

        let head = match transport {
            Transport::Rtu => 1,
            Transport::Tcp => MBAP_LEN,
        };
        let out = &mut response[head..head + MAX_PDU_LEN];
        let block = Block {
            challenge: self.challenge().unwrap_or(0),
            refused: self.stats.refused_writes,
            signed: self.challenge().is_some(),
        };
        let pdu_len = match serve(pdu, image, now, out, &mut self.writes, block, broadcast) {
            Ok(len) => len,
            Err(fault) => {
                self.stats.exceptions = self.stats.exceptions.wrapping_add(1);
                let exception = match fault {
                    Fault::Exception(e) => e,
                    Fault::Unauthorised => {
                        self.stats.refused_writes = self.stats.refused_writes.wrapping_add(1);
                        Exception::IllegalFunction
                    }
                };
                out[0] = function | 0x80;
                out[1] = exception as u8;
                2
            }
        };
        if broadcast {
            return 0;
        }
        match transport {
            Transport::Rtu => {
                response[0] = unit;
                let len = 1 + pdu_len;
                let crc = crc16(&response[..len]);
                response[len..len + 2].copy_from_slice(&crc.to_le_bytes());
                len + 2
            }
            Transport::Tcp => {
                // Transaction id and protocol id (0) are echoed; length counts
                // the unit id and the PDU.
                response[..4].copy_from_slice(&request[..4]);
                response[4..6].copy_from_slice(&be16(1 + pdu_len));
                response[6] = unit;
                MBAP_LEN + pdu_len
            }
        }
    }
}

/// The length of the RTU request at the start of `buf`, from its function
/// code (and, for FC15/FC16, its byte count). See [`RequestLen`].
#[must_use]
pub fn rtu_request_len(buf: &[u8]) -> RequestLen {
    match buf {
        // Unit, function, address, quantity or value, CRC.
        [_, 1..=6, ..] => RequestLen::Exactly(8),
        // Unit, function, address, quantity, byte count, data, CRC.
        [_, 15 | 16, _, _, _, _, count, ..] => {
            let len = 9 + usize::from(*count);
            if len <= MAX_RTU_LEN {
                RequestLen::Exactly(len)
            } else {
                RequestLen::Unknown
            }
        }
        // The byte count (FC15/16) or the function code is still to come.
        [] | [_] | [_, 15 | 16, ..] => RequestLen::NeedMore,
        _ => RequestLen::Unknown,
    }
}

/// The length of the TCP request at the start of `buf`, from its MBAP header.
/// See [`RequestLen`].
#[must_use]
pub fn tcp_request_len(buf: &[u8]) -> RequestLen {
    match buf {
        [_, _, 0, 0, hi, lo, ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            // The length counts the unit id and a PDU of 1..=253 bytes.
            if (2..=1 + MAX_PDU_LEN).contains(&len) {
                RequestLen::Exactly(6 + len)
            } else {
                RequestLen::Unknown
            }
        }
        [_, _, _, _, _, _, ..] => RequestLen::Unknown,
        _ => RequestLen::NeedMore,
    }
}

/// The silence that ends an RTU frame (t3.5), in microseconds, at `baud` bits
/// per second: 3.5 characters of 11 bits, and a fixed 1750 µs above 19200
/// baud, as the Modbus serial-line spec prescribes. The board's UART driver
/// arms its idle timer with it. `u32::MAX` for a baud rate of 0.
#[must_use]
pub const fn rtu_frame_gap_us(baud: u32) -> u32 {
    if baud > 19_200 {
        1_750
    } else if baud == 0 {
        u32::MAX
    } else {
        // 3.5 × 11 bits × 1 000 000 µs, rounded up.
        38_500_000_u32.div_ceil(baud)
    }
}

/// Checks a frame's envelope: the unit id and the PDU, or `None` if the frame
/// is broken.
fn unwrap_frame(transport: Transport, frame: &[u8]) -> Option<(u8, &[u8])> {
    match transport {
        Transport::Rtu => {
            // Unit id, at least a function code, CRC.
            if !(4..=MAX_RTU_LEN).contains(&frame.len()) {
                return None;
            }
            let (body, crc) = frame.split_at(frame.len() - 2);
            if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
                return None;
            }
            Some((body[0], &body[1..]))
        }
        Transport::Tcp => {
            if frame.len() <= MBAP_LEN || frame.len() > MAX_ADU_LEN {
                return None;
            }
            if tcp_request_len(frame) != RequestLen::Exactly(frame.len()) {
                return None;
            }
            Some((frame[6], &frame[MBAP_LEN..]))
        }
    }
}

/// Modbus RTU CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for byte in bytes {
        crc ^= u16::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 0 { crc >> 1 } else { (crc >> 1) ^ 0xA001 };
        }
    }
    crc
}

/// `n` as two big-endian bytes; callers pass lengths bounded by [`MAX_ADU_LEN`].
fn be16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

/// The signed-write block's readable values at the time of a request.
#[derive(Clone, Copy, Debug)]
struct Block {
    challenge: u64,
    refused: u32,
    signed: bool,
}

impl Block {
    /// The word at `address`, if it is in the readable part of the block.
    fn word(self, address: u16) -> Option<u16> {
        let c = signed::challenge_words(self.challenge);
        let [r0, r1] = [(self.refused >> 16) as u16, (self.refused & 0xFFFF) as u16];
        let words = [c[0], c[1], c[2], c[3], r0, r1, u16::from(self.signed)];
        let i = address.checked_sub(signed::CHALLENGE)?;
        words.get(usize::from(i)).copied()
    }
}

/// Serves one PDU into `out` (at least [`MAX_PDU_LEN`] bytes), returning the
/// response PDU's length.
fn serve(
    pdu: &[u8],
    image: &mut impl RegisterImage,
    now: Millis,
    out: &mut [u8],
    writes: &mut Writes,
    block: Block,
    broadcast: bool,
) -> Result<usize, Fault> {
    let Some((&function, data)) = pdu.split_first() else {
        return Err(Exception::IllegalFunction.into());
    };
    match function {
        1 => Ok(read(image, function, Table::Coil, data, out)?),
        2 => Ok(read(image, function, Table::DiscreteInput, data, out)?),
        3 if reads_block(data) => Ok(read_block(block, data, out)?),
        3 => Ok(read(image, function, Table::HoldingRegister, data, out)?),
        4 => Ok(read(image, function, Table::InputRegister, data, out)?),
        5 | 6 | 15 => Err(Fault::Unauthorised),
        16 => match writes {
            Writes::ReadOnly => Err(Fault::Unauthorised),
            Writes::Signed { key, challenge } => signed_write(image, now, data, out, key, challenge, broadcast),
        },
        _ => Err(Exception::IllegalFunction.into()),
    }
}

/// Whether an FC03 request starts in the signed-write block.
fn reads_block(data: &[u8]) -> bool {
    matches!(data, &[a0, a1, _, _] if (signed::CHALLENGE..signed::CHALLENGE + signed::READABLE)
        .contains(&u16::from_be_bytes([a0, a1])))
}

/// FC03 on the signed-write block: challenge, refused writes, write mode.
fn read_block(block: Block, data: &[u8], out: &mut [u8]) -> Result<usize, Exception> {
    let (start, quantity) = read_request(data, 125)?;
    out[0] = 3;
    // At most 7 registers: 14 bytes.
    out[1] = u8::try_from(quantity * 2).unwrap_or(u8::MAX);
    for i in 0..quantity {
        let word = block.word(start + i).ok_or(Exception::IllegalDataAddress)?;
        let at = 2 + 2 * usize::from(i);
        out[at..at + 2].copy_from_slice(&word.to_be_bytes());
    }
    Ok(2 + 2 * usize::from(quantity))
}

/// A read request's start and quantity: 4 bytes, 1 to `max` points, ending
/// inside the address space.
fn read_request(data: &[u8], max: u16) -> Result<(u16, u16), Exception> {
    let &[a0, a1, q0, q1] = data else {
        return Err(Exception::IllegalDataValue);
    };
    let start = u16::from_be_bytes([a0, a1]);
    let quantity = u16::from_be_bytes([q0, q1]);
    if quantity == 0 || quantity > max {
        return Err(Exception::IllegalDataValue);
    }
    check_range(start, quantity)?;
    Ok((start, quantity))
}

/// FC01–04: reads `quantity` bits or words from `start`.
fn read(
    image: &impl RegisterImage,
    function: u8,
    table: Table,
    data: &[u8],
    out: &mut [u8],
) -> Result<usize, Exception> {
    let bits = table.is_bit();
    let (start, quantity) = read_request(data, if bits { 2000 } else { 125 })?;
    // At most 250 bytes: fits a u8 and the 253-byte PDU.
    let byte_count = if bits { quantity.div_ceil(8) } else { quantity * 2 };
    let body_end = 2 + usize::from(byte_count);
    out[0] = function;
    out[1] = u8::try_from(byte_count).unwrap_or(u8::MAX);
    let body = &mut out[2..body_end];
    body.fill(0);

    let map = map_for(image.class());
    let ports = image.ports();
    let (mut measured, mut unknown) = (0_u16, 0_u16);
    let mut i: u16 = 0;
    while i < quantity {
        let address = start + i;
        let entry = map.find(table, address, ports).ok_or(Exception::IllegalDataAddress)?;
        let sample = sample(image, &entry);
        if let Sample::Node(value) = sample {
            measured += 1;
            unknown += u16::from(value.is_none());
        }
        let words = raw_words(&entry.register, sample.value());
        let register = entry.register;
        let mut word = address - register.address;
        while word < register.data_type.words() && i < quantity {
            let raw = words[usize::from(word)];
            let at = usize::from(i);
            if bits {
                if raw != 0 {
                    body[at / 8] |= 1 << (at % 8);
                }
            } else {
                body[2 * at..2 * at + 2].copy_from_slice(&raw.to_be_bytes());
            }
            word += 1;
            i += 1;
        }
    }
    if !bits && measured > 0 && unknown == measured {
        return Err(Exception::ServerDeviceFailure);
    }
    Ok(body_end)
}

/// FC16 at the signed-write block: `[first coil, n, values × n, tag × 4]`.
/// Checks the structure, the coils and the values, then the tag against the
/// challenge; on a good tag moves the challenge on and performs the
/// commands. The response echoes the start and quantity.
fn signed_write(
    image: &mut impl RegisterImage,
    now: Millis,
    data: &[u8],
    out: &mut [u8],
    key: &CommandKey,
    challenge: &mut u64,
    broadcast: bool,
) -> Result<usize, Fault> {
    let Some((&[a0, a1, q0, q1, count], bytes)) = data.split_first_chunk::<5>() else {
        return Err(Exception::IllegalDataValue.into());
    };
    let start = u16::from_be_bytes([a0, a1]);
    let quantity = u16::from_be_bytes([q0, q1]);
    if quantity == 0 || quantity > 123 || u16::from(count) != quantity * 2 || bytes.len() != usize::from(count) {
        return Err(Exception::IllegalDataValue.into());
    }
    check_range(start, quantity)?;
    if start != signed::SIGNED_WRITE {
        return Err(Exception::IllegalDataAddress.into());
    }
    // At most 123 registers, on the stack.
    let mut words = [0u16; 123];
    for (w, b) in words.iter_mut().zip(bytes.chunks_exact(2)) {
        *w = u16::from_be_bytes([b[0], b[1]]);
    }
    let words = &words[..usize::from(quantity)];
    let [first, n, rest @ ..] = words else {
        return Err(Exception::IllegalDataValue.into());
    };
    let Some((values, tag)) = rest.split_last_chunk::<{ signed::TAG_WORDS }>() else {
        return Err(Exception::IllegalDataValue.into());
    };
    if *n == 0 || usize::from(*n) != values.len() {
        return Err(Exception::IllegalDataValue.into());
    }
    let on = |i: u16| match values[usize::from(i)] {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Exception::IllegalDataValue),
    };
    check_commands(image, Table::Coil, *first, *n, on)?;
    if broadcast || !signed::verify(key, *challenge, *first, values, tag) {
        return Err(Fault::Unauthorised);
    }
    *challenge = challenge.wrapping_add(1);
    perform_commands(image, now, Table::Coil, *first, *n, on)?;
    out[0] = 16;
    out[1..5].copy_from_slice(&[a0, a1, q0, q1]);
    Ok(5)
}

/// Checks that `quantity` points from `start` are all command points of the
/// map and every value valid, so a bad request performs nothing.
fn check_commands(
    image: &impl RegisterImage,
    table: Table,
    start: u16,
    quantity: u16,
    on: impl Fn(u16) -> Result<bool, Exception>,
) -> Result<(), Exception> {
    check_range(start, quantity)?;
    for i in 0..quantity {
        command_at(image, table, start + i).ok_or(Exception::IllegalDataAddress)?;
    }
    for i in 0..quantity {
        on(i)?;
    }
    Ok(())
}

/// The command point at `address`, if there is one.
fn command_at(image: &impl RegisterImage, table: Table, address: u16) -> Option<Entry> {
    map_for(image.class())
        .find(table, address, image.ports())
        .filter(|e| e.register.writable() && e.register.address == address)
}

/// Performs the commands written 1 (checked by [`check_commands`]) in
/// address order.
fn perform_commands(
    image: &mut impl RegisterImage,
    now: Millis,
    table: Table,
    start: u16,
    quantity: u16,
    on: impl Fn(u16) -> Result<bool, Exception>,
) -> Result<(), Exception> {
    let mut refused = false;
    for i in 0..quantity {
        if !on(i)? {
            continue;
        }
        if let Some(Entry {
            register: Register {
                point: Point::Command(op),
                ..
            },
            port,
        }) = command_at(image, table, start + i)
        {
            refused |= image.command(op, port, now).is_err();
        }
    }
    if refused {
        Err(Exception::ServerDeviceFailure)
    } else {
        Ok(())
    }
}

/// The range must end inside the 16-bit address space.
fn check_range(start: u16, quantity: u16) -> Result<(), Exception> {
    if u32::from(start) + u32::from(quantity) > 0x1_0000 {
        Err(Exception::IllegalDataAddress)
    } else {
        Ok(())
    }
}

/// Where a point's value came from.
enum Sample {
    /// Answered by the slave (info points, momentary command coils).
    Slave(f64),
    /// From [`RegisterImage::point`]; `None` (or NaN) when not measured.
    Node(Option<f64>),
}

impl Sample {
    fn value(&self) -> Option<f64> {
        match *self {
            Sample::Slave(v) => Some(v),
            Sample::Node(v) => v,
        }
    }
}

fn sample(image: &impl RegisterImage, entry: &Entry) -> Sample {
    match entry.register.point {
        Point::Info(InfoField::MapVersion) => Sample::Slave(f64::from(MAP_VERSION)),
        Point::Info(InfoField::Class) => Sample::Slave(f64::from(image.class().id())),
        Point::Info(InfoField::PortCount) => Sample::Slave(f64::from(image.ports().min(MAX_MAP_PORTS))),
        Point::Command(_) => Sample::Slave(0.0),
        point @ (Point::Metric(_) | Point::PortMetric(_) | Point::Event(_)) => {
            Sample::Node(image.point(point, entry.port).filter(|v| !v.is_nan()))
        }
    }
}

/// The raw words of a value (unused words and unknown values are 0),
/// saturating at the register type's ends.
fn raw_words(register: &Register, value: Option<f64>) -> [u16; 2] {
    let mut out = [0; 2];
    let Some(value) = value else { return out };
    let encoded = register.write(value).or_else(|_| {
        register
            .data_type
            .encode(saturate(register.data_type, value / register.scale))
    });
    if let Ok(words) = encoded {
        for (o, w) in out.iter_mut().zip(&words) {
            *o = *w;
        }
    }
    out
}

/// Clamps a raw (unscaled) number into what `data_type` can hold.
fn saturate(data_type: DataType, raw: f64) -> f64 {
    let (lo, hi) = data_type.range();
    raw.clamp(lo, hi)
}
