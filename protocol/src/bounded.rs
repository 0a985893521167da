//! A vector with a protocol limit: fixed capacity on a node, heap-backed on
//! the gateway, the same limit and the same bytes on the wire either way.
//!
//! A node has no heap, so a message must carry room for every limit: a
//! `Data` with 24 metrics and 12 ports of 8 is 7.9 KiB. The gateway decodes
//! hundreds of thousands of messages a second, each holding a handful of
//! readings, and every move of 7.9 KiB costs more than parsing the message.
//! With the `alloc` feature the same type is a `Vec` that refuses to grow
//! past the limit, so a message is as large as what it holds.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

#[cfg(not(feature = "alloc"))]
type Inner<T, const N: usize> = heapless::Vec<T, N>;
#[cfg(feature = "alloc")]
type Inner<T, const N: usize> = alloc::vec::Vec<T>;

/// At most `N` values of `T`.
#[derive(Clone, PartialEq)]
pub struct Bounded<T, const N: usize>(Inner<T, N>);

impl<T, const N: usize> Bounded<T, N> {
    /// An empty vector.
    #[must_use]
    pub const fn new() -> Self {
        Bounded(Inner::new())
    }

    /// Appends a value; gives it back when `N` are already there.
    ///
    /// # Errors
    /// The value, when the vector is full.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        #[cfg(not(feature = "alloc"))]
        {
            self.0.push(value)
        }
        #[cfg(feature = "alloc")]
        {
            if self.0.len() >= N {
                return Err(value);
            }
            self.0.push(value);
            Ok(())
        }
    }

    /// The limit.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// A copy of `values`.
    ///
    /// # Errors
    /// The number of values, when it is over the limit.
    pub fn from_slice(values: &[T]) -> Result<Self, usize>
    where
        T: Clone,
    {
        let mut out = Self::new();
        for v in values {
            out.push(v.clone()).map_err(|_| values.len())?;
        }
        Ok(out)
    }
}

/// Collects like `heapless::Vec` does.
///
/// # Panics
/// When the iterator yields more than `N` values; use
/// [`Bounded::push`] where the count comes from outside.
impl<T, const N: usize> FromIterator<T> for Bounded<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut out = Self::new();
        for v in iter {
            assert!(out.push(v).is_ok(), "more than {N} values collected into a Bounded");
        }
        out
    }
}

impl<T, const N: usize> Default for Bounded<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Deref for Bounded<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T, const N: usize> DerefMut for Bounded<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<'a, T, const N: usize> IntoIterator for &'a Bounded<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for Bounded<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl<T: Serialize, const N: usize> Serialize for Bounded<T, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Seq<T, N> {
            type Value = Bounded<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a sequence of at most {N} elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Bounded::new();
                while let Some(v) = seq.next_element()? {
                    if out.push(v).is_err() {
                        return Err(de::Error::invalid_length(N + 1, &self));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Seq(PhantomData))
    }
}
