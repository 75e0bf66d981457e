//! The operators, one per file.
//!
//! Leaf operators ([`latest_event_to_state`], [`has_existed`],
//! [`has_existed_within`], [`time_since`], [`sequence`], [`absent_after`])
//! are incremental states that take events one at a time,
//! in any order, and render a [`Timeline`](crate::Timeline) on demand. Each state
//! is a join of its events: applying an event twice, or events in another order,
//! gives the same state, which is how late and repeated events are exact.
//!
//! Derived operators ([`compare`], [`and`], [`or`], [`not`], [`duration_where`],
//! [`duration_in_cur_state`], [`count_where`], [`previous`], [`true_within`]) are pure functions from their children's timelines
//! to a timeline, linear in the number of spans.

pub mod absent_after;
pub mod and;
pub mod compare;
pub mod count_where;
pub mod duration_in_cur_state;
pub mod duration_where;
pub mod has_existed;
pub mod has_existed_within;
pub mod latest_event_to_state;
pub mod matches;
pub mod not;
pub mod or;
pub mod previous;
pub mod sequence;
pub mod time_since;
pub mod true_within;
pub mod window;

/// Helpers of the operators' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::timeline::{Span, SpanValue, Timeline};
    use crate::value::Time;

    /// A boolean timeline from `(start, value)` pairs (`None`: Unknown).
    pub(crate) fn bools(spans: &[(Time, Option<bool>)]) -> Timeline {
        Timeline::from_spans(spans.iter().map(|&(start, b)| Span {
            start,
            value: SpanValue::from_bool(b),
        }))
        .unwrap()
    }
}
