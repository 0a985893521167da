//! How the engine lays its devices out in memory, so that a message touches
//! few cache lines and few of them wait for another (docs/performance.md,
//! "The alerting core"). With 100,000 devices messaging in random order,
//! every line a message reads is a miss, and a miss whose address comes out
//! of another miss costs the two latencies one after the other.
//!
//! - [`Index`]: device key hash → (device, arena slot), in 64-byte buckets: a
//!   lookup reads one line, and because it yields the arena slot as well as
//!   the device, the record and the rule state are fetched side by side
//!   rather than the one after the other.
//! - [`Arena`]: the values and rule instances of every device of one class,
//!   a fixed stride per device in two flat vectors: no allocation, allocator
//!   header or pointer per device.
//! - [`Id`]: a device id kept in the record itself when short (up to 22 bytes:
//!   `EL-3`, `P-12`; the wire allows 48), so comparing it on lookup reads no
//!   other line.

use crate::instance::{Inst, Val};

/// A device's id as the record keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Id {
    /// Up to [`Id::INLINE`] bytes, in place.
    Short { len: u8, bytes: [u8; Id::INLINE] },
    /// Longer ones (pseudo-devices named after a bus path, say).
    Long(Box<str>),
}

impl Id {
    /// As much as fits beside the tag in the 24 bytes the `Long` variant
    /// needs anyway.
    const INLINE: usize = 22;

