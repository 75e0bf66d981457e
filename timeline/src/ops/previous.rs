//! `previous(tl)`: the value `tl` had just before the stretch (ending at `t`)
//! over which it keeps its value at `t`.

use crate::timeline::{SpanValue, Timeline, TimelineBuilder};
use crate::value::{Time, Value};

/// The value held before the current stretch; Unknown where the input is
/// Unknown or its stretch began at the origin (or right after Unknown).
/// Values that compare equal (`2`, `2.0`) are one value. A rising or
/// falling input changes value every millisecond, so after its first instant
/// the previous value is the value one millisecond earlier.
pub fn previous(input: &Timeline) -> Timeline {
    let mut out = TimelineBuilder::with_capacity(input.len() * 2);
    // The value at the instant before the current span, and the previous
    // value there (what held before its stretch).
    let mut before: Option<(Value, Option<Value>)> = None;
    let spans = input.spans();
    for (i, span) in spans.iter().enumerate() {
        let a = span.start;
        let Some(first) = span.value.at_offset(0) else {
            out.push(a, SpanValue::Unknown);
            before = None;
            continue;
        };
        // What held before the stretch that holds at `a`.
        let held = match before {
            Some((value, previous)) if value.same_state(&first) => previous,
            Some((value, _)) => Some(value),
            None => None,
        };
        out.push(a, known_or_unknown(held.clone()));
        let last: Option<Time> = input.end_of(i).map(|e| e.saturating_sub(1));
        before = match span.value {
            SpanValue::Rising { .. } | SpanValue::Falling { .. } => {
                // From `a + 1` on, the value one millisecond earlier: the
                // same slope, from the value at `a`.
                if last.is_none_or(|l| l > a) {
                    out.push(a + 1, span.value.clone());
                }
                last.map(|l| {
                    let value = span.value.at_offset(l.saturating_sub(a)).expect("a known span");
                    let previous = if l > a {
                        span.value.at_offset(l.saturating_sub(a) - 1)
                    } else {
                        held
                    };
                    (value, previous)
                })
            }
            _ => Some((first, held)),
        };
    }
    out.finish()
}

fn known_or_unknown(value: Option<Value>) -> SpanValue {
    value.map_or(SpanValue::Unknown, SpanValue::Known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Span;

    fn tl(spans: Vec<(Time, SpanValue)>) -> Timeline {
        Timeline::from_spans(spans.into_iter().map(|(start, value)| Span { start, value })).unwrap()
    }

    fn s(v: &str) -> SpanValue {
        SpanValue::Known(Value::str(v))
    }

    #[test]
    fn the_value_before_the_current_stretch() {
        let input = tl(vec![
            (0, s("a")),
            (5, s("b")),
            (9, SpanValue::Unknown),
            (12, s("c")),
            (15, s("d")),
        ]);
        assert_eq!(
            previous(&input).to_string(),
            "[0,5):unknown [5,9):\"a\" [9,15):unknown [15,∞):\"c\""
        );
        // 2 then 2.0 is one state: its previous value stays "a".
        let input = tl(vec![
            (0, s("a")),
            (5, SpanValue::Known(Value::Int(2))),
            (7, SpanValue::Known(Value::Float(2.0))),
        ]);
        assert_eq!(previous(&input).value_at(8), Some(Value::str("a")));
    }

    #[test]
    fn over_a_rising_duration_the_value_a_millisecond_earlier() {
        // 0 on [0, 6), then rising from 0: the flat stretch goes on at 6.
        let input = tl(vec![
            (0, SpanValue::Known(Value::Int(0))),
            (6, SpanValue::Rising { from: 0 }),
        ]);
        let p = previous(&input);
        assert_eq!(p.value_at(5), None);
        assert_eq!(
            p.value_at(6),
            None,
            "6 is still in the stretch of 0 that began at the origin"
        );
        assert_eq!(p.value_at(7), Some(Value::Int(0)));
        assert_eq!(p.value_at(10), Some(Value::Int(3)));
    }
}
