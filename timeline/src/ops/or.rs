//! `a || b`: Kleene disjunction, point by point.

use crate::timeline::Timeline;

/// True where either is true; else Unknown where either is Unknown; else false.
pub fn or(a: &Timeline, b: &Timeline) -> Timeline {
    a.zip_bool(b, |x, y| match (x, y) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
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
                    (Some(true), _) | (_, Some(true)) => Some(Value::Bool(true)),
                    (Some(false), Some(false)) => Some(Value::Bool(false)),
                    _ => None,
                };
                assert_eq!(or(&a, &b).value_at(0), expected, "{x:?} || {y:?}");
            }
        }
    }
}
