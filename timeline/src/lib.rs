//! Timeline analytics: the model every Golem Timeline runtime computes.
//!
//! # The model
//!
//! Events of a *key* (a session, a card, a machine) arrive in any order. Each
//! node of a query is a **timeline**: for every millisecond `t`, a value or
//! Unknown, stored as run-length [`Span`]s ([`timeline`]). Leaf nodes turn events
//! into timelines; derived nodes turn timelines into timelines ([`ops`], one
//! operator per file). A query ([`dsl`]) is a tree of such nodes,
//! [`TimeLineOp`] ([`op`]), flattened into an [`ExecutionPlan`] ([`plan`]) of
//! workers, one per node and key ([`worker`]). Across keys, an aggregate
//! ([`aggregate`]) folds a node's per-key timelines by group, and a metric
//! ([`metric`]) combines aggregates.
//!
//! # Key decisions
//!
//! - **Leaf states are joins of their events.** Each leaf keeps the least state
//!   from which its timeline follows for *any* set of events: the earliest match
//!   (`has_existed`), the union of windows (`has_existed_within`), the winning
//!   write per instant (`latest_event_to_state`). Applying the same event twice,
//!   or events in another order, gives the same state: late and repeated events
//!   are exact without buffering or watermarks, and no raw event is kept.
//! - **Derived nodes hold no state.** They are recomputed from the leaves below
//!   them on demand, in time linear in the number of spans, so a late event
//!   changes every result above it at once. One evaluator does this for every
//!   runtime ([`Evaluation`]): only where the leaves' outputs come from differs.
//! - **Durations are rising spans**, not a span per millisecond, and comparisons
//!   split them at the exact crossing instant.
//! - **Node ids are content hashes** of a canonical form (commutative operands
//!   sorted), so equal sub-expressions of any two jobs name the same worker.
//! - **Aggregates hold timelines.** Each key contributes its whole per-key
//!   timeline (masked to its time in the group), replaced when a late event
//!   changes it, so an aggregate is exact at any instant.
//! - **No I/O here.** Parsing, operators and plans are pure; runtimes add
//!   transport and durability around [`worker`] and nothing else.
//!
//! # Layers
//!
//! Each module imports only those below it, the algebra first:
//! [`value`] (with [`Time`]) and [`id`] (column identifiers, node ids);
//! [`timeline`] (and [`changes`], the difference of two), [`event`] and [`stream`]; [`repeats`] (which delivery of an id is the event); [`predicate`] and [`ops`]; [`op`] (per-key
//! nodes); [`aggregate`] and [`metric`]; [`plan`] (every node kind,
//! [`Operator`], and a job's outputs); [`worker`] (leaf state, the
//! evaluator); [`dsl`]; [`registry`] (jobs: DSL in, plans out).
//!
//! The exact semantics are in `docs/semantics.md`; this crate is its reference
//! implementation.

#![deny(missing_docs)]

pub mod aggregate;
pub mod changes;
pub mod dsl;
pub mod event;
pub mod id;
pub mod metric;
pub mod op;
pub mod ops;
pub mod plan;
pub mod predicate;
pub mod registry;
pub mod repeats;
pub mod stream;
pub mod timeline;
pub mod value;
pub mod worker;

pub use aggregate::{AggFn, AggregateNode, AggregateSpec, Aggregator, Group, GroupAggregator, Partial};
pub use event::{Event, EventError, EventParser};
pub use id::{NodeId, WorkerKind};
pub use metric::{ArithOp, MetricExpr, MetricNode};
pub use op::{DerivedOp, KeyOp, LeafOp, TimeLineOp, TimelineType, WorkerDetail};
pub use ops::latest_event_to_state::ValueTable;
pub use plan::{AggregateDefinition, ExecutionPlan, Operator, PlanNode};
pub use predicate::Predicate;
pub use stream::{Columns, StreamSpec};
pub use timeline::{Span, SpanValue, SpanView, Timeline};
pub use value::{CmpOp, MAX_TIME, MIN_TIME, Time, Value};
pub use worker::{
    CompiledPlan, EvalError, Evaluation, EventProcessor, Inputs, KeyClock, LeafData, LeafState, Output,
    WorkerDescription,
};
