//! Repeated deliveries of an identified event: which one *is* the event.
//!
//! Deliveries with the same key, time and id are one event (delivery is at
//! least once). When their contents differ, the contract picks the delivery
//! whose canonical JSON (fields sorted by name, no spaces) is least in byte
//! order, for every operator alike and whatever the order of arrival.
//!
//! Leaf states are joins and cannot take an event back, so a runtime that
//! finds a second content for an id (see [`content_digest`]) rebuilds the
//! key's leaves from its deliveries, resolved by [`resolve`].

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use rustc_hash::FxHashMap;
use smol_str::SmolStr;

use crate::event::Event;
use crate::value::{Time, Value};

/// The names of the key, time and id fields, as the event's stream names
/// them: they are part of the canonical JSON.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// The key field.
    pub key: &'a str,
    /// The time field.
    pub time: &'a str,
    /// The id field.
    pub id: &'a str,
}

impl Default for Fields<'static> {
    fn default() -> Self {
        Fields {
            key: crate::event::DEFAULT_KEY_FIELD,
            time: "time",
            id: "event_id",
        }
    }
}

/// `event` as canonical JSON: one object, fields sorted by name in byte
/// order, no spaces; integers as integers, floats as JSON numbers with a
/// fraction or exponent (`2.0`), strings escaped as JSON escapes them.
pub fn canonical_json(event: &Event, fields: Fields<'_>) -> String {
    let serde_json::Value::Object(object) = event.to_json_with(fields.key, fields.time, fields.id) else {
        unreachable!("an event renders as an object")
    };
    let mut entries: Vec<(String, serde_json::Value)> = object.into_iter().collect();
    // Sorted here, whatever order the map keeps its keys in.
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::from("{");
    for (i, (name, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(name.as_str()).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// Of two deliveries of one identified event, the order the contract decides
/// by: `Less` when `a` is the event rather than `b`.
pub fn compare_deliveries(a: &Event, b: &Event, fields: Fields<'_>) -> Ordering {
    canonical_json(a, fields).cmp(&canonical_json(b, fields))
}

/// A 64-bit digest of `event`'s content (its columns, in name order): equal
/// for deliveries with equal content, whatever their field order. `2` and
/// `2.0` are different content.
pub fn content_digest(event: &Event) -> u64 {
    // SipHash with fixed keys: stable across runs (digests are snapshotted).
    let mut h = std::hash::DefaultHasher::new();
    hash_content(event, &mut h);
    h.finish()
}

/// Feeds `event`'s content (its columns, in name order) to `h`.
pub fn hash_content(event: &Event, h: &mut impl Hasher) {
    let mut columns: Vec<&(SmolStr, Value)> = event.columns.iter().collect();
    columns.sort_by(|a, b| a.0.cmp(&b.0));
    columns.len().hash(h);
    for (name, value) in columns {
        name.as_str().hash(h);
        match value {
            Value::Bool(b) => (0u8, *b).hash(h),
            Value::Int(i) => (1u8, *i).hash(h),
            Value::Float(f) => (2u8, f.to_bits()).hash(h),
            Value::Str(s) => (3u8, s.as_str()).hash(h),
        }
    }
}

/// A 64-bit digest of an identified event's identity within its key: its
/// time and id.
pub fn identity_digest(time: Time, id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    time.hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

/// One key's deliveries resolved: every delivery without an id, in order;
/// of the deliveries of each identified event, the one that is the event (at
/// the place of the first), with the tags of all of them (where each was
/// delivered), in order of first delivery and without repeats.
pub fn resolve<T: PartialEq>(deliveries: Vec<(Event, T)>, fields: Fields<'_>) -> Vec<(Event, Vec<T>)> {
    let mut out: Vec<(Event, Vec<T>)> = Vec::with_capacity(deliveries.len());
    let mut first: FxHashMap<(Time, SmolStr), usize> = FxHashMap::default();
    for (event, tag) in deliveries {
        let Some(id) = event.id.clone() else {
            out.push((event, vec![tag]));
            continue;
        };
        match first.get(&(event.time, id.clone())) {
            None => {
                first.insert((event.time, id), out.len());
                out.push((event, vec![tag]));
            }
            Some(&at) => {
                let (winner, tags) = &mut out[at];
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
                if compare_deliveries(&event, winner, fields) == Ordering::Less {
                    *winner = event;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventParser;

    fn ev(line: &str) -> Event {
        EventParser::default().parse(line).unwrap()
    }

    #[test]
    fn canonical_json_sorts_fields_and_keeps_number_kinds() {
        let e = ev(r#"{"z":1,"session_id":"k","a":2.0,"time":5,"event_id":"e","s":"x\"y"}"#);
        assert_eq!(
            canonical_json(&e, Fields::default()),
            r#"{"a":2.0,"event_id":"e","s":"x\"y","session_id":"k","time":5,"z":1}"#
        );
    }

    #[test]
    fn the_least_canonical_json_wins_in_any_order() {
        let a = ev(r#"{"session_id":"k","time":5,"event_id":"e","state":"buffer"}"#);
        let b = ev(r#"{"session_id":"k","time":5,"event_id":"e","state":"play"}"#);
        let c = ev(r#"{"session_id":"k","time":5,"event_id":"e","cdn":"CDN1"}"#);
        for order in [[&a, &b, &c], [&c, &b, &a], [&b, &a, &c], [&b, &c, &a]] {
            let deliveries = order.iter().map(|e| ((*e).clone(), ())).collect();
            let resolved = resolve(deliveries, Fields::default());
            assert_eq!(resolved.len(), 1);
            // `{"cdn":...` sorts before `{"event_id":...`.
            assert_eq!(resolved[0].0, c);
        }
    }

    #[test]
    fn events_without_id_and_other_ids_or_times_are_all_kept() {
        let deliveries = [
            r#"{"session_id":"k","time":5,"x":1}"#,
            r#"{"session_id":"k","time":5,"x":1}"#,
            r#"{"session_id":"k","time":5,"event_id":"e","x":1}"#,
            r#"{"session_id":"k","time":6,"event_id":"e","x":1}"#,
            r#"{"session_id":"k","time":5,"event_id":"f","x":1}"#,
            r#"{"session_id":"k","time":5,"event_id":"e","x":1}"#,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, l)| (ev(l), i % 2))
        .collect();
        let resolved = resolve(deliveries, Fields::default());
        assert_eq!(resolved.len(), 5);
        // The repeat of (5, "e") adds its tag to the first delivery's.
        assert_eq!(resolved[2].1, vec![0, 1]);
    }

    #[test]
    fn digests_tell_content_apart_but_not_field_order() {
        let a = ev(r#"{"session_id":"k","time":5,"event_id":"e","x":1,"s":"a"}"#);
        let b = ev(r#"{"s":"a","x":1,"event_id":"e","time":5,"session_id":"k"}"#);
        assert_eq!(content_digest(&a), content_digest(&b));
        for other in [
            r#"{"session_id":"k","time":5,"event_id":"e","x":2,"s":"a"}"#,
            r#"{"session_id":"k","time":5,"event_id":"e","x":1.0,"s":"a"}"#,
            r#"{"session_id":"k","time":5,"event_id":"e","x":1}"#,
        ] {
            assert_ne!(content_digest(&a), content_digest(&ev(other)), "{other}");
        }
        assert_ne!(identity_digest(5, "e"), identity_digest(6, "e"));
        assert_ne!(identity_digest(5, "e"), identity_digest(5, "f"));
    }
}
