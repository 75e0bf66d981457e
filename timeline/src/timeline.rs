//! The timeline primitive: run-length spans over event time.
//!
//! A [`Timeline`] is a sorted list of [`Span`]s. Span `i` holds from its start
//! up to the start of span `i + 1`; the last span holds to +infinity; before
//! the first span (the key's origin) every timeline is Unknown. Adjacent spans
//! never hold the same value: the builder coalesces them, so the size of a
//! timeline is the number of value changes. A span is constant, *rising* (a
//! duration that grows by 1 per millisecond, so `duration_where` is exact at
//! every instant without a span per millisecond) or *falling* (a sliding
//! window's duration as true time leaves the window). Time arithmetic saturates:
//! a duration longer than `i64::MAX` ms reads as `i64::MAX`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::value::Time;
use crate::value::Value;

/// The value of a timeline over one span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanValue {
    /// No value is known.
    Unknown,
    /// A constant value.
    Known(Value),
    /// An integer that is `from` at the span's start and grows by 1 per ms.
    Rising {
        /// The value at the span's start.
        from: i64,
    },
    /// An integer that is `from` at the span's start and falls by 1 per ms
    /// (a sliding window's duration as time leaves it).
    Falling {
        /// The value at the span's start.
        from: i64,
    },
}

impl SpanValue {
    /// The value `offset` milliseconds after the start of a span with this value.
    pub fn at_offset(&self, offset: i64) -> Option<Value> {
        match self {
            SpanValue::Unknown => None,
            SpanValue::Known(v) => Some(v.clone()),
            SpanValue::Rising { from } => Some(Value::Int(from.saturating_add(offset))),
            SpanValue::Falling { from } => Some(Value::Int(from.saturating_sub(offset))),
        }
    }

    /// This span value as seen from `offset` ms after its start.
    pub fn shifted(&self, offset: i64) -> SpanValue {
        match self {
            SpanValue::Rising { from } => SpanValue::Rising {
                from: from.saturating_add(offset),
            },
            SpanValue::Falling { from } => SpanValue::Falling {
                from: from.saturating_sub(offset),
            },
            other => other.clone(),
        }
    }

    /// Whether a span holding `self` would, `offset` ms after its start, hold
    /// `other`: then a span of `other` there adds nothing. No clone.
    pub fn continues_as(&self, offset: i64, other: &SpanValue) -> bool {
        match (self, other) {
            (SpanValue::Rising { from }, SpanValue::Rising { from: next }) => from.saturating_add(offset) == *next,
            (SpanValue::Falling { from }, SpanValue::Falling { from: next }) => from.saturating_sub(offset) == *next,
            (SpanValue::Unknown, SpanValue::Unknown) => true,
            (SpanValue::Known(a), SpanValue::Known(b)) => a == b,
            _ => false,
        }
    }

    /// The boolean this value holds, or `None` for Unknown and non-booleans
    /// (the third value of Kleene logic).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            SpanValue::Known(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A known boolean, or Unknown for `None`.
    pub fn from_bool(b: Option<bool>) -> SpanValue {
        match b {
            Some(b) => SpanValue::Known(Value::Bool(b)),
            None => SpanValue::Unknown,
        }
    }
}

/// A span: from `start` until the next span's start, the timeline holds `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// First instant of the span (inclusive).
    pub start: Time,
    /// The value over the span.
    pub value: SpanValue,
}

/// A coalesced sequence of spans; see the module documentation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<Span>", into = "Vec<Span>")]
pub struct Timeline {
    spans: Vec<Span>,
}

impl Timeline {
    /// The timeline that is Unknown everywhere (a key with no events).
    pub fn unknown() -> Self {
        Self::default()
    }

    /// A timeline from spans in order of start; equal neighbours are merged.
    /// Errors when starts are not strictly increasing.
    pub fn from_spans(spans: impl IntoIterator<Item = Span>) -> Result<Self, String> {
        let mut builder = TimelineBuilder::new();
        for span in spans {
            if builder.last_start().is_some_and(|last| span.start <= last) {
                return Err(format!(
                    "span starts must increase, found {} after {:?}",
                    span.start,
                    builder.last_start()
                ));
            }
            builder.push(span.start, span.value);
        }
        Ok(builder.finish())
    }

    /// A timeline that is `value` from `origin` on.
    pub fn constant(origin: Time, value: SpanValue) -> Self {
        let mut builder = TimelineBuilder::new();
        builder.push(origin, value);
        builder.finish()
    }

    /// The spans, in order.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Number of spans.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the timeline is Unknown everywhere.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The first instant with a span: the key's origin.
    pub fn origin(&self) -> Option<Time> {
        self.spans.first().map(|s| s.start)
    }

    /// End (exclusive) of span `index`; `None` for the last span.
    pub fn end_of(&self, index: usize) -> Option<Time> {
        self.spans.get(index + 1).map(|s| s.start)
    }

    /// Index of the span holding at `t`, in O(log n).
    pub fn index_at(&self, t: Time) -> Option<usize> {
        self.spans.partition_point(|s| s.start <= t).checked_sub(1)
    }

