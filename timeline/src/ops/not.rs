//! `!a`: negation, point by point; Unknown stays Unknown.

use crate::timeline::{SpanValue, Timeline};

/// The negation of a boolean timeline.
pub fn not(a: &Timeline) -> Timeline {
    a.map(|x| SpanValue::from_bool(x.as_bool().map(|b| !b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Span;

    #[test]
    fn negates_and_keeps_unknown() {
        let a = Timeline::from_spans([
            Span {
                start: 0,
                value: SpanValue::Unknown,
            },
            Span {
                start: 3,
                value: SpanValue::from_bool(Some(true)),
            },
            Span {
                start: 7,
                value: SpanValue::from_bool(Some(false)),
            },
        ])
        .unwrap();
        assert_eq!(not(&a).to_string(), "[0,3):unknown [3,7):false [7,∞):true");
    }
}
