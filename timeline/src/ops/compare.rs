//! `tl op v`: a timeline compared with a literal, point by point.
//!
//! On a rising or falling span (a duration) the comparison changes value at
//! the exact millisecond the duration crosses the literal.

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::Time;
use crate::value::{CmpOp, Value};

/// `input op literal` at every instant; Unknown stays Unknown.
pub fn compare(input: &Timeline, op: CmpOp, literal: &Value) -> Timeline {
    let mut out = TimelineBuilder::with_capacity(input.len() + 2);
    for (i, span) in input.spans().iter().enumerate() {
        match &span.value {
            SpanValue::Unknown => out.push(span.start, SpanValue::Unknown),
            SpanValue::Known(v) => out.push(span.start, known(v.compare(op, literal))),
            SpanValue::Rising { from } => sloped(&mut out, span.start, input.end_of(i), (*from, 1), op, literal),
            SpanValue::Falling { from } => sloped(&mut out, span.start, input.end_of(i), (*from, -1), op, literal),
        }
    }
    out.finish()
}

fn known(b: bool) -> SpanValue {
    SpanValue::Known(Value::Bool(b))
}

/// Pushes `v(t) op literal` for `t` in `[start, end)`, where
/// `v(t) = from + slope * (t - start)` and `slope` is 1 or -1.
fn sloped(
    out: &mut TimelineBuilder,
    start: Time,
    end: Option<Time>,
    (from, slope): (i64, i128),
    op: CmpOp,
    literal: &Value,
) {
    // The integers v with `v op literal` are an interval [lo, hi] (or, for `!=`,
    // its complement): find it, then map its bounds to instants.
    const INF: i128 = i128::MAX / 4;
    let (lo, hi, inside) = match numeric_bounds(literal) {
        None => {
            // A string or boolean literal never compares with a number.
            return out.push(start, known(op == CmpOp::Ne));
        }
        Some((floor, ceil)) => match op {
            CmpOp::Lt => (-INF, ceil - 1, true),
            CmpOp::Le => (-INF, floor, true),
            CmpOp::Gt => (floor + 1, INF, true),
            CmpOp::Ge => (ceil, INF, true),
            CmpOp::Eq if floor == ceil => (floor, floor, true),
            CmpOp::Eq => (1, 0, true),
            CmpOp::Ne if floor == ceil => (floor, floor, false),
            CmpOp::Ne => (1, 0, false),
        },
    };
    let holds_at = |t: i128| {
        let v = from as i128 + slope * (t - start as i128);
        (lo <= v && v <= hi) == inside
    };
    out.push(start, known(holds_at(start as i128)));
    if lo > hi {
        return;
    }
    // The first instants at which v enters [lo, hi] and leaves it.
    let (enter, leave) = if slope > 0 {
        (
            start as i128 + (lo - from as i128),
            start as i128 + (hi - from as i128) + 1,
        )
    } else {
        (
            start as i128 + (from as i128 - hi),
            start as i128 + (from as i128 - lo) + 1,
        )
    };
    for t in [enter, leave] {
        let in_span = t > start as i128 && end.is_none_or(|e| t < e as i128) && t <= i64::MAX as i128;
        if in_span {
            out.push(t as i64, known(holds_at(t)));
        }
    }
}

/// `(floor, ceil)` of a numeric literal, as wide integers.
fn numeric_bounds(literal: &Value) -> Option<(i128, i128)> {
    match literal {
        Value::Int(i) => Some((*i as i128, *i as i128)),
        Value::Float(x) if x.is_finite() => Some((x.floor() as i128, x.ceil() as i128)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Span;

    fn rising_from_zero_at_10() -> Timeline {
        Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::Unknown,
            },
            Span {
                start: 10,
                value: SpanValue::Rising { from: 0 },
            },
            Span {
                start: 100,
                value: SpanValue::Known(Value::Int(90)),
            },
        ])
        .unwrap()
    }

    #[test]
    fn constants_compare_pointwise() {
        let t = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::Known(Value::str("play")),
            },
            Span {
                start: 5,
                value: SpanValue::Known(Value::str("buffer")),
            },
        ])
        .unwrap();
        assert_eq!(
            compare(&t, CmpOp::Eq, &Value::str("buffer")).to_string(),
            "[0,5):false [5,∞):true"
        );
        assert_eq!(compare(&t, CmpOp::Eq, &Value::Int(1)).to_string(), "[0,∞):false");
        assert_eq!(compare(&t, CmpOp::Ne, &Value::Int(1)).to_string(), "[0,∞):true");
    }

    #[test]
    fn rising_spans_cross_at_the_exact_millisecond() {
        let t = rising_from_zero_at_10();
        // v(t) = t - 10 on [10, 100): v < 30 until t = 40.
        assert_eq!(
            compare(&t, CmpOp::Lt, &Value::Int(30)).to_string(),
            "[0,10):unknown [10,40):true [40,∞):false"
        );
        assert_eq!(
            compare(&t, CmpOp::Le, &Value::Int(30)).to_string(),
            "[0,10):unknown [10,41):true [41,∞):false"
        );
        assert_eq!(
            compare(&t, CmpOp::Gt, &Value::Int(30)).to_string(),
            "[0,10):unknown [10,41):false [41,∞):true"
        );
        assert_eq!(
            compare(&t, CmpOp::Ge, &Value::Int(30)).to_string(),
            "[0,10):unknown [10,40):false [40,∞):true"
        );
        assert_eq!(
            compare(&t, CmpOp::Eq, &Value::Int(30)).to_string(),
            "[0,10):unknown [10,40):false [40,41):true [41,∞):false"
        );
        assert_eq!(
            compare(&t, CmpOp::Ne, &Value::Int(30)).to_string(),
            "[0,10):unknown [10,40):true [40,41):false [41,∞):true"
        );
    }

    #[test]
    fn rising_spans_with_float_literals() {
        let t = rising_from_zero_at_10();
        assert_eq!(
            compare(&t, CmpOp::Lt, &Value::Float(29.5)).to_string(),
            "[0,10):unknown [10,40):true [40,∞):false"
        );
        assert_eq!(
            compare(&t, CmpOp::Eq, &Value::Float(29.5)).to_string(),
            "[0,10):unknown [10,∞):false"
        );
        assert_eq!(
            compare(&t, CmpOp::Ge, &Value::Float(-1e300)).to_string(),
            "[0,10):unknown [10,∞):true"
        );
        assert_eq!(
            compare(&t, CmpOp::Eq, &Value::str("x")).to_string(),
            "[0,10):unknown [10,∞):false"
        );
    }

    #[test]
    fn crossings_outside_the_span_do_not_split_it() {
        let t = rising_from_zero_at_10();
        // Crosses 200 only after the span ended at 100 (where the value is 90).
        assert_eq!(
            compare(&t, CmpOp::Lt, &Value::Int(200)).to_string(),
            "[0,10):unknown [10,∞):true"
        );
        assert_eq!(
            compare(&t, CmpOp::Lt, &Value::Int(0)).to_string(),
            "[0,10):unknown [10,∞):false"
        );
        // The open last span crosses far in the future without overflow.
        let open = Timeline::constant(0, SpanValue::Rising { from: 0 });
        assert_eq!(
            compare(&open, CmpOp::Lt, &Value::Int(i64::MAX)).to_string(),
            format!("[0,{}):true [{},∞):false", i64::MAX, i64::MAX)
        );
    }
}
