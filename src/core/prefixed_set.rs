//! Members of the form `<prefix><canonical decimal id>` (`user:42`, see
//! `canonical::parse_prefixed`): a small table of the prefixes a campaign
//! uses, each with its own id container (`NumberSet`, roaring as for plain
//! ids), so `user:<id>` costs what a plain id costs.
//!
//! The table holds at most `MAX_PREFIXES` prefixes, taken in the order they
//! first appear. Once it is full, a member with yet another prefix goes to
//! the string container instead and the table is marked `saturated`. The
//! invariant the member set relies on: a prefixed id whose prefix is in the
//! table is in that prefix's container, never among the strings; and while
//! the table is not saturated, no prefixed id is among the strings at all.
//! So a prefix leaves the table (when its last id goes) only while the
//! table is not saturated, and none is added once it is: either would need
//! a scan of the strings.

use super::canonical::parse_number;
use super::number_set::NumberSet;
use super::relocate::{self, Moved, Relocator};

/// Most prefixes kept in one set's table: "a few per campaign", and a
/// lookup compares the prefix against each of them.
pub(crate) const MAX_PREFIXES: usize = 16;

#[derive(Clone, Default)]
pub(crate) struct PrefixedSet {
    /// The prefixes and their ids, in the order they were first seen.
    prefixes: Vec<(Box<[u8]>, NumberSet)>,
    /// Ids over all prefixes, so `len` is O(1).
    len: usize,
    /// A prefixed id went to the strings because the table was full.
    saturated: bool,
}

/// Where a prefixed id belongs.
enum Slot {
    /// In the container of the table entry at this index.
    Table(usize),
    /// Among the strings (the table is full and lacks its prefix).
    Strings,
    /// Nowhere yet: its prefix is not in the table, which has room (so no
    /// such member is stored anywhere).
    Absent,
}

impl PrefixedSet {
    /// Units of a relocation walk (see `core::relocate`): those of each
    /// prefix's ids in turn.
    pub(crate) fn relocation_units(&self) -> usize {
        self.prefixes
            .iter()
            .map(|(_, ids)| ids.relocation_units())
            .sum()
    }

    /// Relocates one unit; the first unit of a prefix also moves the
    /// prefix's bytes, unit 0 the table itself.
    pub(crate) fn relocate_unit(
        &mut self,
        mut unit: usize,
        relocator: &mut dyn Relocator,
        moved: &mut Moved,
        renew: bool,
    ) {
        if unit == 0 {
            moved.relocated(relocate::vec(&mut self.prefixes, relocator));
        }
        for (prefix, ids) in &mut self.prefixes {
            let units = ids.relocation_units();
            if unit < units {
                if unit == 0 {
                    moved.relocated(relocate::boxed_slice(prefix, relocator));
                }
                ids.relocate_unit(unit, relocator, moved, renew);
                return;
            }
            unit -= units;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Where members of `prefix` are (see [`Slot`]).
    #[inline]
    fn slot(&self, prefix: &[u8]) -> Slot {
        for (at, (known, _)) in self.prefixes.iter().enumerate() {
            if **known == *prefix {
                return Slot::Table(at);
            }
        }
        if self.saturated {
            Slot::Strings
        } else {
            Slot::Absent
        }
    }

    /// The table entry and id of `member` if it is a prefix of the table
    /// followed by a canonical id: then it is in that container or absent.
    /// Otherwise (`None`) it is a string if anything: a member of another
    /// prefix is among the strings or nowhere (see the module comment), so
    /// a lookup needs no parse of a prefix the table does not hold.
    #[inline]
    pub fn find(&self, member: &[u8]) -> Option<(usize, u64)> {
        let first = member.first();
        for (at, (prefix, _)) in self.prefixes.iter().enumerate() {
            // The first byte inline: a set of strings may hold 16 prefixes
            // that a random member rarely starts with.
            if prefix.first() != first {
                continue;
            }
            if let Some(digits) = member.strip_prefix(&**prefix) {
                // A prefix ends in punctuation: at most one can be followed
                // by digits only.
                if let Some(id) = parse_number(digits) {
                    return Some((at, id));
                }
            }
        }
        None
    }

    #[inline]
    pub fn contains_at(&self, at: usize, id: u64) -> bool {
        self.prefixes[at].1.contains(id)
    }

    /// Adds `id` under `prefix`; `None` if the prefix has no room in the
    /// table (the caller keeps the member as a string; from then on the
    /// table is saturated).
    pub fn insert(&mut self, prefix: &[u8], id: u64) -> Option<bool> {
        let at = match self.slot(prefix) {
            Slot::Table(at) => at,
            Slot::Strings => return None,
            Slot::Absent if self.prefixes.len() == MAX_PREFIXES => {
                self.saturated = true;
                return None;
            }
            Slot::Absent => {
                self.prefixes.push((prefix.into(), NumberSet::default()));
                self.prefixes.len() - 1
            }
        };
        let added = self.prefixes[at].1.insert(id);
        self.len += usize::from(added);
        Some(added)
    }

    /// Removes `id` from the container at `at`; true if it was there.
    pub fn remove_at(&mut self, at: usize, id: u64) -> bool {
        let numbers = &mut self.prefixes[at].1;
        if !numbers.remove(id) {
            return false;
        }
        self.len -= 1;
        if numbers.len() == 0 && !self.saturated {
            self.prefixes.remove(at);
        }
        true
    }

    /// Every (prefix, id), by prefix.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        self.prefixes
            .iter()
            .flat_map(|(prefix, numbers)| numbers.iter().map(move |id| (&**prefix, id)))
    }

    /// The non-empty containers with their prefixes.
    pub fn containers(&self) -> impl Iterator<Item = (&[u8], &NumberSet)> + '_ {
        self.prefixes
            .iter()
            .filter(|(_, numbers)| numbers.len() > 0)
            .map(|(prefix, numbers)| (&**prefix, numbers))
    }

    /// Number of non-empty containers.
    pub fn container_count(&self) -> usize {
        self.containers().count()
    }

    /// Whether some prefixed ids may be among the strings.
    pub fn is_saturated(&self) -> bool {
        self.saturated
    }

    /// Adds a decoded container: `prefix` must be new, `numbers` non-empty,
    /// the table not full (checked by the caller, which reports corrupt
    /// data otherwise).
    pub fn push_container(
        &mut self,
        prefix: &[u8],
        numbers: NumberSet,
    ) -> Result<(), &'static str> {
        if self.prefixes.len() == MAX_PREFIXES {
            return Err("more prefixes than a table holds");
        }
        if numbers.len() == 0 {
            return Err("an empty prefix container");
        }
        if matches!(self.slot(prefix), Slot::Table(_)) {
            return Err("a prefix stored twice");
        }
        self.len += numbers.len();
        self.prefixes.push((prefix.into(), numbers));
        Ok(())
    }

    pub fn heap_bytes(&self) -> usize {
        self.prefixes.capacity() * std::mem::size_of::<(Box<[u8]>, NumberSet)>()
            + self
                .prefixes
                .iter()
                .map(|(prefix, numbers)| prefix.len() + numbers.heap_bytes())
                .sum::<usize>()
    }

    /// Same prefixed ids, wherever the tables keep them (for set equality
    /// of two unsaturated sets).
    pub fn same_ids(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .containers()
                .all(|(prefix, numbers)| match other.slot(prefix) {
                    Slot::Table(at) => other.prefixes[at].1 == *numbers,
                    _ => false,
                })
    }
}
