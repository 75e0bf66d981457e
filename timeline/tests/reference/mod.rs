//! A slow, obviously correct evaluator of the semantics, written from
//! `docs/semantics.md` alone: every query is answered by scanning all events
//! (and, for durations, every millisecond). Shared by the property tests.

use timeline::{CmpOp, DerivedOp, Event, KeyOp, LeafOp, TimeLineOp, Value};

/// The events of one key as the contract sees them: repeats of an id dropped
/// (first delivery wins), arrival order kept.
pub struct Reference {
    events: Vec<Event>,
}

impl Reference {
    pub fn new(delivered: &[Event]) -> Self {
        let mut seen = std::collections::HashSet::new();
        let events = delivered
            .iter()
            .filter(|e| e.id.as_ref().is_none_or(|id| seen.insert(id.clone())))
            .cloned()
            .collect();
        Reference { events }
    }

    pub fn origin(&self) -> Option<i64> {
        self.events.iter().map(|e| e.time).min()
    }

    pub fn latest(&self) -> Option<i64> {
        self.events.iter().map(|e| e.time).max()
    }

    /// The value of `op` at `t`.
    pub fn value(&self, op: &TimeLineOp, t: i64) -> Option<Value> {
        let origin = self.origin()?;
        if t < origin {
            return None;
        }
        let child = |i: usize, t: i64| self.value(&op.children()[i], t);
        let as_bool = |v: Option<Value>| match v {
            Some(Value::Bool(b)) => Some(b),
            _ => None,
        };
        match op.operator() {
            KeyOp::Leaf(LeafOp::LatestEventToState { column }) => {
                // Latest by time, then event id (none first), then arrival.
                let mut best: Option<(usize, &Event)> = None;
                for (i, e) in self.events.iter().enumerate() {
                    if e.time > t || e.column(column).is_none() {
                        continue;
                    }
                    let later = match best {
                        None => true,
                        Some((_, b)) => (e.time, &e.id) >= (b.time, &b.id),
                    };
                    if later {
                        best = Some((i, e));
                    }
                }
                best.and_then(|(_, e)| e.column(column).cloned())
            }
            KeyOp::Leaf(LeafOp::HasExisted { predicate }) => Some(Value::Bool(
                self.events.iter().any(|e| e.time <= t && predicate.matches(e)),
            )),
            KeyOp::Leaf(LeafOp::HasExistedWithin { predicate, within_ms }) => Some(Value::Bool(
                self.events
                    .iter()
                    .any(|e| e.time <= t && t < e.time + within_ms && predicate.matches(e)),
            )),
            KeyOp::Derived(DerivedOp::Compare { op: cmp, value }) => {
                child(0, t).map(|v| Value::Bool(v.compare(*cmp, value)))
            }
            KeyOp::Derived(DerivedOp::And) => match (as_bool(child(0, t)), as_bool(child(1, t))) {
                (Some(false), _) | (_, Some(false)) => Some(Value::Bool(false)),
                (Some(true), Some(true)) => Some(Value::Bool(true)),
                _ => None,
            },
            KeyOp::Derived(DerivedOp::Or) => match (as_bool(child(0, t)), as_bool(child(1, t))) {
                (Some(true), _) | (_, Some(true)) => Some(Value::Bool(true)),
                (Some(false), Some(false)) => Some(Value::Bool(false)),
                _ => None,
            },
            KeyOp::Derived(DerivedOp::Not) => as_bool(child(0, t)).map(|b| Value::Bool(!b)),
            KeyOp::Derived(DerivedOp::DurationWhere) => Some(Value::Int(
                (origin..t).filter(|&s| as_bool(child(0, s)) == Some(true)).count() as i64,
            )),
            KeyOp::Derived(DerivedOp::DurationInCurState) => {
                let now = child(0, t)?;
                let mut start = t;
                // Values that compare equal are one state.
                let same = |v: Option<Value>| v.is_some_and(|v| v.compare(CmpOp::Eq, &now));
                while start > origin && same(child(0, start - 1)) {
                    start -= 1;
                }
                Some(Value::Int(t - start))
            }
            KeyOp::Derived(DerivedOp::CountWhere) => {
                // Instants from the origin to t where the input turns true.
                let turns = (origin..=t)
                    .filter(|&s| {
                        as_bool(child(0, s)) == Some(true) && (s == origin || as_bool(child(0, s - 1)) != Some(true))
                    })
                    .count();
                Some(Value::Int(turns as i64))
            }
        }
    }
}
