//! Workers: one node for one key.
//!
//! A leaf worker holds a [`LeafState`] (the key's [`KeyClock`] and the
//! operator's state) and takes events. A derived node holds no state: it is
//! computed from the leaves below it by an [`Evaluation`] ([`eval`]), the one
//! evaluator every runtime uses. The local runtime keeps leaf states in
//! memory and evaluates over them; the Golem components keep each leaf in a
//! durable agent and evaluate over the outputs read from those agents.

pub mod eval;

pub use eval::{CompiledPlan, EvalError, Evaluation, Inputs};

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::id::{NodeId, WorkerKind};
use crate::op::LeafOp;
use crate::ops::absent_after::AbsentAfter;
use crate::ops::has_existed::HasExisted;
use crate::ops::has_existed_within::HasExistedWithin;
use crate::ops::latest_event_to_state::{LatestEventToState, ValueTable};
use crate::ops::matches::EventKey;
use crate::ops::sequence::Sequence;
use crate::ops::time_since::TimeSince;
use crate::timeline::Timeline;
use crate::value::Time;
use crate::value::Value;

/// What a worker answers for its key: its timeline and the key's latest event
/// time ("the end").
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Output {
    /// The node's timeline.
    pub timeline: Timeline,
    /// The latest event time the worker has seen, directly or via its children.
    pub latest: Option<Time>,
}

impl Output {
    /// The value at `t`; `None` is Unknown.
    pub fn value_at(&self, t: Time) -> Option<Value> {
        self.timeline.value_at(t)
    }

    /// The value at the key's latest event time.
    pub fn value_at_end(&self) -> Option<Value> {
        self.value_at(self.latest?)
    }
}

/// What every leaf of a key shares: its earliest and latest event times, and
/// how many events it received (repeats included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyClock {
    /// Earliest event time.
    pub origin: Option<Time>,
    /// Latest event time.
    pub latest: Option<Time>,
    /// Events received.
    pub events: u64,
}

impl KeyClock {
    /// Takes in an event at `t`.
    pub fn observe(&mut self, t: Time) {
        self.events += 1;
        self.origin = Some(self.origin.map_or(t, |o| o.min(t)));
        self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
    }
}

/// The operator-specific part of a leaf's state (without the key's origin and
/// latest time, which all leaves of a key share).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeafData {
    /// State of `latest_event_to_state`.
    LatestEventToState(LatestEventToState),
    /// State of `has_existed`.
    HasExisted(HasExisted),
    /// State of `has_existed_within`.
    HasExistedWithin(HasExistedWithin),
    /// State of `time_since`.
    TimeSince(TimeSince),
    /// State of `sequence`.
    Sequence(Sequence),
    /// State of `absent_after`.
    AbsentAfter(AbsentAfter),
}

impl LeafData {
    /// The state of `op` before any event.
    pub fn new(op: &LeafOp) -> Self {
        match op {
            LeafOp::LatestEventToState { .. } => LeafData::LatestEventToState(LatestEventToState::default()),
            LeafOp::HasExisted { .. } => LeafData::HasExisted(HasExisted::default()),
            LeafOp::HasExistedWithin { .. } => LeafData::HasExistedWithin(HasExistedWithin::default()),
            LeafOp::TimeSince { .. } => LeafData::TimeSince(TimeSince::default()),
            LeafOp::Sequence { .. } => LeafData::Sequence(Sequence::default()),
            LeafOp::AbsentAfter { .. } => LeafData::AbsentAfter(AbsentAfter::default()),
        }
    }

    /// Applies one event; `op` must be the operator the state was made for,
    /// `values` the node's value table.
    pub fn apply(&mut self, op: &LeafOp, values: &mut ValueTable, event: &Event) {
        match (self, op) {
            (LeafData::LatestEventToState(state), LeafOp::LatestEventToState { column }) => {
                if let Some(value) = event.column(column) {
                    state.apply(values, event.time, event.id.as_ref(), value);
                }
            }
            (LeafData::HasExisted(state), LeafOp::HasExisted { predicate }) => {
                if predicate.matches(event) {
                    state.apply(event.time);
                }
            }
            (LeafData::HasExistedWithin(state), LeafOp::HasExistedWithin { predicate, within_ms }) => {
                if predicate.matches(event) {
                    state.apply(event.time, *within_ms);
                }
            }
            (LeafData::TimeSince(state), LeafOp::TimeSince { predicate }) => {
                if predicate.matches(event) {
                    state.apply(event.time);
                }
            }
            (LeafData::Sequence(state), LeafOp::Sequence { steps, within_ms }) => {
                // At most 32 steps (the DSL's limit): one bit each.
                let matched = steps
                    .iter()
                    .take(32)
                    .enumerate()
                    .filter(|(_, p)| p.matches(event))
                    .fold(0u32, |bits, (i, _)| bits | 1 << i);
                if matched != 0 {
                    let key = EventKey::new(event.time, event.id.as_ref());
                    state.apply(steps.len().min(32), within_ms.unwrap_or(i64::MAX), key, matched);
                }
            }
            (
                LeafData::AbsentAfter(state),
                LeafOp::AbsentAfter {
                    start,
                    completion,
                    within_ms,
                },
            ) => {
                let (starts, completes) = (start.matches(event), completion.matches(event));
                if starts || completes {
                    state.apply(
                        EventKey::new(event.time, event.id.as_ref()),
                        starts,
                        completes,
                        *within_ms,
                    );
                }
            }
            _ => debug_assert!(false, "leaf state applied with another operator"),
        }
    }

