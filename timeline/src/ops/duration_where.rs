//! `duration_where(b)`: total milliseconds in `[origin, t)` where `b` is
//! true; `duration_where(b, tumbling(w))` and `duration_where(b, sliding(w))`:
//! the same within a window.

use super::window::{MAX_WINDOW_SPANS, Window, true_stretches, window_start};
use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::{Time, Value};

/// The running total of the time `input` is true: rising where it is true,
/// constant elsewhere (Unknown counts as not true). Unknown before the origin.
/// Totals saturate at `i64::MAX` instead of wrapping.
pub fn duration_where(input: &Timeline) -> Timeline {
    let mut out = TimelineBuilder::with_capacity(input.len());
    let mut total: i64 = 0;
    for (i, span) in input.spans().iter().enumerate() {
        if span.value.as_bool() == Some(true) {
            out.push(span.start, SpanValue::Rising { from: total });
            if let Some(end) = input.end_of(i) {
                total = total.saturating_add(end.saturating_sub(span.start));
            }
        } else {
            out.push(span.start, SpanValue::Known(Value::Int(total)));
        }
    }
    out.finish()
}

/// `duration_where(input, window)`; `latest` is the key's latest event time.
pub fn duration_where_in(input: &Timeline, window: Window, latest: Option<Time>) -> Timeline {
    match window {
        Window::Tumbling { .. } => tumbling(input, window.width(), latest),
        Window::Sliding { .. } => sliding(input, window.width()),
    }
}

/// The true time since the start of the tumbling window (clipped at the
/// origin): a sawtooth that starts at 0 in every window. It is computed up to
/// the end of the window that holds the key's latest event and Unknown after
/// (where the input stays true for ever the sawtooth has no end).
fn tumbling(input: &Timeline, w: i64, latest: Option<Time>) -> Timeline {
    let (Some(origin), Some(latest)) = (input.origin(), latest) else {
        return Timeline::unknown();
    };
    let bound = window_start(latest, w).saturating_add(w);
    let trues = true_stretches(input);
    let mut out = TimelineBuilder::new();
    let mut next = 0; // the first true stretch that does not end before `from`
    let mut from = origin;
    let mut spans = 0usize;
    while from < bound && spans <= MAX_WINDOW_SPANS {
        let end = window_start(from, w).saturating_add(w).min(bound);
        while trues.get(next).is_some_and(|(_, e)| e.is_some_and(|e| e <= from)) {
            next += 1;
        }
        out.push(from, SpanValue::Known(Value::Int(0)));
        spans += 1;
        match trues.get(next) {
            Some(&(start, _)) if start < end => {
                // A sawtooth: rising over the true time, flat between.
                let mut total: i64 = 0;
                let mut i = next;
                while let Some(&(s, e)) = trues.get(i).filter(|(s, _)| *s < end) {
                    let (a, b) = (s.max(from), e.map_or(end, |e| e.min(end)));
                    out.push(a, SpanValue::Rising { from: total });
                    total = total.saturating_add(b.saturating_sub(a));
                    if b < end {
                        out.push(b, SpanValue::Known(Value::Int(total)));
                    }
                    spans += 2;
                    if e.is_some_and(|e| e <= end) {
                        i += 1;
                    } else {
                        break;
                    }
                }
                from = end;
            }
            // No true time before the next stretch's window: 0 until then.
            Some(&(start, _)) if start < bound => from = window_start(start, w).max(end),
            _ => from = bound,
        }
    }
    out.push(from.min(bound), SpanValue::Unknown);
    out.finish()
}

