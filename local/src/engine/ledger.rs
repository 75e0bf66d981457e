//! Which content of each identified event a key's leaves hold: for every
//! (time, id) of the key, a digest of the content applied, and whether it
//! went to every leaf (the digest's lowest bit). A delivery with the same
//! identity and another content is a conflict that only the key's deliveries
//! can settle (see `timeline::repeats`); one with the same content to every
//! leaf again is a repeat that the log can leave out.

use rustc_hash::FxHashMap;

/// Past this many entries a key's ledger is a hash map; below it a vector
/// in arrival order (16 bytes an entry, no empty buckets: most keys hold a
/// few dozen; a new entry is appended, not shifted into place, and a scan
/// of a few dozen digests is as quick as a binary search).
const SMALL: usize = 64;

/// A key's identified events: identity digest to content digest.
#[derive(Debug, Clone)]
pub enum IdLedger {
    /// In arrival order.
    Small(Vec<(u64, u64)>),
    /// Many entries.
    Large(FxHashMap<u64, u64>),
}

impl Default for IdLedger {
    fn default() -> Self {
        IdLedger::Small(Vec::new())
    }
}

/// What a delivery is to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// An identity not seen before: now recorded.
    New,
    /// The identity with the content recorded.
    Same,
    /// The identity with another content.
    Conflict,
}

/// The lowest bit of a stored digest: delivered to every leaf.
const ALL: u64 = 1;

/// `content` as stored: its lowest bit replaced by `all`.
fn stored(content: u64, all: bool) -> u64 {
    (content & !ALL) | u64::from(all)
}

impl IdLedger {
    /// Looks `identity` up, recording `content` (delivered to every leaf if
    /// `all`) unless it conflicts.
    pub fn observe(&mut self, identity: u64, content: u64, all: bool) -> Seen {
        let entry = match self {
            IdLedger::Small(entries) => match entries.iter().position(|e| e.0 == identity) {
                Some(i) => &mut entries[i].1,
                None => {
                    if entries.len() >= SMALL {
                        let mut map: FxHashMap<u64, u64> = entries.drain(..).collect();
                        map.insert(identity, stored(content, all));
                        *self = IdLedger::Large(map);
                    } else {
                        if entries.len() == entries.capacity() {
                            entries.reserve_exact((entries.len() / 4).max(4));
                        }
                        entries.push((identity, stored(content, all)));
                    }
                    return Seen::New;
                }
            },
            IdLedger::Large(map) => match map.entry(identity) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(stored(content, all));
                    return Seen::New;
                }
            },
        };
        if *entry & !ALL != content & !ALL {
            return Seen::Conflict;
        }
        *entry |= u64::from(all);
        Seen::Same
    }

    /// If `identity` is recorded with `content`: whether it was delivered to
    /// every leaf.
    pub fn holds(&self, identity: u64, content: u64) -> Option<bool> {
        let entry = match self {
            IdLedger::Small(entries) => entries.iter().find(|e| e.0 == identity).map(|e| e.1),
            IdLedger::Large(map) => map.get(&identity).copied(),
        }?;
        (entry & !ALL == content & !ALL).then_some(entry & ALL == ALL)
    }

    /// Records `content` (to every leaf if `all`) as the content of
    /// `identity`, whatever was there.
    pub fn set(&mut self, identity: u64, content: u64, all: bool) {
        let value = stored(content, all);
        match self {
            IdLedger::Small(entries) => match entries.iter_mut().find(|e| e.0 == identity) {
                Some(e) => e.1 = value,
                None => {
                    self.observe(identity, content, all);
                }
            },
            IdLedger::Large(map) => {
                map.insert(identity, value);
            }
        }
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> Vec<(u64, u64)> {
        match self {
            IdLedger::Small(entries) => entries.clone(),
            IdLedger::Large(map) => map.iter().map(|(&k, &v)| (k, v)).collect(),
        }
    }

    /// A ledger of `entries`.
    pub fn from_entries(mut entries: Vec<(u64, u64)>) -> Self {
        if entries.len() > SMALL {
            return IdLedger::Large(entries.into_iter().collect());
        }
        // One entry per identity (the last given).
        entries.reverse();
        let mut seen = rustc_hash::FxHashSet::default();
        entries.retain(|e| seen.insert(e.0));
        entries.reverse();
        entries.shrink_to_fit();
        IdLedger::Small(entries)
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        match self {
            IdLedger::Small(entries) => entries.capacity() * 16,
            IdLedger::Large(map) => map.capacity() * 17,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_same_and_conflict_in_both_representations() {
        let mut ledger = IdLedger::default();
        for i in 0..200u64 {
            let content = i << 1;
            assert_eq!(ledger.observe(i * 7919, content, false), Seen::New);
            assert_eq!(ledger.holds(i * 7919, content), Some(false));
            assert_eq!(ledger.observe(i * 7919, content, true), Seen::Same);
            assert_eq!(ledger.holds(i * 7919, content), Some(true));
            assert_eq!(ledger.observe(i * 7919, content + 2, true), Seen::Conflict);
            assert_eq!(ledger.holds(i * 7919, content + 2), None);
            if i == 10 {
                assert!(matches!(ledger, IdLedger::Small(_)));
            }
        }
        assert!(matches!(ledger, IdLedger::Large(_)));
        ledger.set(7919, 98, false);
        assert_eq!(ledger.holds(7919, 98), Some(false));
        let again = IdLedger::from_entries(ledger.entries());
        let mut a = again.entries();
        let mut b = ledger.entries();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
