//! MQTT topics: `fm/v1/{site}/{class}/{device}/{kind}`.
//!
//! Parsing is strict and names the bad segment, because a topic is the first
//! thing the gateway judges and a vendor's integrator needs to see which part
//! of their topic was wrong. Nothing here allocates.

use core::fmt;

use crate::class::{DeviceClass, Kind};

/// The fixed first segment.
pub const PREFIX: &str = "fm";
/// The protocol version segment.
pub const VERSION: &str = "v1";
/// Longest site id (`[a-z0-9-]{1,32}`).
pub const MAX_SITE_LEN: usize = 32;
/// Longest device id (`[A-Za-z0-9_-]{1,48}`); a 20-digit elevator registration code fits.
pub const MAX_DEVICE_LEN: usize = 48;
/// Longest possible topic: `fm/v1/` + site + `/firepump/` + device + `/birth`.
pub const MAX_TOPIC_LEN: usize = 6 + MAX_SITE_LEN + 10 + MAX_DEVICE_LEN + 6;

/// A residential compound (小区) id: `[a-z0-9-]{1,32}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(heapless::String<MAX_SITE_LEN>);

/// A device id: `[A-Za-z0-9_-]{1,48}`, typically an elevator's 统一注册码.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(heapless::String<MAX_DEVICE_LEN>);

macro_rules! id_type {
    ($ty:ident, $segment:expr, $max:expr, $allowed:expr) => {
        impl $ty {
            /// Checks and copies an id.
            ///
            /// # Errors
            /// A [`TopicError`] naming this segment and the broken rule.
            pub fn new(s: &str) -> Result<Self, TopicError> {
                check_segment($segment, s, $max, $allowed)?;
                let mut out = heapless::String::new();
                // Cannot fail: the length was checked.
                let _ = out.push_str(s);
                Ok($ty(out))
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = TopicError;
            fn try_from(s: &str) -> Result<Self, TopicError> {
                Self::new(s)
            }
        }
    };
}

fn site_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn device_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

id_type!(SiteId, Segment::Site, MAX_SITE_LEN, site_char);
id_type!(DeviceId, Segment::Device, MAX_DEVICE_LEN, device_char);

/// A parsed topic. Build one and [`fmt::Display`] it to publish; parse one to route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topic {
    /// The compound.
    pub site: SiteId,
    /// What kind of facility the device is.
    pub class: DeviceClass,
    /// The device within the site.
    pub device: DeviceId,
    /// What the message is.
    pub kind: Kind,
}

/// The segments of a topic, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// The leading `fm`.
    Prefix,
    /// The `v1` version.
    Version,
    /// The site id.
    Site,
    /// The device class.
    Class,
    /// The device id.
    Device,
    /// The message kind.
    Kind,
    /// Anything after the kind.
    Extra,
}

impl Segment {
    /// The segment's name as the contract writes it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Segment::Prefix => "prefix",
            Segment::Version => "version",
            Segment::Site => "site",
            Segment::Class => "class",
            Segment::Device => "device",
            Segment::Kind => "kind",
            Segment::Extra => "extra",
        }
    }
}

/// What is wrong with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The topic ended before this segment.
    Missing,
    /// The segment is empty (`//`).
    Empty,
    /// Longer than allowed.
    TooLong {
        /// The segment's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside the segment's alphabet.
    BadChar {
        /// The character.
        ch: char,
        /// Byte offset within the segment.
        at: usize,
    },
    /// Not one of the allowed values (`fm`, `v1`, a class, a kind).
    Unknown,
    /// More segments than the layout has.
    Unexpected,
}

/// A topic that does not follow `fm/v1/{site}/{class}/{device}/{kind}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("topic segment `{}` {:?}: {}", segment.as_str(), text.as_str(), ProblemText(*problem, *segment))]
pub struct TopicError {
    /// Which segment is wrong.
    pub segment: Segment,
    /// The problem.
    pub problem: Problem,
    /// The offending segment text (cut to 48 bytes).
    pub text: heapless::String<MAX_DEVICE_LEN>,
}

struct ProblemText(Problem, Segment);

