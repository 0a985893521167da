//! Closed sets of wire names (classes, kinds, metrics, event codes, command ops)
//! and the open [`Named`] wrapper that keeps names a newer node may send.
//!
//! Every closed set is declared once with [`wire_names!`], which gives each value
//! its wire name (JSON, topics, docs) and a stable one-byte id (binary encoding).
//! Ids are append-only: a value, once shipped, keeps its id forever, so old and
//! new nodes agree on the binary encoding.

use core::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// Longest name (unknown metric, detail key, unknown code) a message may carry.
///
/// Canonical names are at most 27 bytes; the margin is for vendors' own names.
pub const MAX_NAME_LEN: usize = 32;

/// A name of at most [`MAX_NAME_LEN`] bytes, checked to be `[a-z0-9_]`, starting
/// with a letter, so it is safe in logs, Prometheus labels and CSV exports.
pub type NameString = heapless::String<MAX_NAME_LEN>;

/// Why a string is not acceptable as a wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is {len} bytes long, at most {MAX_NAME_LEN} are allowed")]
    TooLong {
        /// Length of the rejected name in bytes.
        len: usize,
    },
    /// A character outside `[a-z0-9_]`, or a first character that is not a letter.
    #[error("character {ch:?} at byte {at} is not allowed in a name (use [a-z][a-z0-9_]*)")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        at: usize,
    },
}

/// Checks and copies a wire name.
///
/// # Errors
/// [`NameError`] says which rule the name breaks.
pub fn parse_name(name: &str) -> Result<NameString, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    for (at, ch) in name.char_indices() {
        let ok = ch.is_ascii_lowercase() || (at > 0 && (ch.is_ascii_digit() || ch == '_'));
        if !ok {
            return Err(NameError::BadChar { ch, at });
        }
    }
    let mut out = NameString::new();
    // Cannot fail: the length was checked above.
    let _ = out.push_str(name);
    Ok(out)
}

/// A closed set of names whose values have a wire name and a one-byte id.
///
/// Implemented by every enum declared with [`wire_names!`]; lets [`Named`] and the
/// reading containers work over metrics, port metrics, event codes and ops alike.
pub trait WireName: Copy + Eq + fmt::Debug + 'static {
    /// What the set is called in error messages ("metric", "event code", ...).
    const WHAT: &'static str;
    /// Every value, in id order.
    fn all() -> &'static [Self];
    /// The wire name.
    fn as_str(self) -> &'static str;
    /// The stable binary id.
    fn id(self) -> u8;
    /// Looks up a wire name.
    fn from_name(name: &str) -> Option<Self>;
    /// Looks up a binary id.
    fn from_id(id: u8) -> Option<Self>;
}

/// Declares a closed set of wire names with stable ids.
macro_rules! wire_names {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $id:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum $ty {
            $( $(#[$vmeta])* $variant = $id, )+
        }

        impl $ty {
            /// Every value, in id order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)+];

            /// The name used on the wire, in topics and in the docs.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text,)+ }
            }

            /// The stable one-byte id used by the binary encoding.
            #[must_use]
            pub const fn id(self) -> u8 {
                self as u8
            }

            /// Looks up a wire name; `None` for a name this version does not know.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($text => Some($ty::$variant),)+ _ => None }
            }

            /// Looks up a binary id; `None` for an id this version does not know.
            #[must_use]
            pub const fn from_id(id: u8) -> Option<Self> {
                match id { $($id => Some($ty::$variant),)+ _ => None }
            }
        }

        impl $crate::names::WireName for $ty {
            const WHAT: &'static str = $what;
            fn all() -> &'static [Self] { Self::ALL }
            fn as_str(self) -> &'static str { $ty::as_str(self) }
            fn id(self) -> u8 { $ty::id(self) }
            fn from_name(name: &str) -> Option<Self> { $ty::from_name(name) }
            fn from_id(id: u8) -> Option<Self> { $ty::from_id(id) }
        }

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl core::str::FromStr for $ty {
            type Err = $crate::names::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_name(s).ok_or($crate::names::UnknownName { what: $what })
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::names::serialize_closed(*self, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::names::deserialize_closed(d)
            }
        }
    };
}
pub(crate) use wire_names;

/// A name that is not in a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}")]
pub struct UnknownName {
    /// Which set was searched.
    pub what: &'static str,
}

/// Serializes a closed-set value: its name in JSON, its id in binary.
pub(crate) fn serialize_closed<T: WireName, S: Serializer>(v: T, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(v.as_str())
    } else {
        s.serialize_u8(v.id())
    }
}

/// Deserializes a closed-set value, rejecting names and ids it does not know.
pub(crate) fn deserialize_closed<'de, T: WireName, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    match Named::<T>::deserialize(d)? {
        Named::Known(v) => Ok(v),
        Named::Other(name) => Err(de::Error::custom(format_args!(
            "unknown {} `{}`",
            T::WHAT,
            name.as_str()
        ))),
    }
}

/// A name from a closed set, or one this version does not know.
///
/// Nodes are upgraded one at a time, so a gateway meets names from newer
/// firmware. Those are kept (stored, shown, forwarded) rather than rejected;
/// only the rules that know a name act on it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Named<T> {
    /// A name this version knows.
    Known(T),
    /// A well-formed name this version does not know.
    Other(NameString),
}

impl<T: WireName> Named<T> {
    /// Parses a wire name: known if it is in the set, kept as `Other` if it is
    /// merely well-formed.
    ///
    /// # Errors
    /// [`NameError`] if the name is not a well-formed wire name.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        match T::from_name(name) {
            Some(v) => Ok(Named::Known(v)),
            None => parse_name(name).map(Named::Other),
        }
    }

    /// The wire name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Named::Known(v) => v.as_str(),
            Named::Other(s) => s.as_str(),
        }
    }

    /// The known value, if it is one.
    #[must_use]
    pub fn known(&self) -> Option<T> {
        match self {
            Named::Known(v) => Some(*v),
            Named::Other(_) => None,
        }
    }
}

impl<T> From<T> for Named<T> {
    fn from(v: T) -> Self {
        Named::Known(v)
    }
}

impl<T: WireName> fmt::Display for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Binary form of [`Named`]: a one-byte id for known names, the text otherwise.
#[derive(Serialize, Deserialize)]
enum WireNamed<'a> {
    Known(u8),
    Other(&'a str),
}

impl<T: WireName> Serialize for Named<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.as_str())
        } else {
            match self {
                Named::Known(v) => WireNamed::Known(v.id()),
                Named::Other(name) => WireNamed::Other(name.as_str()),
            }
            .serialize(s)
        }
    }
}

impl<'de, T: WireName> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            return d.deserialize_str(NamedVisitor::<T>(core::marker::PhantomData));
        }
        match WireNamed::deserialize(d)? {
            WireNamed::Known(id) => T::from_id(id)
                .map(Named::Known)
                .ok_or_else(|| de::Error::custom(format_args!("unknown {} id {id}", T::WHAT))),
            WireNamed::Other(name) => NamedVisitor::<T>(core::marker::PhantomData).visit_str(name),
        }
    }
}

struct NamedVisitor<T>(core::marker::PhantomData<T>);

impl<T: WireName> Visitor<'_> for NamedVisitor<T> {
    type Value = Named<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} name", T::WHAT)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Named::parse(v).map_err(|e| E::custom(format_args!("bad {} `{v}`: {e}", T::WHAT)))
    }
}