    /// The timeline of a key whose origin is `origin` (Unknown without one).
    pub fn timeline(&self, values: &ValueTable, origin: Option<Time>) -> Timeline {
        let Some(origin) = origin else {
            return Timeline::unknown();
        };
        match self {
            LeafData::LatestEventToState(s) => s.timeline(values, origin),
            LeafData::HasExisted(s) => s.timeline(origin),
            LeafData::HasExistedWithin(s) => s.timeline(origin),
            LeafData::TimeSince(s) => s.timeline(origin),
            LeafData::Sequence(s) => s.timeline(origin),
            LeafData::AbsentAfter(s) => s.timeline(origin),
        }
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        match self {
            LeafData::LatestEventToState(s) => s.heap_bytes(),
            LeafData::HasExisted(_) => 0,
            LeafData::HasExistedWithin(s) => s.heap_bytes(),
            LeafData::TimeSince(s) => s.heap_bytes(),
            LeafData::Sequence(s) => s.heap_bytes(),
            LeafData::AbsentAfter(s) => s.heap_bytes(),
        }
    }
}

/// Everything an event processor remembers for one key: the key's origin and
/// latest time, how many events it received, and the operator's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafState {
    #[serde(flatten)]
    clock: KeyClock,
    data: LeafData,
    values: ValueTable,
}

impl LeafState {
    /// The state of a worker for `op` that has seen no event.
    pub fn new(op: &LeafOp) -> Self {
        LeafState {
            clock: KeyClock::default(),
            data: LeafData::new(op),
            values: ValueTable::default(),
        }
    }

    /// Applies one event of the key. `op` must be the operator the state was
    /// made for. Events that do not concern the operator still move the key's
    /// origin and latest time.
    pub fn apply(&mut self, op: &LeafOp, event: &Event) {
        self.clock.observe(event.time);
        self.data.apply(op, &mut self.values, event);
    }

    /// The leaf's timeline and the key's latest time.
    pub fn output(&self) -> Output {
        Output {
            timeline: self.data.timeline(&self.values, self.clock.origin),
            latest: self.clock.latest,
        }
    }

    /// The key's clock as this leaf saw it.
    pub fn clock(&self) -> KeyClock {
        self.clock
    }

    /// Earliest event time of the key.
    pub fn origin(&self) -> Option<Time> {
        self.clock.origin
    }

    /// Latest event time of the key.
    pub fn latest(&self) -> Option<Time> {
        self.clock.latest
    }

    /// Number of events received (repeats included).
    pub fn events(&self) -> u64 {
        self.clock.events
    }

    /// Drops what only events later than `horizon` ms behind the latest event
    /// could still need (see [`LatestEventToState::forget_repeats_before`]).
    pub fn compact(&mut self, horizon: i64) {
        if let (LeafData::LatestEventToState(state), Some(latest)) = (&mut self.data, self.clock.latest) {
            state.forget_repeats_before(latest.saturating_sub(horizon));
        }
    }

    /// Approximate bytes held, the struct included.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.data.heap_bytes() + self.values.len() * std::mem::size_of::<Value>()
    }
}

/// A description of a worker: what it computes and how much it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerDescription {
    /// The node.
    pub node: NodeId,
    /// Event or timeline processor.
    pub kind: WorkerKind,
    /// Operator name.
    pub operator: String,
    /// Canonical DSL of the node.
    pub expression: String,
    /// Children's node ids.
    pub children: Vec<NodeId>,
    /// Events received (event processors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// The key's earliest event time.
    pub origin: Option<Time>,
    /// The key's latest event time.
    pub latest: Option<Time>,
    /// Number of spans in the timeline.
    pub spans: usize,
}

impl WorkerDescription {
    /// The description of the worker of `node` whose output is `output`;
    /// `events` for leaves.
    pub fn new(node: &crate::plan::PlanNode, output: &Output, events: Option<u64>) -> Self {
        WorkerDescription {
            node: node.id.clone(),
            kind: node.worker,
            operator: node.operator.name().to_string(),
            expression: node.expression.clone(),
            children: node.children.clone(),
            events,
            origin: output.timeline.origin(),
            latest: output.latest,
            spans: output.timeline.len(),
        }
    }
}

/// A leaf worker: one leaf operator, one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventProcessor {
    op: LeafOp,
    state: LeafState,
}

impl EventProcessor {
    /// A worker for `op` that has seen no event.
    pub fn new(op: LeafOp) -> Self {
        let state = LeafState::new(&op);
        EventProcessor { op, state }
    }

    /// The operator.
    pub fn op(&self) -> &LeafOp {
        &self.op
    }

    /// The state.
    pub fn state(&self) -> &LeafState {
        &self.state
    }

    /// Applies events of the worker's key, in any order.
    pub fn add_events<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for event in events {
            self.state.apply(&self.op, event);
        }
    }

    /// The timeline and latest time.
    pub fn output(&self) -> Output {
        self.state.output()
    }
}