impl fmt::Display for ProblemText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Problem::Missing => f.write_str("is missing"),
            Problem::Empty => f.write_str("is empty"),
            Problem::TooLong { len, max } => write!(f, "is {len} bytes long, at most {max} allowed"),
            Problem::BadChar { ch, at } => {
                let alphabet = match self.1 {
                    Segment::Site => "[a-z0-9-]",
                    _ => "[A-Za-z0-9_-]",
                };
                write!(f, "has {ch:?} at byte {at}, allowed are {alphabet}")
            }
            Problem::Unknown => match self.1 {
                Segment::Prefix => f.write_str("must be `fm`"),
                Segment::Version => f.write_str("must be `v1`"),
                Segment::Class => f.write_str("must be elevator, firepump or charger"),
                _ => f.write_str("must be birth, death, data, event, cmd or ack"),
            },
            Problem::Unexpected => f.write_str("is past the end of the layout"),
        }
    }
}

impl TopicError {
    fn new(segment: Segment, problem: Problem, text: &str) -> Self {
        let mut cut = heapless::String::new();
        for ch in text.chars() {
            if cut.push(ch).is_err() {
                break;
            }
        }
        TopicError {
            segment,
            problem,
            text: cut,
        }
    }
}

fn check_segment(segment: Segment, s: &str, max: usize, allowed: fn(char) -> bool) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::new(segment, Problem::Empty, s));
    }
    if s.len() > max {
        return Err(TopicError::new(segment, Problem::TooLong { len: s.len(), max }, s));
    }
    if let Some((at, ch)) = s.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(TopicError::new(segment, Problem::BadChar { ch, at }, s));
    }
    Ok(())
}

impl Topic {
    /// Builds a topic from parts that are already valid.
    #[must_use]
    pub fn new(site: SiteId, class: DeviceClass, device: DeviceId, kind: Kind) -> Self {
        Topic {
            site,
            class,
            device,
            kind,
        }
    }

    /// Parses a topic, naming the first bad segment on failure.
    ///
    /// # Errors
    /// A [`TopicError`] with the segment, the problem and the offending text.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let mut parts = topic.split('/');
        let mut next = |segment| match parts.next() {
            Some(p) if p.is_empty() => Err(TopicError::new(segment, Problem::Empty, p)),
            Some(p) => Ok(p),
            None => Err(TopicError::new(segment, Problem::Missing, "")),
        };
        let prefix = next(Segment::Prefix)?;
        if prefix != PREFIX {
            return Err(TopicError::new(Segment::Prefix, Problem::Unknown, prefix));
        }
        let version = next(Segment::Version)?;
        if version != VERSION {
            return Err(TopicError::new(Segment::Version, Problem::Unknown, version));
        }
        let site = SiteId::new(next(Segment::Site)?)?;
        let class_text = next(Segment::Class)?;
        let class = DeviceClass::from_name(class_text)
            .ok_or_else(|| TopicError::new(Segment::Class, Problem::Unknown, class_text))?;
        let device = DeviceId::new(next(Segment::Device)?)?;
        let kind_text = next(Segment::Kind)?;
        let kind =
            Kind::from_name(kind_text).ok_or_else(|| TopicError::new(Segment::Kind, Problem::Unknown, kind_text))?;
        if let Some(extra) = parts.next() {
            return Err(TopicError::new(Segment::Extra, Problem::Unexpected, extra));
        }
        Ok(Topic {
            site,
            class,
            device,
            kind,
        })
    }

    /// The same device's topic for another kind (e.g. the `ack` for a `cmd`).
    #[must_use]
    pub fn with_kind(&self, kind: Kind) -> Self {
        Topic { kind, ..self.clone() }
    }

    /// The topic as a fixed-capacity string, for publishing without a heap.
    #[must_use]
    pub fn to_heapless(&self) -> heapless::String<MAX_TOPIC_LEN> {
        let mut s = heapless::String::new();
        // Cannot fail: every part is bounded and MAX_TOPIC_LEN adds them up.
        let _ = fmt::write(&mut s, format_args!("{self}"));
        s
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}/{VERSION}/{}/{}/{}/{}",
            self.site, self.class, self.device, self.kind
        )
    }
}

impl core::str::FromStr for Topic {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Topic::parse(s)
    }
}
