//! `time_since(p)`: `t - e.time` for the latest event `e` at or before `t`
//! that satisfies `p`; Unknown before the first.

use serde::{Deserialize, Serialize};

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Time;

/// The state of a `time_since` worker: the distinct times of the matching
/// events, sorted (a late event can fall between any two).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSince {
    times: Vec<Time>,
}

impl TimeSince {
    /// Records a matching event at `time`.
    pub fn apply(&mut self, time: Time) {
        if let Err(at) = self.times.binary_search(&time) {
            self.times.insert(at, time);
        }
    }

    /// The duration timeline of a key whose origin is `origin`: Unknown until
    /// the first match, then rising from 0 at every match.
    pub fn timeline(&self, origin: Time) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(self.times.len() + 1);
        out.push(origin, SpanValue::Unknown);
        for &time in &self.times {
            out.push(time.max(origin), SpanValue::Rising { from: 0 });
        }
        out.finish()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.times.capacity() * std::mem::size_of::<Time>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn restarts_at_every_match_in_any_order() {
        let mut s = TimeSince::default();
        for t in [30, 10, 30, 20] {
            s.apply(t);
        }
        let tl = s.timeline(0);
        assert_eq!(
            tl.to_string(),
            "[0,10):unknown [10,20):rising from 0 [20,30):rising from 0 [30,∞):rising from 0"
        );
        assert_eq!(tl.value_at(9), None);
        assert_eq!(tl.value_at(25), Some(Value::Int(5)));
        assert_eq!(tl.value_at(100), Some(Value::Int(70)));
    }
}
