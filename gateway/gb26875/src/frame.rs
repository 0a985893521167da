//! The frame (GB/T 26875.3-2011 §6.6): start `@@`, the 25-byte control
//! unit, the application data, a checksum, end `##`; and a stream decoder
//! that finds frames in whatever a TCP connection delivers.

use std::fmt;

/// The start characters `@@` (0x40 0x40).
pub const START: [u8; 2] = *b"@@";
/// The end characters `##` (0x23 0x23).
pub const END: [u8; 2] = *b"##";
/// The control unit's length: serial 2, version 2, time 6, source 6,
/// destination 6, data length 2, command 1.
pub const CONTROL_LEN: usize = 25;
/// The longest application data the standard allows.
pub const MAX_DATA: usize = 1024;
/// A frame's bytes besides its application data: start, control unit,
/// checksum, end.
pub const OVERHEAD: usize = START.len() + CONTROL_LEN + 1 + END.len();
/// The longest frame: what a decoder ever holds while it waits.
pub const MAX_FRAME: usize = OVERHEAD + MAX_DATA;

/// A 6-byte address (a user information transmission device's or a
/// centre's). People write it as 12 hex digits, most significant first;
/// on the wire it travels low byte first, like every multi-byte field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(u64);

/// Why a text is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an address is 12 hex digits (6 bytes), not {0:?}")]
pub struct AddressError(pub String);

impl Address {
    /// The all-zero address.
    pub const ZERO: Address = Address(0);

    /// The address of a 48-bit number; `None` above 48 bits.
    #[must_use]
    pub const fn new(value: u64) -> Option<Address> {
        if value >> 48 == 0 { Some(Address(value)) } else { None }
    }

    /// Reads 12 hex digits, most significant first (either case).
    ///
    /// # Errors
    /// Anything but exactly 12 hex digits.
    pub fn from_hex(text: &str) -> Result<Address, AddressError> {
        if text.len() != 12 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AddressError(text.to_owned()));
        }
        u64::from_str_radix(text, 16)
            .map(Address)
            .map_err(|_| AddressError(text.to_owned()))
    }

    /// The address as a number.
    #[must_use]
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The six bytes as they travel: low byte first.
    #[must_use]
    pub fn to_wire(self) -> [u8; 6] {
        let b = self.0.to_le_bytes();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    /// The address six bytes on the wire stand for.
    #[must_use]
    pub fn from_wire(b: [u8; 6]) -> Address {
        Address(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0]))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012x}", self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// The protocol version: main version (the standard's is 1) and the
/// user's version, in that order on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Version {
    /// Main version (主版本号), 1 for GB/T 26875.3-2011.
    pub major: u8,
    /// User version (用户版本号), defined by whoever runs the network.
    pub minor: u8,
}

impl Default for Version {
    fn default() -> Self {
        Version { major: 1, minor: 0 }
    }
}

/// A time label (时间标签): second, minute, hour, day, month, year - 2000,
/// one byte each, in that order. Kept as the bytes it was (a decoder never
/// refuses a frame for a wrong date); [`TimeLabel::to_unix_ms`] says whether
/// it is a real time.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct TimeLabel {
    /// 0–59.
    pub second: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–23.
    pub hour: u8,
    /// 1–31.
    pub day: u8,
    /// 1–12.
    pub month: u8,
    /// The year less 2000 (0–99).
    pub year: u8,
}

/// China's civil time: UTC+8, no daylight saving. Time labels are local
/// time; the standard names no zone, centres in China read them as this.
pub const CHINA_OFFSET_SECS: i32 = 8 * 3600;

impl TimeLabel {
    /// The label of a Unix time (ms) at a UTC offset (seconds). Years
    /// outside 2000–2099 cannot be written and are clamped to the nearest
    /// end, at the same time of year.
    #[must_use]
    pub fn from_unix_ms(ms: i64, offset_secs: i32) -> TimeLabel {
        let offset = time::UtcOffset::from_whole_seconds(offset_secs).unwrap_or(time::UtcOffset::UTC);
        let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .to_offset(offset);
        let year = u8::try_from((t.year() - 2000).clamp(0, 99)).unwrap_or(0);
        TimeLabel {
            second: t.second(),
            minute: t.minute(),
            hour: t.hour(),
            day: t.day(),
            month: u8::from(t.month()),
            year,
        }
    }

    /// The Unix time (ms) the label stands for at a UTC offset, if it is a
    /// real date and time.
    #[must_use]
    pub fn to_unix_ms(self, offset_secs: i32) -> Option<i64> {
        let month = time::Month::try_from(self.month).ok()?;
        let date = time::Date::from_calendar_date(2000 + i32::from(self.year), month, self.day).ok()?;
        let clock = time::Time::from_hms(self.hour, self.minute, self.second).ok()?;
        let offset = time::UtcOffset::from_whole_seconds(offset_secs).ok()?;
        (self.year <= 99).then_some(())?;
        Some(
            time::PrimitiveDateTime::new(date, clock)
                .assume_offset(offset)
                .unix_timestamp()
                * 1000,
        )
    }

