//! `latest_event_to_state(c)`: the value of column `c` in the latest event at or
//! before `t` that has `c`.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Time;
use crate::value::Value;

/// One event that set the column, the winner among those at its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Write {
    time: Time,
    id: Option<SmolStr>,
    /// Index into the node's [`ValueTable`].
    value: u32,
}

/// The distinct values a `latest_event_to_state` node has seen, each stored
/// once for all keys: state columns repeat a handful of values ("play",
/// "buffer", "CDN1") across millions of keys, so keys hold 4-byte indices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<Value>", into = "Vec<Value>")]
pub struct ValueTable {
    values: Vec<Value>,
    index: FxHashMap<ValueKey, u32>,
}

/// A hashable image of a [`Value`] (floats by bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ValueKey {
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(SmolStr),
}

impl From<&Value> for ValueKey {
    fn from(v: &Value) -> Self {
        match v {
            Value::Bool(b) => ValueKey::Bool(*b),
            Value::Int(i) => ValueKey::Int(*i),
            Value::Float(x) => ValueKey::Float(x.to_bits()),
            Value::Str(s) => ValueKey::Str(s.clone()),
        }
    }
}

impl ValueTable {
    /// The index of `value`, added if new.
    pub fn intern(&mut self, value: &Value) -> u32 {
        let key = ValueKey::from(value);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.values.len() as u32;
        self.values.push(value.clone());
        self.index.insert(key, i);
        i
    }

    /// The value at `index`.
    pub fn get(&self, index: u32) -> &Value {
        &self.values[index as usize]
    }

    /// Number of distinct values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value was interned.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl From<Vec<Value>> for ValueTable {
    fn from(values: Vec<Value>) -> Self {
        let index = values
            .iter()
            .enumerate()
            .map(|(i, v)| (ValueKey::from(v), i as u32))
            .collect();
        ValueTable { values, index }
    }
}

impl From<ValueTable> for Vec<Value> {
    fn from(table: ValueTable) -> Self {
        table.values
    }
}

/// The state of a `latest_event_to_state` worker: the winning write at each
/// distinct time at which the column was set.
///
/// Writes that repeat the previous value do not change the timeline, but are
/// kept: a late event landing before them would otherwise extend its value past
/// them. [`LatestEventToState::forget_repeats_before`] drops them once no event
/// can arrive that late.
///
/// Values are indices into a [`ValueTable`] that the caller keeps per node
/// and passes in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatestEventToState {
    writes: Vec<Write>,
}

impl LatestEventToState {
    /// Records that an event at `time` with `id` set the column to `value`.
    ///
    /// Among events at one time the winner is the greatest `event_id` in byte
    /// order (no id sorts first), then the last to arrive; an event whose id was
    /// already seen at that time is a repeat and changes nothing.
    pub fn apply(&mut self, values: &mut ValueTable, time: Time, id: Option<&SmolStr>, value: &Value) {
        let pos = match self.writes.last() {
            Some(last) if last.time < time => self.writes.len(),
            None => 0,
            _ => self.writes.partition_point(|w| w.time < time),
        };
        if let Some(existing) = self.writes.get_mut(pos)
            && existing.time == time
        {
            let replace = match (id, &existing.id) {
                (Some(new), Some(old)) => new > old,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => true,
            };
            if replace {
                existing.id = id.cloned();
                existing.value = values.intern(value);
            }
            return;
        }
        let value = values.intern(value);
        if self.writes.len() == self.writes.capacity() {
            // Grow by a quarter, not double: most keys hold a few dozen writes.
            self.writes.reserve_exact((self.writes.len() / 4).max(4));
        }
        self.writes.insert(
            pos,
            Write {
                time,
                id: id.cloned(),
                value,
            },
        );
    }

