//! `a && b`: Kleene conjunction, point by point.

use crate::timeline::Timeline;

/// False where either is false; else Unknown where either is Unknown; else true.
pub fn and(a: &Timeline, b: &Timeline) -> Timeline {
    a.zip_bool(b, |x, y| match (x, y) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Span;
    use crate::timeline::SpanValue;
    use crate::value::Value;

    #[test]
    fn kleene_truth_table() {
        let v = |b: Option<bool>| SpanValue::from_bool(b);
        let all = [None, Some(false), Some(true)];
        for x in all {
            for y in all {
                let a = Timeline::from_spans([Span { start: 0, value: v(x) }]).unwrap();
                let b = Timeline::from_spans([Span { start: 0, value: v(y) }]).unwrap();
                let expected = match (x, y) {
                    (Some(false), _) | (_, Some(false)) => Some(Value::Bool(false)),
                    (Some(true), Some(true)) => Some(Value::Bool(true)),
                    _ => None,
                };
                assert_eq!(and(&a, &b).value_at(0), expected, "{x:?} && {y:?}");
            }
        }
    }

    #[test]
    fn false_beats_unknown_across_span_boundaries() {
        let a = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::Unknown,
            },
            Span {
                start: 10,
                value: SpanValue::from_bool(Some(true)),
            },
        ])
        .unwrap();
        let b = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::from_bool(Some(false)),
            },
            Span {
                start: 5,
                value: SpanValue::from_bool(Some(true)),
            },
        ])
        .unwrap();
        assert_eq!(and(&a, &b).to_string(), "[0,5):false [5,10):unknown [10,∞):true");
    }
}