/// The true time in `[max(origin, t - w), t)`: the running total now less
/// the running total `w` ago. It rises, stays flat or falls by 1 per ms, and
/// changes slope only at the input's changes and `w` after them.
fn sliding(input: &Timeline, w: i64) -> Timeline {
    let Some(origin) = input.origin() else {
        return Timeline::unknown();
    };
    let total = duration_where(input);
    let rising_at = |t: Time| matches!(total.span_value_at(t), SpanValue::Rising { .. });
    let value_at = |t: Time| match total.value_at(t) {
        Some(Value::Int(v)) => v,
        _ => 0,
    };
    let mut cuts: Vec<Time> = Vec::with_capacity(total.len() * 2);
    for span in total.spans() {
        cuts.push(span.start);
        cuts.push(span.start.saturating_add(w));
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = TimelineBuilder::with_capacity(cuts.len());
    for t in cuts {
        let back = t.saturating_sub(w);
        let now = value_at(t) - if back >= origin { value_at(back) } else { 0 };
        let slope = i64::from(rising_at(t)) - i64::from(back >= origin && rising_at(back));
        out.push(
            t,
            match slope {
                1 => SpanValue::Rising { from: now },
                -1 => SpanValue::Falling { from: now },
                _ => SpanValue::Known(Value::Int(now)),
            },
        );
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::bools;
    use crate::timeline::Span;

    #[test]
    fn tumbling_windows_restart_at_every_boundary_up_to_the_latest_window() {
        // True on [5, 25): windows of 10 from 0.
        let b = bools(&[(0, Some(false)), (5, Some(true)), (25, Some(false))]);
        let d = duration_where_in(&b, Window::Tumbling { width_ms: 10 }, Some(31));
        assert_eq!(
            d.to_string(),
            "[0,5):0 [5,10):rising from 0 [10,20):rising from 0 [20,25):rising from 0 [25,30):5 [30,40):0 [40,∞):unknown"
        );
        assert_eq!(d.value_at(24), Some(Value::Int(4)));
        // Open true: a sawtooth to the end of the latest event's window.
        let b = bools(&[(0, Some(true))]);
        let d = duration_where_in(&b, Window::Tumbling { width_ms: 10 }, Some(15));
        assert_eq!(
            d.to_string(),
            "[0,10):rising from 0 [10,20):rising from 0 [20,∞):unknown"
        );
    }

    #[test]
    fn sliding_windows_rise_stay_and_fall() {
        // True on [0, 4) and [10, 12); window 5.
        let b = bools(&[(0, Some(true)), (4, Some(false)), (10, Some(true)), (12, Some(false))]);
        let d = duration_where_in(&b, Window::Sliding { width_ms: 5 }, Some(12));
        assert_eq!(
            d.to_string(),
            "[0,4):rising from 0 [4,5):4 [5,9):falling from 4 [9,10):0 [10,12):rising from 0 [12,15):2 [15,17):falling from 2 [17,∞):0"
        );
        assert_eq!(d.value_at(7), Some(Value::Int(2)));
    }

    #[test]
    fn accumulates_true_time_only() {
        let b = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::from_bool(Some(false)),
            },
            Span {
                start: 10,
                value: SpanValue::from_bool(Some(true)),
            },
            Span {
                start: 14,
                value: SpanValue::Unknown,
            },
            Span {
                start: 20,
                value: SpanValue::from_bool(Some(true)),
            },
        ])
        .unwrap();
        let d = duration_where(&b);
        assert_eq!(
            d.to_string(),
            "[0,10):0 [10,14):rising from 0 [14,20):4 [20,∞):rising from 4"
        );
        assert_eq!(d.value_at(10), Some(Value::Int(0)));
        assert_eq!(d.value_at(13), Some(Value::Int(3)));
        assert_eq!(d.value_at(14), Some(Value::Int(4)));
        assert_eq!(d.value_at(25), Some(Value::Int(9)));
        assert_eq!(d.value_at(-1), None);
    }

    #[test]
    fn totals_across_the_whole_time_range_saturate() {
        // True over [MIN_TIME, MAX_TIME): 2^63 ms, one more than i64::MAX.
        let b = Timeline::from_spans([
            Span {
                start: crate::value::MIN_TIME,
                value: SpanValue::from_bool(Some(true)),
            },
            Span {
                start: crate::value::MAX_TIME,
                value: SpanValue::from_bool(Some(false)),
            },
        ])
        .unwrap();
        let d = duration_where(&b);
        assert_eq!(d.value_at(crate::value::MAX_TIME), Some(Value::Int(i64::MAX)));
        assert_eq!(d.value_at(crate::value::MAX_TIME - 2), Some(Value::Int(i64::MAX - 1)));
        assert_eq!(d.value_at(0), Some(Value::Int(1 << 62)));
    }
}
