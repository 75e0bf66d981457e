//! `true_within(b, d)`: whether `b` was true at some instant of the last `d`
//! milliseconds (`max(o, t - d + 1) ..= t`): true if at some, false if false
//! at all, Unknown otherwise.

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::{Time, Value};

/// Each true stretch `[a, b)` of the input makes the output true on
/// `[a, b + d - 1)`; each Unknown stretch makes it Unknown on the same
/// widening where it is not true; the rest is false. Unknown before the
/// origin.
pub fn true_within(input: &Timeline, d: i64) -> Timeline {
    let d = d.max(1);
    let spans = input.spans();
    let Some(origin) = input.origin() else {
        return Timeline::unknown();
    };
    let widen = |i: usize| input.end_of(i).map(|end| end.saturating_add(d - 1));
    // Widened true and Unknown stretches, each list sorted by start.
    let mut trues: Vec<(Time, Option<Time>)> = Vec::new();
    let mut unknowns: Vec<(Time, Option<Time>)> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        let list = match span.value.as_bool() {
            Some(true) => &mut trues,
            Some(false) => continue,
            None => &mut unknowns,
        };
        push_merged(list, span.start, widen(i));
    }
    let mut cuts: Vec<Time> = vec![origin];
    for &(start, end) in trues.iter().chain(&unknowns) {
        cuts.push(start);
        cuts.extend(end);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let inside = |list: &[(Time, Option<Time>)], t: Time| {
        let i = list.partition_point(|&(start, _)| start <= t);
        i > 0 && list[i - 1].1.is_none_or(|end| t < end)
    };
    let mut out = TimelineBuilder::with_capacity(cuts.len());
    for t in cuts {
        let value = if inside(&trues, t) {
            SpanValue::Known(Value::Bool(true))
        } else if inside(&unknowns, t) {
            SpanValue::Unknown
        } else {
            SpanValue::Known(Value::Bool(false))
        };
        out.push(t, value);
    }
    out.finish()
}

/// Adds `[start, end)` to disjoint intervals sorted by start, merging it with
/// the last one when they overlap or touch (starts come in order).
fn push_merged(list: &mut Vec<(Time, Option<Time>)>, start: Time, end: Option<Time>) {
    if let Some(last) = list.last_mut()
        && last.1.is_none_or(|e| e >= start)
    {
        last.1 = match (last.1, end) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
        return;
    }
    list.push((start, end));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::bools;

    #[test]
    fn widens_true_then_unknown_stretches() {
        let b = bools(&[
            (0, Some(false)),
            (10, Some(true)),
            (12, Some(false)),
            (30, None),
            (31, Some(false)),
        ]);
        // True at 10 and 11: true on [10, 11 + 5) with d = 5; Unknown at 30: [30, 35).
        assert_eq!(
            true_within(&b, 5).to_string(),
            "[0,10):false [10,16):true [16,30):false [30,35):unknown [35,∞):false"
        );
        assert_eq!(true_within(&b, 1), b, "a window of one instant is the input");
    }
}
