//! `count_where(b)`: how many times `b` has become true, up to and including
//! `t`; `count_where(b, tumbling(w))` and `count_where(b, sliding(w))`: the
//! same within a window.

use super::window::{MAX_WINDOW_SPANS, Window, true_stretches, window_start};
use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::{Time, Value};

/// The number of stretches of `input` that are true and began at or before
/// `t`: it steps up by one where `input` turns true (from false or Unknown),
/// and counts a stretch that is true at the origin. Unknown before the origin.
pub fn count_where(input: &Timeline) -> Timeline {
    let mut out = TimelineBuilder::with_capacity(input.len());
    let mut count: i64 = 0;
    let mut was_true = false;
    for span in input.spans() {
        let is_true = span.value.as_bool() == Some(true);
        if is_true && !was_true {
            count += 1;
        }
        was_true = is_true;
        out.push(span.start, SpanValue::Known(Value::Int(count)));
    }
    out.finish()
}

/// The true stretches of `input` that meet the window ending at `t` (its
/// instants `[max(o, ws), t]`, `ws` the tumbling window's start or `t - w + 1`
/// for a sliding one): a stretch true at the window's first instant counts
/// once, as does each that begins inside it.
pub fn count_where_in(input: &Timeline, window: Window) -> Timeline {
    let Some(origin) = input.origin() else {
        return Timeline::unknown();
    };
    let w = window.width();
    let trues = true_stretches(input);
    match window {
        Window::Sliding { .. } => {
            // A stretch [a, c) counts at t iff a <= t < c + w - 1.
            let mut changes: Vec<(Time, i64)> = Vec::with_capacity(trues.len() * 2);
            for &(a, c) in &trues {
                changes.push((a, 1));
                if let Some(c) = c {
                    changes.push((c.saturating_add(w - 1), -1));
                }
            }
            changes.sort_unstable();
            let mut out = TimelineBuilder::with_capacity(changes.len() + 1);
            out.push(origin, SpanValue::Known(Value::Int(0)));
            let mut count = 0;
            let mut i = 0;
            while i < changes.len() {
                let t = changes[i].0;
                while i < changes.len() && changes[i].0 == t {
                    count += changes[i].1;
                    i += 1;
                }
                out.push(t.max(origin), SpanValue::Known(Value::Int(count)));
            }
            out.finish()
        }
        Window::Tumbling { .. } => {
            let mut out = TimelineBuilder::new();
            let mut next = 0;
            let mut from = origin;
            loop {
                if out.len() > MAX_WINDOW_SPANS {
                    out.push(from, SpanValue::Unknown);
                    break;
                }
                while trues.get(next).is_some_and(|(_, e)| e.is_some_and(|e| e <= from)) {
                    next += 1;
                }
                let Some(&(first, first_end)) = trues.get(next) else {
                    out.push(from, SpanValue::Known(Value::Int(0)));
                    break;
                };
                let end = window_start(from, w).saturating_add(w);
                if first >= end {
                    // Nothing true before the window of the next stretch.
                    out.push(from, SpanValue::Known(Value::Int(0)));
                    from = window_start(first, w);
                    continue;
                }
                // The stretch holding the window's first instant counts at once.
                let mut count = i64::from(first <= from);
                out.push(from, SpanValue::Known(Value::Int(count)));
                if first <= from && first_end.is_none() {
                    // True for ever: 1 in every window from here on.
                    break;
                }
                let mut i = next + usize::from(first <= from);
                while let Some(&(a, _)) = trues.get(i).filter(|(a, _)| *a < end) {
                    count += 1;
                    out.push(a, SpanValue::Known(Value::Int(count)));
                    i += 1;
                }
                if end == Time::MAX {
                    break;
                }
                from = end;
            }
            out.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::bools;

    #[test]
    fn windowed_counts_restart_per_window_and_count_a_stretch_at_the_start_once() {
        // True on [2, 4), [6, 12), [15, ∞); windows of 5.
        let b = bools(&[
            (0, Some(false)),
            (2, Some(true)),
            (4, Some(false)),
            (6, Some(true)),
            (12, Some(false)),
            (15, Some(true)),
        ]);
        let tumbling = count_where_in(&b, Window::Tumbling { width_ms: 5 });
        assert_eq!(tumbling.to_string(), "[0,2):0 [2,5):1 [5,6):0 [6,∞):1");
        let sliding = count_where_in(&b, Window::Sliding { width_ms: 5 });
        // At t the instants [t - 4, t]: [2, 4) counts on [2, 8); [6, 12) on [6, 16).
        assert_eq!(
            sliding.to_string(),
            "[0,2):0 [2,6):1 [6,8):2 [8,15):1 [15,16):2 [16,∞):1"
        );
    }

    #[test]
    fn counts_every_turn_to_true() {
        let b = bools(&[
            (0, Some(false)),
            (10, Some(true)),
            (14, None),
            (20, Some(true)),
            (25, Some(false)),
            (30, Some(true)),
        ]);
        let c = count_where(&b);
        assert_eq!(c.to_string(), "[0,10):0 [10,20):1 [20,30):2 [30,∞):3");
        assert_eq!(c.value_at(-1), None);
        assert_eq!(c.value_at(9), Some(Value::Int(0)));
        assert_eq!(c.value_at(10), Some(Value::Int(1)));
    }

    #[test]
    fn true_at_the_origin_counts_once() {
        let c = count_where(&bools(&[(5, Some(true))]));
        assert_eq!(c.to_string(), "[5,∞):1");
        assert!(count_where(&Timeline::unknown()).is_empty());
    }
}
