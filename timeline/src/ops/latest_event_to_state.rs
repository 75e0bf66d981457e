//! `latest_event_to_state(c)`: the value of column `c` in the latest event at or
//! before `t` that has `c`.

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::Time;
use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Value;

/// One event that set the column, the winner among those at its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Write {
    time: Time,
    id: Option<SmolStr>,
    /// Index into `values`.
    value: u32,
}

/// The state of a `latest_event_to_state` worker: the winning write at each
/// distinct time at which the column was set.
///
/// Writes that repeat the previous value do not change the timeline, but are
/// kept: a late event landing before them would otherwise extend its value past
/// them. [`LatestEventToState::forget_repeats_before`] drops them once no event
/// can arrive that late.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatestEventToState {
    writes: Vec<Write>,
    /// The values written, each stored once when recently seen: state columns
    /// repeat a handful of values.
    values: Vec<Value>,
}

impl LatestEventToState {
    /// Records that an event at `time` with `id` set the column to `value`.
    ///
    /// Among events at one time the winner is the greatest `event_id` in byte
    /// order (no id sorts first), then the last to arrive; an event whose id was
    /// already seen at that time is a repeat and changes nothing.
    pub fn apply(&mut self, time: Time, id: Option<&SmolStr>, value: &Value) {
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
                existing.value = intern(&mut self.values, value);
            }
            return;
        }
        let value = intern(&mut self.values, value);
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
    pub fn timeline(&self, origin: Time) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(self.writes.len() + 1);
        out.push(origin, SpanValue::Unknown);
        let mut previous = None;
        for w in &self.writes {
            if previous != Some(w.value) {
                out.push(w.time, SpanValue::Known(self.values[w.value as usize].clone()));
                previous = Some(w.value);
            }
        }
        out.finish()
    }

    /// The value at `t`, in O(log n).
    pub fn value_at(&self, t: Time) -> Option<Value> {
        let i = self.writes.partition_point(|w| w.time <= t).checked_sub(1)?;
        Some(self.values[self.writes[i].value as usize].clone())
    }

    /// Drops writes before `horizon` that repeat the value before them: after
    /// this, an event earlier than `horizon` may no longer be placed exactly.
    pub fn forget_repeats_before(&mut self, horizon: Time) {
        let values = &self.values;
        let mut previous: Option<&Value> = None;
        self.writes.retain(|w| {
            let value = &values[w.value as usize];
            let repeat = w.time < horizon && previous == Some(value);
            previous = Some(value);
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
        self.writes.capacity() * std::mem::size_of::<Write>() + self.values.capacity() * std::mem::size_of::<Value>()
    }
}

/// The index of `value` in `values`, appending it unless one of the last few
/// entries equals it (so a high-cardinality column costs O(1) per event).
fn intern(values: &mut Vec<Value>, value: &Value) -> u32 {
    const RECENT: usize = 8;
    let recent = values.len().saturating_sub(RECENT);
    if let Some(i) = values[recent..].iter().rposition(|v| v == value) {
        return (recent + i) as u32;
    }
    values.push(value.clone());
    (values.len() - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SmolStr {
        SmolStr::new(s)
    }

    #[test]
    fn holds_latest_value_and_is_unknown_before_first_write() {
        let mut s = LatestEventToState::default();
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
        let mut s = LatestEventToState::default();
        s.apply(10, None, &Value::str("a"));
        s.apply(20, None, &Value::str("a"));
        s.apply(15, None, &Value::str("b"));
        assert_eq!(s.timeline(10).to_string(), r#"[10,15):"a" [15,20):"b" [20,∞):"a""#);
    }

    #[test]
    fn equal_times_order_by_event_id_then_arrival() {
        let mut s = LatestEventToState::default();
        s.apply(5, Some(&id("b")), &Value::str("from-b"));
        s.apply(5, Some(&id("a")), &Value::str("from-a"));
        assert_eq!(s.value_at(5), Some(Value::str("from-b")));
        s.apply(5, Some(&id("c")), &Value::str("from-c"));
        assert_eq!(s.value_at(5), Some(Value::str("from-c")));
        s.apply(5, None, &Value::str("no-id"));
        assert_eq!(s.value_at(5), Some(Value::str("from-c")), "no id sorts first");

        let mut s = LatestEventToState::default();
        s.apply(5, None, &Value::str("first"));
        s.apply(5, None, &Value::str("second"));
        assert_eq!(s.value_at(5), Some(Value::str("second")), "then arrival");
    }

    #[test]
    fn repeated_id_is_ignored() {
        let mut s = LatestEventToState::default();
        s.apply(5, Some(&id("x")), &Value::str("original"));
        s.apply(5, Some(&id("x")), &Value::str("redelivery"));
        assert_eq!(s.value_at(5), Some(Value::str("original")));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn forgetting_repeats_keeps_the_timeline() {
        let mut s = LatestEventToState::default();
        for t in 0..100 {
            s.apply(t * 10, None, &Value::str(if t < 50 { "a" } else { "b" }));
        }
        let before = s.timeline(0);
        s.forget_repeats_before(1000);
        assert_eq!(s.len(), 2);
        assert_eq!(s.timeline(0), before);
    }
}