    /// The value at `t`; `None` is Unknown.
    pub fn value_at(&self, t: Time) -> Option<Value> {
        let span = &self.spans[self.index_at(t)?];
        span.value.at_offset(t.saturating_sub(span.start))
    }

    /// The span value holding at `t`, shifted so that it starts at `t`.
    pub fn span_value_at(&self, t: Time) -> SpanValue {
        match self.index_at(t) {
            Some(i) => self.spans[i].value.shifted(t.saturating_sub(self.spans[i].start)),
            None => SpanValue::Unknown,
        }
    }

    /// The spans overlapping `[from, to)`, cut to that range, with explicit ends.
    pub fn clip(&self, from: Option<Time>, to: Option<Time>) -> Vec<SpanView> {
        let first = match from {
            Some(t) => self.index_at(t).unwrap_or(0),
            None => 0,
        };
        let mut out = Vec::new();
        for i in first..self.spans.len() {
            let span = &self.spans[i];
            let mut start = span.start;
            let mut end = self.end_of(i);
            if let Some(from) = from {
                if end.is_some_and(|e| e <= from) {
                    continue;
                }
                start = start.max(from);
            }
            if let Some(to) = to {
                if start >= to {
                    break;
                }
                end = Some(end.map_or(to, |e| e.min(to)));
            }
            out.push(SpanView {
                start,
                end,
                value: span.value.at_offset(start.saturating_sub(span.start)),
                rising: matches!(span.value, SpanValue::Rising { .. }),
                falling: matches!(span.value, SpanValue::Falling { .. }),
            });
        }
        out
    }

    /// Combines two timelines point by point: `f` sees both values over every
    /// piece between consecutive span starts of either. Before a timeline's
    /// origin it is Unknown.
    pub fn zip_with(&self, other: &Timeline, f: impl Fn(&SpanValue, &SpanValue) -> SpanValue) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(self.len() + other.len());
        for_each_piece(&self.spans, &other.spans, |t, i, j| {
            let a = value_before(&self.spans, i, t);
            let b = value_before(&other.spans, j, t);
            out.push(t, f(&a, &b));
        });
        out.finish()
    }

    /// Like [`Timeline::zip_with`] for boolean operators: `f` sees each side as
    /// Kleene booleans (`None` for Unknown and non-booleans).
    pub fn zip_bool(&self, other: &Timeline, f: impl Fn(Option<bool>, Option<bool>) -> Option<bool>) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(self.len() + other.len());
        let (a, b) = (&self.spans, &other.spans);
        for_each_piece(a, b, |t, i, j| {
            let x = i.checked_sub(1).and_then(|k| a[k].value.as_bool());
            let y = j.checked_sub(1).and_then(|k| b[k].value.as_bool());
            out.push(t, SpanValue::from_bool(f(x, y)));
        });
        out.finish()
    }

    /// Applies `f` to every span's value.
    pub fn map(&self, f: impl Fn(&SpanValue) -> SpanValue) -> Timeline {
        let mut out = TimelineBuilder::with_capacity(self.len());
        for span in &self.spans {
            out.push(span.start, f(&span.value));
        }
        out.finish()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<Span>()
    }
}

/// The value of the span that ends at index `next` (exclusive), seen from `t`.
/// Calls `f(t, i, j)` for each piece between consecutive span starts `t` of
/// `a` and `b`, in order, where the first `i` spans of `a` and `j` of `b`
/// start at or before `t`.
pub(crate) fn for_each_piece(a: &[Span], b: &[Span], mut f: impl FnMut(Time, usize, usize)) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let t = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.start.min(y.start),
            (Some(x), None) => x.start,
            (None, Some(y)) => y.start,
            (None, None) => unreachable!("loop condition"),
        };
        if a.get(i).is_some_and(|s| s.start == t) {
            i += 1;
        }
        if b.get(j).is_some_and(|s| s.start == t) {
            j += 1;
        }
        f(t, i, j);
    }
}

/// The value of `spans` at `t`, where the first `next` spans start at or
/// before `t`.
pub(crate) fn value_before(spans: &[Span], next: usize, t: Time) -> SpanValue {
    match next.checked_sub(1) {
        Some(i) => spans[i].value.shifted(t.saturating_sub(spans[i].start)),
        None => SpanValue::Unknown,
    }
}

impl TryFrom<Vec<Span>> for Timeline {
    type Error = String;
    fn try_from(spans: Vec<Span>) -> Result<Self, String> {
        Timeline::from_spans(spans)
    }
}

impl From<Timeline> for Vec<Span> {
    fn from(t: Timeline) -> Vec<Span> {
        t.spans
    }
}

impl fmt::Display for Timeline {
    /// `[0,10):"a" [10,∞):rising from 0`, for tests and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, view) in self.clip(None, None).into_iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{view}")?;
        }
        Ok(())
    }
}