    /// The state timeline of a key whose origin is `origin`.
    pub fn timeline(&self, values: &ValueTable, origin: Time) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(self.writes.len() + 1);
        out.push(origin, SpanValue::Unknown);
        let mut previous = None;
        for w in &self.writes {
            if previous != Some(w.value) {
                out.push(w.time, SpanValue::Known(values.get(w.value).clone()));
                previous = Some(w.value);
            }
        }
        out.finish()
    }

    /// The value at `t`, in O(log n).
    pub fn value_at(&self, values: &ValueTable, t: Time) -> Option<Value> {
        let i = self.writes.partition_point(|w| w.time <= t).checked_sub(1)?;
        Some(values.get(self.writes[i].value).clone())
    }

    /// Drops writes before `horizon` that repeat the value before them: after
    /// this, an event earlier than `horizon` may no longer be placed exactly.
    pub fn forget_repeats_before(&mut self, horizon: Time) {
        let mut previous: Option<u32> = None;
        self.writes.retain(|w| {
            let repeat = w.time < horizon && previous == Some(w.value);
            previous = Some(w.value);
            !repeat
        });
        self.writes.shrink_to_fit();
    }

    /// Number of writes held.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether no event has set the column.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.writes.capacity() * std::mem::size_of::<Write>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SmolStr {
        SmolStr::new(s)
    }

    /// A state with its own value table, for tests.
    #[derive(Default)]
    struct Leaf {
        state: LatestEventToState,
        values: ValueTable,
    }

    impl Leaf {
        fn apply(&mut self, time: Time, id: Option<&SmolStr>, value: &Value) {
            self.state.apply(&mut self.values, time, id, value);
        }
        fn timeline(&self, origin: Time) -> Timeline {
            self.state.timeline(&self.values, origin)
        }
        fn value_at(&self, t: Time) -> Option<Value> {
            self.state.value_at(&self.values, t)
        }
    }

    #[test]
    fn holds_latest_value_and_is_unknown_before_first_write() {
        let mut s = Leaf::default();
        s.apply(10, None, &Value::str("play"));
        s.apply(20, None, &Value::str("buffer"));
        assert_eq!(
            s.timeline(0).to_string(),
            r#"[0,10):unknown [10,20):"play" [20,∞):"buffer""#
        );
        assert_eq!(s.value_at(9), None);
        assert_eq!(s.value_at(20), Some(Value::str("buffer")));
    }

    #[test]
    fn late_event_between_repeats_is_exact() {
        let mut s = Leaf::default();
        s.apply(10, None, &Value::str("a"));
        s.apply(20, None, &Value::str("a"));
        s.apply(15, None, &Value::str("b"));
        assert_eq!(s.timeline(10).to_string(), r#"[10,15):"a" [15,20):"b" [20,∞):"a""#);
    }

    #[test]
    fn equal_times_order_by_event_id_then_arrival() {
        let mut s = Leaf::default();
        s.apply(5, Some(&id("b")), &Value::str("from-b"));
        s.apply(5, Some(&id("a")), &Value::str("from-a"));
        assert_eq!(s.value_at(5), Some(Value::str("from-b")));
        s.apply(5, Some(&id("c")), &Value::str("from-c"));
        assert_eq!(s.value_at(5), Some(Value::str("from-c")));
        s.apply(5, None, &Value::str("no-id"));
        assert_eq!(s.value_at(5), Some(Value::str("from-c")), "no id sorts first");

        let mut s = Leaf::default();
        s.apply(5, None, &Value::str("first"));
        s.apply(5, None, &Value::str("second"));
        assert_eq!(s.value_at(5), Some(Value::str("second")), "then arrival");
    }

    #[test]
    fn repeated_id_is_ignored() {
        let mut s = Leaf::default();
        s.apply(5, Some(&id("x")), &Value::str("original"));
        s.apply(5, Some(&id("x")), &Value::str("redelivery"));
        assert_eq!(s.value_at(5), Some(Value::str("original")));
        assert_eq!(s.state.len(), 1);
    }

    #[test]
    fn forgetting_repeats_keeps_the_timeline() {
        let mut s = Leaf::default();
        for t in 0..100 {
            s.apply(t * 10, None, &Value::str(if t < 50 { "a" } else { "b" }));
        }
        let before = s.timeline(0);
        s.state.forget_repeats_before(1000);
        assert_eq!(s.state.len(), 2);
        assert_eq!(s.timeline(0), before);
    }

    #[test]
    fn value_tables_survive_serialization() {
        let mut table = ValueTable::default();
        let (a, b) = (table.intern(&Value::str("a")), table.intern(&Value::Float(1.5)));
        assert_eq!(table.intern(&Value::str("a")), a);
        let again: ValueTable = serde_json::from_str(&serde_json::to_string(&table).unwrap()).unwrap();
        assert_eq!(again.get(b), &Value::Float(1.5));
        let mut again = again;
        assert_eq!(again.intern(&Value::str("a")), a);
        assert_eq!(again.len(), 2);
    }
}
