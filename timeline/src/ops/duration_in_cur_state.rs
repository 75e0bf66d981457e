//! `duration_in_cur_state(tl)`: how long `tl` has held its current value.

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Value;

/// `t - s`, where `s` starts the longest stretch ending at `t` over which the
/// input keeps its value at `t`. Spans are coalesced, so each constant span is
/// one such stretch and the result rises from 0 over it. A rising input changes
/// value every millisecond, so its stretch is a single instant: 0. Unknown
/// where the input is Unknown.
pub fn duration_in_cur_state(input: &Timeline) -> Timeline {
    let mut out = TimelineBuilder::with_capacity(input.len());
    for span in input.spans() {
        let value = match span.value {
            SpanValue::Unknown => SpanValue::Unknown,
            SpanValue::Known(_) => SpanValue::Rising { from: 0 },
            SpanValue::Rising { .. } => SpanValue::Known(Value::Int(0)),
        };
        out.push(span.start, value);
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
}