/// One span with its end made explicit: what the API returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanView {
    /// First instant (inclusive).
    pub start: Time,
    /// End (exclusive); `None` is +infinity.
    pub end: Option<Time>,
    /// The value at `start`; `None` is Unknown.
    pub value: Option<Value>,
    /// Whether the value grows by 1 per ms from `start`.
    pub rising: bool,
    /// Whether the value falls by 1 per ms from `start`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub falling: bool,
}

impl fmt::Display for SpanView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(end) => write!(f, "[{},{})", self.start, end)?,
            None => write!(f, "[{},∞)", self.start)?,
        }
        match (&self.value, self.rising, self.falling) {
            (None, ..) => f.write_str(":unknown"),
            (Some(v), true, _) => write!(f, ":rising from {v}"),
            (Some(v), _, true) => write!(f, ":falling from {v}"),
            (Some(v), false, false) => write!(f, ":{v}"),
        }
    }
}

/// Builds a [`Timeline`] from spans pushed in order of start, coalescing as it goes.
#[derive(Debug, Default)]
pub struct TimelineBuilder {
    spans: Vec<Span>,
}

impl TimelineBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `n` spans.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            spans: Vec::with_capacity(n),
        }
    }

    /// Number of spans so far.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The start of the last span pushed.
    pub fn last_start(&self) -> Option<Time> {
        self.spans.last().map(|s| s.start)
    }

    /// From `start` on, the timeline holds `value`. A start equal to the last
    /// one replaces that span's value; an earlier start is a caller bug and is
    /// treated as equal to the last.
    pub fn push(&mut self, start: Time, value: SpanValue) {
        if let Some(last) = self.spans.last()
            && start <= last.start
        {
            debug_assert_eq!(start, last.start, "spans must be pushed in order");
            self.spans.pop();
            return self.push(start, value);
        }
        if let Some(last) = self.spans.last()
            && last.value.continues_as(start.saturating_sub(last.start), &value)
        {
            return;
        }
        self.spans.push(Span { start, value });
    }

    /// The finished timeline.
    pub fn finish(self) -> Timeline {
        Timeline { spans: self.spans }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(v: impl Into<Value>) -> SpanValue {
        SpanValue::Known(v.into())
    }

    #[test]
    fn builder_coalesces_equal_and_continuing_spans() {
        let mut b = TimelineBuilder::new();
        b.push(0, known("a"));
        b.push(5, known("a"));
        b.push(10, SpanValue::Rising { from: 0 });
        b.push(15, SpanValue::Rising { from: 5 });
        b.push(20, SpanValue::Rising { from: 0 });
        let t = b.finish();
        assert_eq!(
            t.to_string(),
            r#"[0,10):"a" [10,20):rising from 0 [20,∞):rising from 0"#
        );
    }

    #[test]
    fn lookup_is_half_open() {
        let t = Timeline::from_spans([
            Span {
                start: 10,
                value: known(1),
            },
            Span {
                start: 20,
                value: SpanValue::Rising { from: 100 },
            },
        ])
        .unwrap();
        assert_eq!(t.value_at(9), None);
        assert_eq!(t.value_at(10), Some(Value::Int(1)));
        assert_eq!(t.value_at(19), Some(Value::Int(1)));
        assert_eq!(t.value_at(20), Some(Value::Int(100)));
        assert_eq!(t.value_at(25), Some(Value::Int(105)));
    }

    #[test]
    fn clip_cuts_spans_and_shifts_rising_values() {
        let t = Timeline::from_spans([
            Span {
                start: 0,
                value: known(false),
            },
            Span {
                start: 10,
                value: SpanValue::Rising { from: 0 },
            },
        ])
        .unwrap();
        let views = t.clip(Some(5), Some(15));
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].to_string(), "[5,10):false");
        assert_eq!(views[1].to_string(), "[10,15):rising from 0");
        assert_eq!(t.clip(Some(12), None)[0].to_string(), "[12,∞):rising from 2");
        assert!(t.clip(Some(20), Some(20)).is_empty());
    }

    #[test]
    fn from_spans_rejects_unordered_starts() {
        assert!(
            Timeline::from_spans([
                Span {
                    start: 5,
                    value: known(1)
                },
                Span {
                    start: 5,
                    value: known(2)
                }
            ])
            .is_err()
        );
        let json = r#"[{"start":1,"value":{"known":true}},{"start":0,"value":"unknown"}]"#;
        assert!(serde_json::from_str::<Timeline>(json).is_err());
    }

    #[test]
    fn zip_sees_both_values_on_every_piece() {
        let a = Timeline::from_spans([
            Span {
                start: 0,
                value: known(1),
            },
            Span {
                start: 10,
                value: known(2),
            },
        ])
        .unwrap();
        let b = Timeline::from_spans([Span {
            start: 5,
            value: SpanValue::Rising { from: 0 },
        }])
        .unwrap();
        let z = a.zip_with(&b, |x, y| match (x, y) {
            (SpanValue::Known(Value::Int(x)), SpanValue::Rising { from }) => known(x * 1000 + from),
            _ => SpanValue::Unknown,
        });
        assert_eq!(z.to_string(), "[0,5):unknown [5,10):1000 [10,∞):2005");
    }
}
