//! `absent_after(p, q, d)`: true from `e.time + d` on, for the earliest event
//! `e` satisfying `p` that no later event satisfying `q` followed within `d`
//! (an order started but not completed in time).

use serde::{Deserialize, Serialize};

use super::matches::{EventKey, Matches};
use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::{Time, Value};

/// The state of an `absent_after` worker: the events that satisfied `p`
/// (starts) and those that satisfied `q` (completions). A late completion
/// can undo a start, so both are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsentAfter {
    starts: Matches,
    completions: Matches,
    /// The operator's window, in ms.
    within: i64,
}

impl AbsentAfter {
    /// Records an event at `key` that satisfies `p` (`start`) and/or `q`
    /// (`completion`), for window `within` ms.
    pub fn apply(&mut self, key: EventKey, start: bool, completion: bool, within: i64) {
        self.within = within.max(1);
        if start && completion {
            self.starts.insert(key.clone());
            self.completions.insert(key);
        } else if start {
            self.starts.insert(key);
        } else if completion {
            self.completions.insert(key);
        }
    }

    /// The boolean timeline of a key whose origin is `origin`: false, then
    /// true from the first instant some start has gone the window without a
    /// completion after it.
    pub fn timeline(&self, origin: Time) -> Timeline {
        let d = self.within;
        let mut alarm: Option<Time> = None;
        for start in self.starts.keys() {
            let Some(due) = start.time.checked_add(d) else {
                // Never due: the window outlasts time itself.
                break;
            };
            if alarm.is_some_and(|a| due >= a) {
                break;
            }
            let completed = self.completions.first_after(start).is_some_and(|c| c.time <= due);
            if !completed {
                alarm = Some(due);
            }
        }
        let mut out = TimelineBuilder::with_capacity(2);
        out.push(origin, SpanValue::Known(Value::Bool(false)));
        if let Some(due) = alarm {
            out.push(due.max(origin), SpanValue::Known(Value::Bool(true)));
        }
        out.finish()
    }

    /// Matching events kept.
    pub fn len(&self) -> usize {
        self.starts.len() + self.completions.len()
    }

    /// Whether no event matched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.starts.heap_bytes() + self.completions.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol_str::SmolStr;

    fn key(time: Time, id: &str) -> EventKey {
        EventKey::new(time, Some(&SmolStr::new(id)))
    }

    #[test]
    fn an_order_not_paid_within_the_window_raises_at_its_deadline() {
        let mut s = AbsentAfter::default();
        s.apply(key(0, "o1"), true, false, 10);
        s.apply(key(5, "p1"), false, true, 10);
        s.apply(key(20, "o2"), true, false, 10);
        // o1 paid at 5 (within 10); o2 not paid by 30.
        assert_eq!(s.timeline(0).to_string(), "[0,30):false [30,∞):true");
        // A late payment at 30 (e.time + d, inclusive) completes o2.
        s.apply(key(30, "p2"), false, true, 10);
        assert_eq!(s.timeline(0).to_string(), "[0,∞):false");
        // A payment before the order does not complete it.
        let mut s = AbsentAfter::default();
        s.apply(key(3, "p"), false, true, 10);
        s.apply(key(4, "o"), true, false, 10);
        assert_eq!(s.timeline(0).to_string(), "[0,14):false [14,∞):true");
    }

    #[test]
    fn an_event_does_not_complete_itself_and_ties_do_not_complete() {
        let mut s = AbsentAfter::default();
        s.apply(key(0, "x"), true, true, 10);
        assert_eq!(s.timeline(0).to_string(), "[0,10):false [10,∞):true");
        let mut s = AbsentAfter::default();
        s.apply(EventKey::new(0, None), true, false, 10);
        s.apply(EventKey::new(0, None), false, true, 10);
        assert_eq!(s.timeline(0).to_string(), "[0,10):false [10,∞):true");
    }
}
