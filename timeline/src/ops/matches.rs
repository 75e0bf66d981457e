//! The matching events a leaf keeps when its timeline depends on how they
//! are ordered (`time_since`, `sequence`, `absent_after`).
//!
//! Events are ordered by time, then `event_id` (events without one first).
//! Two events without an id at the same time are *tied*: neither is before
//! the other, whatever order they arrived in, so that arrival order never
//! changes a result (the contract orders them by arrival; see
//! `docs/semantics.md`).

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::value::Time;

/// Where an event stands in the event order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    /// Event time.
    pub time: Time,
    /// Its `event_id`, if any (`None` sorts first).
    pub id: Option<SmolStr>,
}

impl EventKey {
    /// The key of an event at `time` with `id`.
    pub fn new(time: Time, id: Option<&SmolStr>) -> Self {
        EventKey { time, id: id.cloned() }
    }
}

/// A set of event keys, sorted, each once: a join of the events applied
/// (the same event twice, or in any order, gives the same set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matches {
    keys: Vec<EventKey>,
}

impl Matches {
    /// Adds an event's key.
    pub fn insert(&mut self, key: EventKey) {
        if let Err(at) = self.keys.binary_search(&key) {
            self.keys.insert(at, key);
        }
    }

    /// The keys, in event order.
    pub fn keys(&self) -> &[EventKey] {
        &self.keys
    }

    /// The first key at or after `from` (ties included).
    pub fn first_from(&self, from: &EventKey) -> Option<&EventKey> {
        self.keys.get(self.keys.partition_point(|k| k < from))
    }

    /// The first key strictly after `after` (ties excluded).
    pub fn first_after(&self, after: &EventKey) -> Option<&EventKey> {
        self.keys.get(self.keys.partition_point(|k| k <= after))
    }

    /// Drops the keys later than `time`.
    pub fn forget_after(&mut self, time: Time) {
        let keep = self.keys.partition_point(|k| k.time <= time);
        self.keys.truncate(keep);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no event matched.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<EventKey>()
            + self
                .keys
                .iter()
                .filter_map(|k| k.id.as_ref())
                .filter(|id| id.is_heap_allocated())
                .map(|id| id.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(time: Time, id: Option<&str>) -> EventKey {
        EventKey::new(time, id.map(SmolStr::new).as_ref())
    }

    #[test]
    fn ordered_by_time_then_id_without_ids_first_and_each_once() {
        let mut m = Matches::default();
        for k in [
            key(5, Some("b")),
            key(5, None),
            key(1, Some("z")),
            key(5, Some("a")),
            key(5, None),
        ] {
            m.insert(k);
        }
        assert_eq!(
            m.keys(),
            [key(1, Some("z")), key(5, None), key(5, Some("a")), key(5, Some("b"))]
        );
        assert_eq!(m.first_from(&key(5, None)), Some(&key(5, None)), "ties are at or after");
        assert_eq!(m.first_after(&key(5, None)), Some(&key(5, Some("a"))));
        assert_eq!(m.first_after(&key(5, Some("b"))), None);
        m.forget_after(4);
        assert_eq!(m.keys(), [key(1, Some("z"))]);
    }
}
