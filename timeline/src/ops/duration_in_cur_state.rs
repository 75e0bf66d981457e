//! `duration_in_cur_state(tl)`: how long `tl` has held its current value.

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::{Time, Value};

/// `t - s`, where `s` starts the longest stretch ending at `t` over which the
/// input keeps its value at `t`; values that compare equal (`2`, `2.0`) are
/// one value. Over a constant span the result rises; a rising input changes
/// value every millisecond, so after its first instant the result is 0, while
/// at its first instant it continues the stretch before it if the value there
/// equals the value just before. Unknown where the input is Unknown.
pub fn duration_in_cur_state(input: &Timeline) -> Timeline {
    let mut out = TimelineBuilder::with_capacity(input.len() + 1);
    // The value at the instant before the current span, and where its stretch began.
    let mut before: Option<(Value, Time)> = None;
    let spans = input.spans();
    for (i, span) in spans.iter().enumerate() {
        let a = span.start;
        let end = input.end_of(i);
        let Some(first) = span.value.at_offset(0) else {
            out.push(a, SpanValue::Unknown);
            before = None;
            continue;
        };
        // Where the stretch holding at `a` began.
        let s = match &before {
            Some((value, s)) if value.same_state(&first) => *s,
            _ => a,
        };
        let last = end.map(|e| e.saturating_sub(1));
        match span.value {
            SpanValue::Rising { .. } | SpanValue::Falling { .. } => {
                out.push(a, SpanValue::Known(Value::Int(a.saturating_sub(s))));
                if last.is_none_or(|l| l > a) {
                    out.push(a + 1, SpanValue::Known(Value::Int(0)));
                }
                before = last.map(|l| {
                    let value = span.value.at_offset(l.saturating_sub(a)).expect("a known span");
                    (value, if l > a { l } else { s })
                });
            }
            _ => {
                out.push(
                    a,
                    SpanValue::Rising {
                        from: a.saturating_sub(s),
                    },
                );
                before = Some((first, s));
            }
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Span;

    #[test]
    fn restarts_at_every_change_and_is_unknown_where_input_is() {
        let tl = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::Unknown,
            },
            Span {
                start: 5,
                value: SpanValue::Known(Value::str("a")),
            },
            Span {
                start: 9,
                value: SpanValue::Known(Value::str("b")),
            },
        ])
        .unwrap();
        let d = duration_in_cur_state(&tl);
        assert_eq!(d.to_string(), "[0,5):unknown [5,9):rising from 0 [9,∞):rising from 0");
        assert_eq!(d.value_at(8), Some(Value::Int(3)));
        assert_eq!(d.value_at(9), Some(Value::Int(0)));
        assert_eq!(d.value_at(4), None);
    }

    #[test]
    fn a_rising_span_continues_the_flat_stretch_at_its_first_instant() {
        // duration_where of false on [0, 6) then true: 0 on [0, 6], then 1, 2, ...
        let tl = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::Known(Value::Int(0)),
            },
            Span {
                start: 6,
                value: SpanValue::Rising { from: 0 },
            },
        ])
        .unwrap();
        let d = duration_in_cur_state(&tl);
        assert_eq!(d.value_at(5), Some(Value::Int(5)));
        assert_eq!(d.value_at(6), Some(Value::Int(6)));
        assert_eq!(d.value_at(7), Some(Value::Int(0)));
        assert_eq!(d.value_at(100), Some(Value::Int(0)));
    }

    #[test]
    fn a_flat_span_continues_a_rising_one_that_ends_at_its_value() {
        // Rising 0, 1, 2 on [0, 3), then flat 2 from 3: 2 holds since t = 2.
        let tl = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::Rising { from: 0 },
            },
            Span {
                start: 3,
                value: SpanValue::Known(Value::Int(2)),
            },
        ])
        .unwrap();
        let d = duration_in_cur_state(&tl);
        assert_eq!(d.value_at(0), Some(Value::Int(0)));
        assert_eq!(d.value_at(2), Some(Value::Int(0)));
        assert_eq!(d.value_at(3), Some(Value::Int(1)));
        assert_eq!(d.value_at(10), Some(Value::Int(8)));
    }

    #[test]
    fn equal_numbers_are_one_state() {
        let tl = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::Known(Value::Int(2)),
            },
            Span {
                start: 5,
                value: SpanValue::Known(Value::Float(2.0)),
            },
            Span {
                start: 8,
                value: SpanValue::Known(Value::Bool(true)),
            },
            Span {
                start: 9,
                value: SpanValue::Known(Value::Int(1)),
            },
        ])
        .unwrap();
        let d = duration_in_cur_state(&tl);
        assert_eq!(d.value_at(7), Some(Value::Int(7)), "2 then 2.0 keeps the state");
        assert_eq!(d.value_at(8), Some(Value::Int(0)));
        assert_eq!(d.value_at(9), Some(Value::Int(0)), "true then 1 changes it");
    }
}