    pub(crate) fn new(id: &str) -> Id {
        let b = id.as_bytes();
        match u8::try_from(b.len()) {
            Ok(len) if b.len() <= Id::INLINE => {
                let mut bytes = [0; Id::INLINE];
                bytes[..b.len()].copy_from_slice(b);
                Id::Short { len, bytes }
            }
            _ => Id::Long(id.into()),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Id::Short { len, bytes } => &bytes[..usize::from(*len)],
            Id::Long(s) => s.as_bytes(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Always valid: the bytes were copied whole from a `&str`.
            Id::Short { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Id::Long(s) => s,
        }
    }

    pub(crate) fn is(&self, id: &str) -> bool {
        self.as_bytes() == id.as_bytes()
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    key: u64,
    device: u32,
    slot: u32,
}

/// `device` of a free entry (no device has this index: it is the engine's
/// "none").
const FREE: u32 = u32::MAX;

const EMPTY: Entry = Entry {
    key: 0,
    device: FREE,
    slot: 0,
};

/// Four entries, one cache line: probing within it costs no other miss.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct Bucket([Entry; 4]);

/// Open addressing with linear probing over entries of (key hash, device,
/// slot). Equal hashes (a true 64-bit collision) simply sit in the same probe
/// run, so no chain through the records is needed. Devices are never removed
/// one by one, so a free entry ends every search. The keys are a keyed
/// `SipHash`, so nobody outside can pick ids that crowd one run.
#[derive(Debug, Default)]
pub(crate) struct Index {
    buckets: Vec<Bucket>,
    len: usize,
}

impl Index {
    /// The first device with `key` that `is` accepts (given the device and
    /// its slot), and its slot.
    pub(crate) fn find(&self, key: u64, mut is: impl FnMut(u32, u32) -> bool) -> Option<(u32, u32)> {
        let entries = self.buckets.len() * 4;
        if entries == 0 {
            return None;
        }
        let mask = entries - 1;
        // Truncation is the point: the low bits of a SipHash pick the bucket.
        #[allow(clippy::cast_possible_truncation)]
        let mut at = (key as usize & mask) & !3;
        loop {
            let e = self.buckets[at >> 2].0[at & 3];
            if e.device == FREE {
                return None;
            }
            if e.key == key && is(e.device, e.slot) {
                return Some((e.device, e.slot));
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds a device (the caller has checked it is not there yet).
    pub(crate) fn insert(&mut self, key: u64, device: u32, slot: u32) {
        // At most 7/8 full: runs stay mostly within their home line.
        if (self.len + 1) * 8 > self.buckets.len() * 4 * 7 {
            self.grow();
        }
        self.place(Entry { key, device, slot });
        self.len += 1;
    }

    pub(crate) fn clear(&mut self) {
        *self = Index::default();
    }

    fn place(&mut self, e: Entry) {
        let mask = self.buckets.len() * 4 - 1;
        #[allow(clippy::cast_possible_truncation)]
        let mut at = (e.key as usize & mask) & !3;
        while self.buckets[at >> 2].0[at & 3].device != FREE {
            at = (at + 1) & mask;
        }
        self.buckets[at >> 2].0[at & 3] = e;
    }

    fn grow(&mut self) {
        let n = (self.buckets.len() * 2).max(4);
        let old = std::mem::replace(&mut self.buckets, vec![Bucket([EMPTY; 4]); n]);
        for e in old.iter().flat_map(|b| b.0) {
            if e.device != FREE {
                self.place(e);
            }
        }
    }
}

/// The values and rule instances of every device of one class, `values` and
/// `rules` per device. The rule stride is the largest profile of the class
/// seen so far (overrides only ever disable rules, so that is the pack's);
/// a device whose profile has fewer rules uses the front of its stride.
#[derive(Debug)]
pub(crate) struct Arena {
    values: usize,
    rules: usize,
    len: usize,
    vals: Vec<Val>,
    insts: Vec<Inst>,
}

impl Arena {
    /// An empty arena for `values` metrics per device.
    pub(crate) fn new(values: usize) -> Arena {
        Arena {
            values,
            rules: 0,
            len: 0,
            vals: Vec::new(),
            insts: Vec::new(),
        }
    }

    /// Room for one more device with `rules` instances, fresh; its slot.
    pub(crate) fn push(&mut self, rules: usize) -> u32 {
        if rules > self.rules {
            self.widen(rules);
        }
        self.vals.resize(self.vals.len() + self.values, Val::default());
        self.insts.resize(self.insts.len() + self.rules, Inst::default());
        self.len += 1;
        u32::try_from(self.len - 1).unwrap_or(u32::MAX)
    }

    /// Moves every device's instances to a wider stride (a profile with more
    /// rules than any before); the new ones start fresh.
    fn widen(&mut self, rules: usize) {
        let mut insts = Vec::with_capacity(self.len * rules);
        let old = std::mem::take(&mut self.insts);
        let mut old = old.into_iter();
        for _ in 0..self.len {
            insts.extend(old.by_ref().take(self.rules));
            insts.resize(insts.len() + rules - self.rules, Inst::default());
        }
        self.insts = insts;
        self.rules = rules;
    }

    /// Forgets every device (a restore starts over).
    pub(crate) fn clear(&mut self) {
        *self = Arena::new(self.values);
    }

    /// Reads a word from every cache line of a device's state and returns
    /// them mixed, for `black_box`: called as soon as the index has given
    /// the slot, it starts those misses alongside the record's instead of
    /// after it.
    pub(crate) fn touch(&self, slot: u32) -> i64 {
        let (v, i) = (slot as usize * self.values, slot as usize * self.rules);
        let vals = self.vals.get(v..v + self.values).unwrap_or_default();
        let insts = self.insts.get(i..i + self.rules).unwrap_or_default();
        // Two elements (48 and 64 bytes) apart: no line is skipped.
        let a = vals.iter().step_by(2).chain(vals.last()).fold(0, |h, x| h ^ x.at);
        insts.iter().step_by(2).chain(insts.last()).fold(a, |h, x| h ^ x.since)
    }

    /// A device's values.
    pub(crate) fn values(&self, slot: u32) -> &[Val] {
        let at = slot as usize * self.values;
        self.vals.get(at..at + self.values).unwrap_or_default()
    }

    /// A device's first `n` instances (its profile's).
    pub(crate) fn rules(&self, slot: u32, n: usize) -> &[Inst] {
        let at = slot as usize * self.rules;
        self.insts.get(at..at + n.min(self.rules)).unwrap_or_default()
    }

    /// Both, to change.
    pub(crate) fn state_mut(&mut self, slot: u32, n: usize) -> (&mut [Val], &mut [Inst]) {
        let (v, i) = (slot as usize * self.values, slot as usize * self.rules);
        (
            self.vals.get_mut(v..v + self.values).unwrap_or_default(),
            self.insts.get_mut(i..i + n.min(self.rules)).unwrap_or_default(),
        )
    }

    /// How many devices it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::{Arena, Id, Index};
    use crate::instance::{Inst, Phase, Val};

    #[test]
    fn short_ids_are_kept_inline_and_long_ones_boxed() {
        for s in ["", "P1", "EL-3", "abcdefghijklmnopqrstuv"] {
            let id = Id::new(s);
            assert!(matches!(id, Id::Short { .. }), "{s}");
            assert_eq!(id.as_str(), s);
            assert!(id.is(s));
            assert!(!id.is("P2"));
        }
        let long = "bus:/dev/serial/by-id/usb-FTDI_FT232R-if00";
        let id = Id::new(long);
        assert!(matches!(id, Id::Long(_)));
        assert_eq!(id.as_str(), long);
        assert!(id.is(long));
        assert!(!Id::new("P1").is("P1 "));
        assert_eq!(Id::new("化学-1").to_string(), "化学-1");
        assert_eq!(size_of::<Id>(), 24);
    }

    #[test]
    fn the_index_finds_what_it_holds_and_grows() {
        let mut ix = Index::default();
        assert_eq!(ix.find(7, |_, _| true), None);
        // Keys that all land in the same bucket, and beyond the first grow.
        for d in 0..1000u32 {
            ix.insert(u64::from(d) << 20, d, d + 5);
        }
        for d in 0..1000u32 {
            assert_eq!(ix.find(u64::from(d) << 20, |_, _| true), Some((d, d + 5)));
        }
        assert_eq!(ix.find(3, |_, _| true), None);
        assert_eq!(ix.find(1000 << 20, |_, _| true), None);
        // At most 7/8 full, and no more than twice the room needed.
        assert!(ix.buckets.len() * 4 * 7 >= 1000 * 8 && ix.buckets.len() * 4 * 7 < 1000 * 16);
        ix.clear();
        assert_eq!(ix.find(0, |_, _| true), None);
    }

    #[test]
    fn equal_hashes_are_told_apart_by_the_caller() {
        let mut ix = Index::default();
        for d in 0..20u32 {
            ix.insert(42, d, 100 + d);
        }
        for d in 0..20u32 {
            assert_eq!(ix.find(42, |x, _| x == d), Some((d, 100 + d)));
        }
        assert_eq!(ix.find(42, |x, _| x == 20), None);
    }

    fn inst(since: i64) -> Inst {
        Inst {
            phase: Phase::Pending,
            since,
            ..Inst::default()
        }
    }

    #[test]
    fn the_arena_keeps_each_device_apart_as_it_grows() {
        let mut a = Arena::new(2);
        let slots: Vec<u32> = (0..100).map(|_| a.push(3)).collect();
        assert_eq!(slots, (0..100).collect::<Vec<_>>());
        assert_eq!(a.len(), 100);
        for &s in &slots {
            let (v, i) = a.state_mut(s, 3);
            assert_eq!((v.len(), i.len()), (2, 3));
            assert!(v.iter().all(|x| x.v.is_nan()) && i.iter().all(|x| *x == Inst::default()));
            v[1].set(f64::from(s), 1);
            i[2] = inst(i64::from(s));
        }
        for &s in &slots {
            assert_eq!(a.values(s)[1].v, f64::from(s));
            assert!(a.values(s)[0].v.is_nan());
            assert_eq!(a.rules(s, 3)[2], inst(i64::from(s)));
            assert_eq!(a.rules(s, 3)[1], Inst::default());
        }
    }

    #[test]
    fn a_profile_with_fewer_rules_uses_the_front_of_its_stride() {
        let mut a = Arena::new(1);
        let full = a.push(3);
        let less = a.push(1);
        assert_eq!(a.rules(less, 1).len(), 1);
        assert_eq!(a.state_mut(less, 1).1.len(), 1);
        a.state_mut(less, 1).1[0] = inst(9);
        assert_eq!(a.rules(full, 3), &[Inst::default(), Inst::default(), Inst::default()]);
        assert_eq!(a.rules(less, 1), &[inst(9)]);
    }

    #[test]
    fn a_wider_profile_moves_everyone_and_keeps_their_state() {
        let mut a = Arena::new(1);
        let first = a.push(2);
        let second = a.push(2);
        a.state_mut(first, 2).1[1] = inst(1);
        a.state_mut(second, 2).1[0] = inst(2);
        a.state_mut(second, 2).0[0] = Val {
            v: 4.0,
            at: 5,
            changed: 5,
        };
        let wide = a.push(4);
        assert_eq!(a.rules(first, 2), &[Inst::default(), inst(1)]);
        assert_eq!(a.rules(second, 2), &[inst(2), Inst::default()]);
        assert_eq!(a.values(second)[0].v, 4.0);
        assert_eq!(a.rules(wide, 4).len(), 4);
        a.state_mut(wide, 4).1[3] = inst(3);
        assert_eq!(a.rules(second, 2), &[inst(2), Inst::default()]);
        assert_eq!(a.rules(wide, 4)[3], inst(3));
        // Asking for more than the stride gives the stride, never a neighbour's.
        assert_eq!(a.rules(first, 9).len(), 4);
    }

    #[test]
    fn a_class_without_values_or_rules_costs_nothing() {
        let mut a = Arena::new(0);
        let s = a.push(0);
        assert!(a.values(s).is_empty() && a.rules(s, 0).is_empty());
        assert!(a.vals.is_empty() && a.insts.is_empty());
    }
}
