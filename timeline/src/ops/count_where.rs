//! `count_where(b)`: how many times `b` has become true, up to and including `t`.

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Value;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Span;

    fn bools(spans: &[(i64, Option<bool>)]) -> Timeline {
        Timeline::from_spans(spans.iter().map(|&(start, b)| Span {
            start,
            value: SpanValue::from_bool(b),
        }))
        .unwrap()
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
