//! A slow, obviously correct evaluator of the semantics, written from
//! `docs/semantics.md` alone: every query is answered by scanning all events
//! (and, for durations, every millisecond). Shared by the property tests.

use timeline::op::Window;
use timeline::{CmpOp, DerivedOp, Event, KeyOp, LeafOp, TimeLineOp, Value};

/// Where an event stands in the event order: time, then id (none first);
/// events without an id at one time are tied.
fn order(e: &Event) -> (i64, Option<&str>) {
    (e.time, e.id.as_deref())
}

/// The events of one key as the contract sees them: repeats of an id dropped
/// (first delivery wins), arrival order kept.
pub struct Reference {
    events: Vec<Event>,
    /// Values already computed, by node and instant (the operators over
    /// windows ask for their input at many instants).
    memo: std::cell::RefCell<std::collections::HashMap<(timeline::NodeId, i64), Option<Value>>>,
}

impl Reference {
    pub fn new(delivered: &[Event]) -> Self {
        let mut seen = std::collections::HashSet::new();
        let events = delivered
            .iter()
            .filter(|e| e.id.as_ref().is_none_or(|id| seen.insert(id.clone())))
            .cloned()
            .collect();
        Reference {
            events,
            memo: Default::default(),
        }
    }

    pub fn origin(&self) -> Option<i64> {
        self.events.iter().map(|e| e.time).min()
    }

    pub fn latest(&self) -> Option<i64> {
        self.events.iter().map(|e| e.time).max()
    }

    /// The value of `op` at `t`.
    pub fn value(&self, op: &TimeLineOp, t: i64) -> Option<Value> {
        let key = (op.id().clone(), t);
        if let Some(known) = self.memo.borrow().get(&key) {
            return known.clone();
        }
        let value = self.compute(op, t);
        self.memo.borrow_mut().insert(key, value.clone());
        value
    }

    fn compute(&self, op: &TimeLineOp, t: i64) -> Option<Value> {
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
            KeyOp::Leaf(LeafOp::TimeSince { predicate }) => self
                .events
                .iter()
                .filter(|e| e.time <= t && predicate.matches(e))
                .map(|e| e.time)
                .max()
                .map(|last| Value::Int(t - last)),
            KeyOp::Leaf(LeafOp::Sequence { steps, within_ms }) => {
                let within = within_ms.unwrap_or(i64::MAX);
                // Every chain e1 <= ... <= en of events at or before t (ties
                // in order both ways), by brute force.
                fn chain(
                    events: &[&Event],
                    steps: &[timeline::Predicate],
                    from: Option<&Event>,
                    first: i64,
                    within: i64,
                ) -> bool {
                    let Some((step, rest)) = steps.split_first() else {
                        return true;
                    };
                    events.iter().any(|e| {
                        step.matches(e)
                            && from.is_none_or(|f| order(f) <= order(e))
                            && from.is_none_or(|_| e.time - first <= within)
                            && chain(
                                events,
                                rest,
                                Some(e),
                                if from.is_none() { e.time } else { first },
                                within,
                            )
                    })
                }
                let before: Vec<&Event> = self.events.iter().filter(|e| e.time <= t).collect();
                Some(Value::Bool(chain(&before, steps, None, 0, within)))
            }
            KeyOp::Leaf(LeafOp::AbsentAfter {
                start,
                completion,
                within_ms,
            }) => Some(Value::Bool(self.events.iter().any(|e| {
                start.matches(e)
                    && e.time.checked_add(*within_ms).is_some_and(|due| due <= t)
                    && !self
                        .events
                        .iter()
                        .any(|f| completion.matches(f) && order(e) < order(f) && f.time <= e.time + within_ms)
            }))),
            KeyOp::Derived(DerivedOp::DurationWhereIn { window }) => {
                let w = window.width();
                let from = match window {
                    Window::Tumbling { .. } => {
                        // Up to the end of the window of the latest event.
                        let bound = self.latest()?.div_euclid(w) * w + w;
                        if t >= bound {
                            return None;
                        }
                        origin.max(t.div_euclid(w) * w)
                    }
                    Window::Sliding { .. } => origin.max(t - w),
                };
                Some(Value::Int(
                    (from..t).filter(|&u| as_bool(child(0, u)) == Some(true)).count() as i64,
                ))
            }
            KeyOp::Derived(DerivedOp::CountWhereIn { window }) => {
                let w = window.width();
                let from = match window {
                    Window::Tumbling { .. } => origin.max(t.div_euclid(w) * w),
                    Window::Sliding { .. } => origin.max(t - w + 1),
                };
                let turns = (from..=t)
                    .filter(|&u| {
                        as_bool(child(0, u)) == Some(true) && (u == from || as_bool(child(0, u - 1)) != Some(true))
                    })
                    .count();
                Some(Value::Int(turns as i64))
            }
            KeyOp::Derived(DerivedOp::Previous) => {
                let now = child(0, t)?;
                let same = |v: Option<Value>| v.is_some_and(|v| v.same_state(&now));
                let mut start = t;
                while start > origin && same(child(0, start - 1)) {
                    start -= 1;
                }
                if start == origin { None } else { child(0, start - 1) }
            }
            KeyOp::Derived(DerivedOp::TrueWithin { within_ms }) => {
                let from = origin.max(t.saturating_sub(within_ms - 1));
                let seen: Vec<Option<bool>> = (from..=t).map(|u| as_bool(child(0, u))).collect();
                if seen.contains(&Some(true)) {
                    Some(Value::Bool(true))
                } else if seen.iter().all(|b| *b == Some(false)) {
                    Some(Value::Bool(false))
                } else {
                    None
                }
            }
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
