//! Changes of a timeline: what a late or new event changed in a result.
//!
//! A runtime that pushes results out (a changes stream, an alert) compares a
//! key's result before and after some events with [`diff`]. The answer is
//! exact and minimal: every stretch of time where the two timelines differ,
//! cut where either changes value, each with the value it had and the value
//! it has now. Nothing outside those stretches changed, so applying the
//! changes to the old timeline gives the new one ([`patch`]).
//!
//! Because every operator is causal (an event at `t` changes nothing before
//! `t`, except a key's origin moving earlier), a new event of a live key
//! gives changes from its time on, and a late event gives changes from the
//! instant it applies from: the past it rewrote.

use serde::Serialize;

use crate::timeline::{Span, SpanValue, Timeline, for_each_piece, value_before};
use crate::value::{Time, Value};

/// One stretch of time where a timeline changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The first instant with the new value.
    pub from: Time,
    /// Where the stretch ends (exclusive): from there the timeline is as it
    /// was. `None`: it goes on for ever.
    pub until: Option<Time>,
    /// The value at `from` before (rising and falling values as at `from`).
    pub old: SpanValue,
    /// The value at `from` now.
    pub new: SpanValue,
}

impl Change {
    /// The value before, at `from` (`None`: Unknown).
    pub fn old_value(&self) -> Option<Value> {
        self.old.at_offset(0)
    }

    /// The value now, at `from` (`None`: Unknown).
    pub fn new_value(&self) -> Option<Value> {
        self.new.at_offset(0)
    }
}

/// How a span value moves with time: `"rising"`, `"falling"`, or `None` for
/// constant and Unknown values.
pub fn trend(value: &SpanValue) -> Option<&'static str> {
    match value {
        SpanValue::Rising { .. } => Some("rising"),
        SpanValue::Falling { .. } => Some("falling"),
        SpanValue::Known(_) | SpanValue::Unknown => None,
    }
}

/// The changes that turn `old` into `new`, in order of time: each maximal
/// piece between consecutive span starts of either timeline where their
/// values differ.
pub fn diff(old: &Timeline, new: &Timeline) -> Vec<Change> {
    let (a, b) = (old.spans(), new.spans());
    let mut changes: Vec<Change> = Vec::new();
    for_each_piece(a, b, |t, i, j| {
        let before = value_before(a, i, t);
        let now = value_before(b, j, t);
        if let Some(open) = changes.last_mut().filter(|c| c.until.is_none()) {
            // The piece before this one differed: it ends here.
            open.until = Some(t);
        }
        if !before.continues_as(0, &now) {
            changes.push(Change {
                from: t,
                until: None,
                old: before,
                new: now,
            });
        }
    });
    // A change still open at the last piece goes on for ever.
    changes
}

