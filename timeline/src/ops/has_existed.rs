//! `has_existed(p)`: true from the first event that satisfies `p` on.

use serde::{Deserialize, Serialize};

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Time;
use crate::value::Value;

/// The state of a `has_existed` worker: the earliest matching event time.
/// Constant size, whatever the number of events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HasExisted {
    first: Option<Time>,
}

impl HasExisted {
    /// Records a matching event at `time`.
    pub fn apply(&mut self, time: Time) {
        self.first = Some(self.first.map_or(time, |f| f.min(time)));
    }

    /// The boolean timeline of a key whose origin is `origin`.
    pub fn timeline(&self, origin: Time) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(2);
        out.push(origin, SpanValue::Known(Value::Bool(false)));
        if let Some(first) = self.first {
            out.push(first.max(origin), SpanValue::Known(Value::Bool(true)));
        }
        out.finish()
    }

    /// The earliest matching event time.
    pub fn first(&self) -> Option<Time> {
        self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_from_the_earliest_match_in_any_order() {
        let mut s = HasExisted::default();
        assert_eq!(s.timeline(0).to_string(), "[0,∞):false");
        s.apply(30);
        s.apply(10);
        s.apply(20);
        assert_eq!(s.timeline(0).to_string(), "[0,10):false [10,∞):true");
        assert_eq!(s.timeline(10).to_string(), "[10,∞):true", "a match at the origin");
    }
}