    /// The six bytes on the wire.
    #[must_use]
    pub const fn to_wire(self) -> [u8; 6] {
        [self.second, self.minute, self.hour, self.day, self.month, self.year]
    }

    /// The label six bytes on the wire stand for.
    #[must_use]
    pub const fn from_wire(b: [u8; 6]) -> TimeLabel {
        TimeLabel {
            second: b[0],
            minute: b[1],
            hour: b[2],
            day: b[3],
            month: b[4],
            year: b[5],
        }
    }
}

/// The command byte (命令字节, table 2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Command {
    /// 1 控制命令: the centre's control command (time sync).
    Control,
    /// 2 发送数据: a device sends fire alarms and facility states.
    SendData,
    /// 3 确认: confirms a control command or sent data.
    Confirm,
    /// 4 请求: asks for information (queries).
    Request,
    /// 5 应答: answers a request.
    Reply,
    /// 6 否认: refuses a control command or sent data.
    Deny,
    /// 0, 7–127 reserved, 128–255 user-defined.
    Other(u8),
}

impl From<u8> for Command {
    fn from(b: u8) -> Command {
        match b {
            1 => Command::Control,
            2 => Command::SendData,
            3 => Command::Confirm,
            4 => Command::Request,
            5 => Command::Reply,
            6 => Command::Deny,
            other => Command::Other(other),
        }
    }
}

impl From<Command> for u8 {
    fn from(c: Command) -> u8 {
        match c {
            Command::Control => 1,
            Command::SendData => 2,
            Command::Confirm => 3,
            Command::Request => 4,
            Command::Reply => 5,
            Command::Deny => 6,
            Command::Other(b) => b,
        }
    }
}

/// One frame: the control unit's fields and the application data, still
/// as bytes ([`crate::Unit::decode`] reads them).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Frame {
    /// Business serial number (业务流水号): chosen by whoever starts an
    /// exchange, repeated by the answer (confirm, deny, reply).
    pub serial: u16,
    /// Protocol version.
    pub version: Version,
    /// When the frame was sent (the sender's clock).
    pub time: TimeLabel,
    /// Who sends it.
    pub source: Address,
    /// Whom it is for.
    pub destination: Address,
    /// What it is.
    pub command: Command,
    /// The application data unit (empty for confirm and deny).
    pub data: Vec<u8>,
}

/// Why a frame cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The application data is longer than the standard allows.
    #[error("application data of {0} bytes is longer than the 1024 the standard allows")]
    TooLong(usize),
    /// More information objects than the one-byte count can say.
    #[error("{0} information objects; a unit holds at most 255")]
    TooManyObjects(usize),
}

/// The checksum (校验和): the sum, modulo 256, of every byte of the control
/// unit and the application data (bytes 3 to 27 + n of the frame: neither
/// the start nor the end characters).
#[must_use]
pub fn checksum(control: &[u8], data: &[u8]) -> u8 {
    control.iter().chain(data).fold(0u8, |s, b| s.wrapping_add(*b))
}

impl Frame {
    /// The frame's bytes.
    ///
    /// # Errors
    /// Application data longer than [`MAX_DATA`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.data.len() > MAX_DATA {
            return Err(EncodeError::TooLong(self.data.len()));
        }
        let len = u16::try_from(self.data.len()).map_err(|_| EncodeError::TooLong(self.data.len()))?;
        let mut out = Vec::with_capacity(OVERHEAD + self.data.len());
        out.extend_from_slice(&START);
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.push(self.version.major);
        out.push(self.version.minor);
        out.extend_from_slice(&self.time.to_wire());
        out.extend_from_slice(&self.source.to_wire());
        out.extend_from_slice(&self.destination.to_wire());
        out.extend_from_slice(&len.to_le_bytes());
        out.push(self.command.into());
        out.extend_from_slice(&self.data);
        out.push(checksum(&out[START.len()..START.len() + CONTROL_LEN], &self.data));
        out.extend_from_slice(&END);
        Ok(out)
    }
}

