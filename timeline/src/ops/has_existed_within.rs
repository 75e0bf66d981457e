//! `has_existed_within(p, d)`: true at `t` iff some event `e` satisfying `p` has
//! `e.time <= t < e.time + d`.

use serde::{Deserialize, Serialize};

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Time;
use crate::value::Value;

/// The state of a `has_existed_within` worker: the union of the windows
/// `[e.time, e.time + d)` of matching events, as sorted, disjoint, non-touching
/// intervals. Its size is the number of value changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HasExistedWithin {
    windows: Vec<(Time, Time)>,
}

impl HasExistedWithin {
    /// Records a matching event at `time` whose window lasts `within` ms (> 0).
    /// A window reaching past `i64::MAX` never closes.
    pub fn apply(&mut self, time: Time, within: i64) {
        let (start, end) = (time, time.saturating_add(within.max(1)));
        // Windows that overlap or touch [start, end) merge with it.
        let first = self.windows.partition_point(|w| w.1 < start);
        let last = self.windows.partition_point(|w| w.0 <= end);
        if first < last {
            let merged = (start.min(self.windows[first].0), end.max(self.windows[last - 1].1));
            self.windows.splice(first..last, [merged]);
        } else {
            self.windows.insert(first, (start, end));
        }
    }

    /// The boolean timeline of a key whose origin is `origin`.
    pub fn timeline(&self, origin: Time) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(self.windows.len() * 2 + 1);
        out.push(origin, SpanValue::Known(Value::Bool(false)));
        for &(start, end) in &self.windows {
            out.push(start.max(origin), SpanValue::Known(Value::Bool(true)));
            // An end that saturated at i64::MAX lies beyond every instant.
            if end > origin && end < Time::MAX {
                out.push(end, SpanValue::Known(Value::Bool(false)));
            }
        }
        out.finish()
    }

    /// Number of disjoint windows held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no event has matched.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.windows.capacity() * std::mem::size_of::<(Time, Time)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_half_open_and_merge() {
        let mut s = HasExistedWithin::default();
        s.apply(20, 5);
        assert_eq!(s.timeline(0).to_string(), "[0,20):false [20,25):true [25,∞):false");
        s.apply(25, 5);
        assert_eq!(s.len(), 1, "touching windows merge");
        assert_eq!(s.timeline(0).to_string(), "[0,20):false [20,30):true [30,∞):false");
        s.apply(0, 3);
        s.apply(1, 3);
        s.apply(22, 1);
        assert_eq!(
            s.timeline(0).to_string(),
            "[0,4):true [4,20):false [20,30):true [30,∞):false"
        );
        s.apply(3, 18);
        assert_eq!(s.timeline(0).to_string(), "[0,30):true [30,∞):false");
    }

    #[test]
    fn windows_past_the_end_of_time_stay_open() {
        let mut s = HasExistedWithin::default();
        s.apply(crate::value::MAX_TIME, i64::MAX);
        let t = s.timeline(0);
        assert_eq!(t.value_at(crate::value::MAX_TIME), Some(Value::Bool(true)));
        assert_eq!(
            t.value_at(i64::MAX),
            Some(Value::Bool(true)),
            "e.time <= t < e.time + d"
        );
        let mut s = HasExistedWithin::default();
        s.apply(crate::value::MAX_TIME - 10, 5);
        assert_eq!(
            s.timeline(0).value_at(crate::value::MAX_TIME - 5),
            Some(Value::Bool(false))
        );
    }
}