/// `old` with `changes` applied (the inverse of [`diff`]).
pub fn patch(old: &Timeline, changes: &[Change]) -> Timeline {
    let mut starts: Vec<Time> = old.spans().iter().map(|s| s.start).collect();
    for c in changes {
        starts.push(c.from);
        starts.extend(c.until);
    }
    starts.sort_unstable();
    starts.dedup();
    let mut builder = crate::timeline::TimelineBuilder::with_capacity(starts.len());
    for t in starts {
        let value = match changes.iter().find(|c| c.from <= t && c.until.is_none_or(|u| t < u)) {
            Some(c) => c.new.shifted(t.saturating_sub(c.from)),
            None => old.span_value_at(t),
        };
        builder.push(t, value);
    }
    let patched = builder.finish();
    // Leading Unknown spans say nothing: a timeline is Unknown before its
    // first span anyway.
    let spans: Vec<Span> = patched
        .spans()
        .iter()
        .skip_while(|s| s.value == SpanValue::Unknown)
        .cloned()
        .collect();
    Timeline::from_spans(spans).expect("starts stay in order")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tl(spans: &[(Time, SpanValue)]) -> Timeline {
        Timeline::from_spans(spans.iter().map(|(start, value)| Span {
            start: *start,
            value: value.clone(),
        }))
        .unwrap()
    }

    fn b(v: bool) -> SpanValue {
        SpanValue::Known(Value::Bool(v))
    }

    #[test]
    fn a_new_event_changes_the_future_from_its_time() {
        let old = tl(&[(0, b(false))]);
        let new = tl(&[(0, b(false)), (100, b(true))]);
        assert_eq!(
            diff(&old, &new),
            vec![Change {
                from: 100,
                until: None,
                old: b(false),
                new: b(true)
            }]
        );
    }

    #[test]
    fn a_late_event_that_clears_an_alert_gives_the_stretch_it_cleared() {
        let old = tl(&[(0, b(false)), (100, b(true)), (300, b(false))]);
        let new = tl(&[(0, b(false))]);
        assert_eq!(
            diff(&old, &new),
            vec![Change {
                from: 100,
                until: Some(300),
                old: b(true),
                new: b(false)
            }]
        );
    }

    #[test]
    fn equal_timelines_have_no_changes_and_rising_spans_compare_by_value() {
        let old = tl(&[(0, SpanValue::Rising { from: 0 })]);
        let same = tl(&[(0, SpanValue::Rising { from: 0 })]);
        assert!(diff(&old, &same).is_empty());
        // A duration that stops growing at 50.
        let stopped = tl(&[
            (0, SpanValue::Rising { from: 0 }),
            (50, SpanValue::Known(Value::Int(50))),
        ]);
        assert_eq!(
            diff(&old, &stopped),
            vec![Change {
                from: 50,
                until: None,
                old: SpanValue::Rising { from: 50 },
                new: SpanValue::Known(Value::Int(50))
            }]
        );
    }

    #[test]
    fn an_origin_moved_earlier_changes_from_unknown() {
        let old = tl(&[(100, b(true))]);
        let new = tl(&[(40, b(false)), (100, b(true))]);
        let changes = diff(&old, &new);
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].from, changes[0].until), (40, Some(100)));
        assert_eq!(
            (changes[0].old_value(), changes[0].new_value()),
            (None, Some(Value::Bool(false)))
        );
    }

    fn span_value() -> impl Strategy<Value = SpanValue> {
        prop_oneof![
            Just(SpanValue::Unknown),
            any::<bool>().prop_map(b),
            (0i64..3).prop_map(|i| SpanValue::Known(Value::Int(i))),
            (0i64..20).prop_map(|from| SpanValue::Rising { from }),
            (0i64..20).prop_map(|from| SpanValue::Falling { from }),
        ]
    }

    fn timeline() -> impl Strategy<Value = Timeline> {
        prop::collection::vec((0i64..60, span_value()), 0..8).prop_map(|mut spans| {
            spans.sort_by_key(|(t, _)| *t);
            spans.dedup_by_key(|(t, _)| *t);
            let mut builder = crate::timeline::TimelineBuilder::new();
            for (t, v) in spans {
                builder.push(t, v);
            }
            builder.finish()
        })
    }

    proptest! {
        /// The changes are exactly where the timelines differ: patching the
        /// old timeline gives the new one at every instant, every change
        /// differs at its start, and the changes neither overlap nor touch
        /// out of order.
        #[test]
        fn diff_is_exact(old in timeline(), new in timeline()) {
            let changes = diff(&old, &new);
            let patched = patch(&old, &changes);
            for t in -2..70 {
                prop_assert_eq!(patched.value_at(t), new.value_at(t), "at {}", t);
                let inside = changes.iter().any(|c| c.from <= t && c.until.is_none_or(|u| t < u));
                if !inside {
                    prop_assert_eq!(old.value_at(t), new.value_at(t), "outside the changes at {}", t);
                }
            }
            for c in &changes {
                prop_assert!(!c.old.continues_as(0, &c.new));
                prop_assert_eq!(c.old.clone(), old.span_value_at(c.from));
                prop_assert_eq!(c.new.clone(), new.span_value_at(c.from));
                prop_assert!(c.until.is_none_or(|u| u > c.from));
            }
            for w in changes.windows(2) {
                prop_assert!(w[0].until.is_some_and(|u| u <= w[1].from));
            }
            prop_assert_eq!(diff(&old, &old), vec![]);
        }
    }
}
