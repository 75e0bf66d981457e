//! `duration_where(b)`: total milliseconds in `[origin, t)` where `b` is true.

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Value;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Span;

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
