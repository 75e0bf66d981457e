//! `sequence(p1, ..., pn, within(d))`: true from the first instant at which
//! events `e1 <= e2 <= ... <= en` (in event order) have happened, `ei`
//! satisfying `pi`, with `en.time - e1.time <= d`.

use serde::{Deserialize, Serialize};

use super::matches::{EventKey, Matches};
use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::{Time, Value};

/// The state of a `sequence` worker: the events that matched each step, and
/// the earliest completion they give. Once complete, events after the
/// completion can never make it earlier, so they are not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    steps: Vec<Matches>,
    completed: Option<Time>,
}

impl Sequence {
    /// Records an event at `key` that satisfies the steps whose bits are set
    /// in `matched` (bit `i` for step `i`) of a sequence of `n` (at most 32)
    /// steps within `within` ms.
    pub fn apply(&mut self, n: usize, within: i64, key: EventKey, matched: u32) {
        if matched == 0 || self.completed.is_some_and(|c| key.time > c) {
            return;
        }
        if self.steps.len() < n {
            self.steps.resize_with(n, Matches::default);
        }
        for (step, matches) in self.steps.iter_mut().enumerate() {
            if matched & (1 << step) != 0 {
                matches.insert(key.clone());
            }
        }
        if self.steps.iter().any(Matches::is_empty) {
            // A step nothing matched yet: no chain can be complete.
            return;
        }
        if let Some(done) = self.earliest_completion(within)
            && self.completed.is_none_or(|c| done < c)
        {
            self.completed = Some(done);
            for step in &mut self.steps {
                step.forget_after(done);
            }
        }
    }

    /// The earliest time at which some chain of matches completes: for each
    /// first step, the earliest next match of every later step (which gives
    /// the earliest end of any chain from there).
    fn earliest_completion(&self, within: i64) -> Option<Time> {
        let (first, rest) = self.steps.split_first()?;
        let mut best: Option<Time> = None;
        for start in first.keys() {
            if best.is_some_and(|b| start.time >= b) {
                break;
            }
            let mut at = start;
            let mut complete = true;
            for step in rest {
                match step.first_from(at) {
                    Some(next) => at = next,
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if !complete {
                // No chain from this start, nor from any later one.
                break;
            }
            if at.time.saturating_sub(start.time) <= within && best.is_none_or(|b| at.time < b) {
                best = Some(at.time);
            }
        }
        best
    }

    /// The boolean timeline of a key whose origin is `origin`.
    pub fn timeline(&self, origin: Time) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(2);
        out.push(origin, SpanValue::Known(Value::Bool(false)));
        if let Some(done) = self.completed {
            out.push(done.max(origin), SpanValue::Known(Value::Bool(true)));
        }
        out.finish()
    }

    /// Matching events kept, over all steps.
    pub fn len(&self) -> usize {
        self.steps.iter().map(Matches::len).sum()
    }

    /// Whether no event matched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.steps.capacity() * std::mem::size_of::<Matches>()
            + self.steps.iter().map(Matches::heap_bytes).sum::<usize>()
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
    fn completes_at_the_earliest_chain_within_the_bound_in_any_order() {
        // view at 0 and 50, cart at 70, pay at 80; within 40: only the view at 50 starts a chain.
        let events = [(0, "v", 0), (50, "v2", 0), (70, "c", 1), (80, "p", 2)];
        let mut orders = vec![events.to_vec()];
        let mut reversed = events.to_vec();
        reversed.reverse();
        orders.push(reversed);
        for order in orders {
            let mut s = Sequence::default();
            for (t, id, step) in order {
                s.apply(3, 40, key(t, id), 1 << step);
            }
            assert_eq!(s.timeline(0).to_string(), "[0,80):false [80,∞):true");
        }
        // Exactly the bound apart: in time.
        let mut s = Sequence::default();
        s.apply(2, 10, key(0, "a"), 0b1);
        s.apply(2, 10, key(10, "b"), 0b10);
        assert_eq!(s.timeline(0).to_string(), "[0,10):false [10,∞):true");
        // Too far apart: never.
        let mut s = Sequence::default();
        s.apply(2, 10, key(0, "a"), 0b1);
        s.apply(2, 10, key(11, "b"), 0b10);
        assert_eq!(s.timeline(0).to_string(), "[0,∞):false");
    }

    #[test]
    fn ties_and_one_event_for_two_steps() {
        let mut s = Sequence::default();
        // One event satisfying both steps is a chain e1 <= e2.
        s.apply(2, 5, key(3, "x"), 0b11);
        assert_eq!(s.timeline(0).to_string(), "[0,3):false [3,∞):true");
        // At one instant, the id orders: "b" before "a" is not in order.
        let mut s = Sequence::default();
        s.apply(2, 5, key(3, "b"), 0b1);
        s.apply(2, 5, key(3, "a"), 0b10);
        assert_eq!(s.timeline(0).to_string(), "[0,∞):false");
        // Events without ids at one instant are tied: in order both ways.
        let mut s = Sequence::default();
        s.apply(2, 5, EventKey::new(3, None), 0b10);
        s.apply(2, 5, EventKey::new(3, None), 0b1);
        assert_eq!(s.timeline(0).to_string(), "[0,3):false [3,∞):true");
    }

    #[test]
    fn a_late_event_makes_the_completion_earlier_and_later_events_are_dropped() {
        let mut s = Sequence::default();
        s.apply(2, 100, key(10, "a"), 0b1);
        s.apply(2, 100, key(50, "b"), 0b10);
        s.apply(2, 100, key(60, "c"), 0b1);
        assert_eq!(s.len(), 2, "the match at 60 cannot help");
        s.apply(2, 100, key(20, "d"), 0b10);
        assert_eq!(s.timeline(0).to_string(), "[0,20):false [20,∞):true");
    }
}