/// Bytes a decoder passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Garbage {
    /// Bytes before the next `@@`.
    #[error("bytes before a start `@@`")]
    NoStart,
    /// A start whose length field says more than 1024 bytes.
    #[error("a start whose data length {0} is over 1024")]
    TooLong(u16),
    /// A start whose frame does not end in `##` where its length says.
    #[error("a start without `##` where its length says the frame ends")]
    NoEnd,
    /// A start whose frame was still incomplete when a whole frame behind
    /// it had arrived: it was no frame (a real one cannot hold another).
    #[error("a start overtaken by a whole frame behind it")]
    Overtaken,
    /// A whole frame whose checksum is wrong.
    #[error("a frame whose checksum is {found:#04x}, not {expected:#04x}")]
    BadChecksum {
        /// What the bytes sum to.
        expected: u8,
        /// What the frame says.
        found: u8,
    },
}

/// What the front of a buffer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A frame, `len` bytes long.
    Frame {
        /// The frame.
        frame: Frame,
        /// Its length in the buffer.
        len: usize,
    },
    /// The buffer starts like a frame but more bytes are needed.
    Incomplete,
    /// The first `len` bytes are no frame: drop them and look again.
    Skip {
        /// How many bytes to drop (at least 1).
        len: usize,
        /// Why.
        reason: Garbage,
    },
}

/// Reads the front of `buf`: a whole frame, a need for more bytes, or bytes
/// to skip. A start that turns out wrong (length over 1024, no `##`, a bad
/// checksum) is skipped by one byte only, so a real `@@` right behind it,
/// or inside what looked like its data, is found next. A start still
/// waiting for its bytes is given up as soon as a whole frame has arrived
/// behind it: a stray `@@` whose length field promises bytes that never come
/// must not hold up the frames after it.
#[must_use]
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(at) = buf.windows(2).position(|w| w == START) else {
        // No `@@`: everything goes but a last `@`, which may begin one.
        let keep = usize::from(buf.last() == Some(&START[0]));
        return match buf.len() - keep {
            0 => Parsed::Incomplete,
            len => Parsed::Skip {
                len,
                reason: Garbage::NoStart,
            },
        };
    };
    if at > 0 {
        return Parsed::Skip {
            len: at,
            reason: Garbage::NoStart,
        };
    }
    match at_start(buf) {
        Parsed::Incomplete => {
            let behind = (1..buf.len().saturating_sub(1))
                .filter(|k| buf[*k..].starts_with(&START))
                .find(|k| matches!(at_start(&buf[*k..]), Parsed::Frame { .. }));
            match behind {
                Some(len) => Parsed::Skip {
                    len,
                    reason: Garbage::Overtaken,
                },
                None => Parsed::Incomplete,
            }
        }
        other => other,
    }
}

/// [`parse`] for a buffer that starts with `@@`.
fn at_start(buf: &[u8]) -> Parsed {
    let head = START.len() + CONTROL_LEN;
    let Some(control) = buf.get(START.len()..head) else {
        return Parsed::Incomplete;
    };
    let len = u16::from_le_bytes([control[22], control[23]]);
    let n = usize::from(len);
    if n > MAX_DATA {
        return Parsed::Skip {
            len: 1,
            reason: Garbage::TooLong(len),
        };
    }
    let total = OVERHEAD + n;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    let data = &buf[head..head + n];
    let found = buf[head + n];
    if buf[head + n + 1..total] != END {
        return Parsed::Skip {
            len: 1,
            reason: Garbage::NoEnd,
        };
    }
    let expected = checksum(control, data);
    if expected != found {
        return Parsed::Skip {
            len: 1,
            reason: Garbage::BadChecksum { expected, found },
        };
    }
    let six = |at: usize| {
        [
            control[at],
            control[at + 1],
            control[at + 2],
            control[at + 3],
            control[at + 4],
            control[at + 5],
        ]
    };
    Parsed::Frame {
        frame: Frame {
            serial: u16::from_le_bytes([control[0], control[1]]),
            version: Version {
                major: control[2],
                minor: control[3],
            },
            time: TimeLabel::from_wire(six(4)),
            source: Address::from_wire(six(10)),
            destination: Address::from_wire(six(16)),
            command: Command::from(control[24]),
            data: data.to_vec(),
        },
        len: total,
    }
}

/// Finds frames in a byte stream: bytes go in as they arrive, frames and
/// skipped garbage come out. Never holds more than a partial frame
/// ([`MAX_FRAME`] bytes) once drained.
#[derive(Debug, Default, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// An empty decoder.
    #[must_use]
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds bytes as they arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next frame, or the next run of garbage passed over; `None` when
    /// more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, Garbage>> {
        match parse(&self.buf) {
            Parsed::Incomplete => None,
            Parsed::Frame { frame, len } => {
                self.buf.drain(..len);
                Some(Ok(frame))
            }
            Parsed::Skip { len, reason } => {
                self.buf.drain(..len);
                Some(Err(reason))
            }
        }
    }

    /// Bytes held, waiting for the rest of a frame.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Forgets what is held (a new connection starts clean).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}
