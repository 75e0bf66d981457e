//! `TimeLineOp`: the operator tree, each node annotated with its worker.

use std::fmt;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::id::{NodeId, WorkerKind};
use crate::ops;
use crate::predicate::Predicate;
use crate::timeline::Timeline;
use crate::value::{CmpOp, Value};

/// What a timeline holds at each instant, as far as types are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineType {
    /// true / false (/ Unknown).
    Bool,
    /// The values of a column: any scalar type, known only at run time.
    State,
    /// Whole milliseconds, possibly rising.
    Duration,
    /// A whole number that counts something (`count_where`).
    Count,
}

impl TimelineType {
    /// How the type is named in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            TimelineType::Bool => "a boolean timeline",
            TimelineType::State => "a state timeline (the values of a column)",
            TimelineType::Duration => "a duration timeline (milliseconds)",
            TimelineType::Count => "a count timeline",
        }
    }
}

/// A leaf operator: run by an event processor, events in, timeline out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeafOp {
    /// `latest_event_to_state(column)`
    LatestEventToState {
        /// The column whose latest value is the state.
        column: SmolStr,
    },
    /// `has_existed(predicate)`
    HasExisted {
        /// The test of an event.
        predicate: Predicate,
    },
    /// `has_existed_within(predicate, within)`
    HasExistedWithin {
        /// The test of an event.
        predicate: Predicate,
        /// Window length in ms, > 0.
        within_ms: i64,
    },
}

/// A derived operator: run by a timeline processor from its children's timelines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DerivedOp {
    /// `child op value`
    Compare {
        /// The comparison.
        op: CmpOp,
        /// The literal.
        value: Value,
    },
    /// `a && b`
    And,
    /// `a || b`
    Or,
    /// `!a`
    Not,
    /// `duration_where(b)`
    DurationWhere,
    /// `duration_in_cur_state(tl)`
    DurationInCurState,
    /// `count_where(b)`
    CountWhere,
}

impl DerivedOp {
    /// Computes this operator's timeline from its children's, in order.
    /// Missing children are Unknown.
    pub fn evaluate(&self, children: &[&Timeline]) -> Timeline {
        let unknown = Timeline::unknown();
        let child = |i: usize| children.get(i).copied().unwrap_or(&unknown);
        match self {
            DerivedOp::Compare { op, value } => ops::compare::compare(child(0), *op, value),
            DerivedOp::And => ops::and::and(child(0), child(1)),
            DerivedOp::Or => ops::or::or(child(0), child(1)),
            DerivedOp::Not => ops::not::not(child(0)),
            DerivedOp::DurationWhere => ops::duration_where::duration_where(child(0)),
            DerivedOp::DurationInCurState => ops::duration_in_cur_state::duration_in_cur_state(child(0)),
            DerivedOp::CountWhere => ops::count_where::count_where(child(0)),
        }
    }

    /// Number of children the operator takes.
    pub fn arity(&self) -> usize {
        match self {
            DerivedOp::And | DerivedOp::Or => 2,
            _ => 1,
        }
    }
}

/// A per-key node's operator: a leaf (events in) or a derived node
/// (timelines in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOp {
    /// Run by an event processor.
    Leaf(LeafOp),
    /// Run by a timeline processor.
    Derived(DerivedOp),
}

impl KeyOp {
    /// The operator's DSL name: `has_existed`, `and`, `compare`, ...
    pub fn name(&self) -> &'static str {
        match self {
            KeyOp::Leaf(LeafOp::LatestEventToState { .. }) => "latest_event_to_state",
            KeyOp::Leaf(LeafOp::HasExisted { .. }) => "has_existed",
            KeyOp::Leaf(LeafOp::HasExistedWithin { .. }) => "has_existed_within",
            KeyOp::Derived(DerivedOp::Compare { .. }) => "compare",
            KeyOp::Derived(DerivedOp::And) => "and",
            KeyOp::Derived(DerivedOp::Or) => "or",
            KeyOp::Derived(DerivedOp::Not) => "not",
            KeyOp::Derived(DerivedOp::DurationWhere) => "duration_where",
            KeyOp::Derived(DerivedOp::DurationInCurState) => "duration_in_cur_state",
            KeyOp::Derived(DerivedOp::CountWhere) => "count_where",
        }
    }

    /// The kind of worker that runs it.
    pub fn worker_kind(&self) -> WorkerKind {
        match self {
            KeyOp::Leaf(_) => WorkerKind::EventProcessor,
            KeyOp::Derived(_) => WorkerKind::TimelineProcessor,
        }
    }
}

/// Which worker runs a node (for one key): the article's `WorkerDetail`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerDetail {
    /// Event processor or timeline processor.
    pub kind: WorkerKind,
    /// The node the worker computes.
    pub node: NodeId,
}

/// A type error in an operator tree built in Rust (the DSL reports these with
/// positions instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operator} expects {expected}, but its input `{input}` is {found}")]
pub struct TypeError {
    /// The operator whose input is wrong.
    pub operator: &'static str,
    /// What it expects.
    pub expected: &'static str,
    /// The input's canonical form.
    pub input: String,
    /// What the input is.
    pub found: &'static str,
}

/// A node of the operator tree: an operator, its children and its worker.
///
/// Fields are private: the canonical form and the worker are derived from the
/// content when the node is built, so they always agree with it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeLineOp {
    operator: KeyOp,
    children: Vec<TimeLineOp>,
    canonical: String,
    worker: WorkerDetail,
}

impl TimeLineOp {
    /// A leaf node.
    pub fn leaf(op: LeafOp) -> TimeLineOp {
        let op = match op {
            LeafOp::HasExisted { predicate } => LeafOp::HasExisted {
                predicate: predicate.canonical(),
            },
            LeafOp::HasExistedWithin { predicate, within_ms } => LeafOp::HasExistedWithin {
                predicate: predicate.canonical(),
                within_ms,
            },
            other => other,
        };
        Self::node(KeyOp::Leaf(op), Vec::new())
    }

    /// `latest_event_to_state(column)`
    pub fn latest_event_to_state(column: &str) -> TimeLineOp {
        Self::leaf(LeafOp::LatestEventToState {
            column: SmolStr::new(column),
        })
    }

    /// `has_existed(predicate)`
    pub fn has_existed(predicate: Predicate) -> TimeLineOp {
        Self::leaf(LeafOp::HasExisted { predicate })
    }

    /// `has_existed_within(predicate, within_ms)`; a window under 1 ms is 1 ms.
    pub fn has_existed_within(predicate: Predicate, within_ms: i64) -> TimeLineOp {
        Self::leaf(LeafOp::HasExistedWithin {
            predicate,
            within_ms: within_ms.max(1),
        })
    }

    /// `self op value`
    pub fn compare(self, op: CmpOp, value: impl Into<Value>) -> TimeLineOp {
        Self::node(
            KeyOp::Derived(DerivedOp::Compare {
                op,
                value: value.into(),
            }),
            vec![self],
        )
    }

    /// `self && other` (operands in canonical order).
    pub fn and(self, other: TimeLineOp) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::And), commutative(self, other))
    }

    /// `self || other` (operands in canonical order).
    pub fn or(self, other: TimeLineOp) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::Or), commutative(self, other))
    }

    /// `!self`
    pub fn negate(self) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::Not), vec![self])
    }

    /// `duration_where(self)`
    pub fn duration_where(self) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::DurationWhere), vec![self])
    }

    /// `duration_in_cur_state(self)`
    pub fn duration_in_cur_state(self) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::DurationInCurState), vec![self])
    }

    /// `count_where(self)`
    pub fn count_where(self) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::CountWhere), vec![self])
    }

    fn node(operator: KeyOp, children: Vec<TimeLineOp>) -> TimeLineOp {
        let canonical = render(&operator, &children);
        let worker = WorkerDetail {
            kind: operator.worker_kind(),
            node: NodeId::derive(operator.name(), &canonical),
        };
        TimeLineOp {
            operator,
            children,
            canonical,
            worker,
        }
    }

    /// The node's operator.
    pub fn operator(&self) -> &KeyOp {
        &self.operator
    }

    /// The node's inputs (none for a leaf).
    pub fn children(&self) -> &[TimeLineOp] {
        &self.children
    }

    /// The worker that runs the node.
    pub fn worker(&self) -> &WorkerDetail {
        &self.worker
    }

    /// The node's id (its worker's name, per key).
    pub fn id(&self) -> &NodeId {
        &self.worker.node
    }

    /// Whether an event processor runs it.
    pub fn is_leaf(&self) -> bool {
        matches!(self.operator, KeyOp::Leaf(_))
    }

    /// The canonical form: valid DSL, equal for equal sub-expressions.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The type of the timeline the node computes (assuming its inputs are
    /// well typed; see [`TimeLineOp::check`]).
    pub fn output_type(&self) -> TimelineType {
        match &self.operator {
            KeyOp::Leaf(LeafOp::LatestEventToState { .. }) => TimelineType::State,
            KeyOp::Leaf(_) => TimelineType::Bool,
            KeyOp::Derived(DerivedOp::DurationWhere | DerivedOp::DurationInCurState) => TimelineType::Duration,
            KeyOp::Derived(DerivedOp::CountWhere) => TimelineType::Count,
            KeyOp::Derived(_) => TimelineType::Bool,
        }
    }

    /// Checks that every operator gets inputs of the type it needs.
    pub fn check(&self) -> Result<TimelineType, TypeError> {
        for child in &self.children {
            child.check()?;
        }
        let needs_bool = matches!(
            self.operator,
            KeyOp::Derived(
                DerivedOp::And | DerivedOp::Or | DerivedOp::Not | DerivedOp::DurationWhere | DerivedOp::CountWhere
            )
        );
        if needs_bool {
            for child in &self.children {
                let found = child.output_type();
                if found != TimelineType::Bool {
                    return Err(TypeError {
                        operator: self.operator.name(),
                        expected: TimelineType::Bool.describe(),
                        input: child.canonical.clone(),
                        found: found.describe(),
                    });
                }
            }
        }
        Ok(self.output_type())
    }

    /// Every node, children before parents, each once (by id).
    pub fn post_order(&self) -> Vec<&TimeLineOp> {
        fn walk<'a>(node: &'a TimeLineOp, seen: &mut Vec<&'a NodeId>, out: &mut Vec<&'a TimeLineOp>) {
            for child in &node.children {
                walk(child, seen, out);
            }
            if !seen.contains(&node.id()) {
                seen.push(node.id());
                out.push(node);
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }
}

fn commutative(a: TimeLineOp, b: TimeLineOp) -> Vec<TimeLineOp> {
    if b.canonical < a.canonical {
        vec![b, a]
    } else {
        vec![a, b]
    }
}

fn render(operator: &KeyOp, children: &[TimeLineOp]) -> String {
    let child = |i: usize| children.get(i).map_or("", |c| c.canonical.as_str());
    match operator {
        KeyOp::Leaf(LeafOp::LatestEventToState { column }) => {
            format!("latest_event_to_state({})", crate::id::identifier(column))
        }
        KeyOp::Leaf(LeafOp::HasExisted { predicate }) => format!("has_existed({predicate})"),
        KeyOp::Leaf(LeafOp::HasExistedWithin { predicate, within_ms }) => {
            format!("has_existed_within({predicate}, {within_ms}ms)")
        }
        KeyOp::Derived(DerivedOp::Compare { op, value }) => format!("({} {op} {value})", child(0)),
        KeyOp::Derived(DerivedOp::And) => format!("({} && {})", child(0), child(1)),
        KeyOp::Derived(DerivedOp::Or) => format!("({} || {})", child(0), child(1)),
        KeyOp::Derived(DerivedOp::Not) => format!("!{}", child(0)),
        KeyOp::Derived(DerivedOp::DurationWhere) => format!("duration_where({})", child(0)),
        KeyOp::Derived(DerivedOp::DurationInCurState) => format!("duration_in_cur_state({})", child(0)),
        KeyOp::Derived(DerivedOp::CountWhere) => format!("count_where({})", child(0)),
    }
}

impl fmt::Display for TimeLineOp {
    /// The canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn equal_subexpressions_share_an_id_and_commute() {
        let play = || TimeLineOp::has_existed(Predicate::compare("s", CmpOp::Eq, "play"));
        let cdn = || TimeLineOp::latest_event_to_state("cdn").compare(CmpOp::Eq, "CDN1");
        let a = play().and(cdn());
        let b = cdn().and(play());
        assert_eq!(a.id(), b.id());
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(a.id(), play().or(cdn()).id());
        assert!(a.id().as_str().starts_with("and-"));
        assert_eq!(NodeId::parse(a.id().as_str()).as_ref(), Some(a.id()));
        assert_eq!(a.id().worker_kind(), WorkerKind::TimelineProcessor);
        assert_eq!(play().id().worker_kind(), WorkerKind::EventProcessor);
        assert_eq!(a.worker().kind, WorkerKind::TimelineProcessor);
        assert_eq!(play().worker().kind, WorkerKind::EventProcessor);
    }

    #[test]
    fn ids_are_stable_across_releases() {
        // Worker names are persisted and shared between runtimes: never change them.
        let op = TimeLineOp::latest_event_to_state("cdnChange").compare(CmpOp::Eq, "CDN1");
        assert_eq!(op.canonical(), r#"(latest_event_to_state(cdnChange) == "CDN1")"#);
        assert_eq!(op.id().as_str(), "compare-".to_string() + &op.id().as_str()[8..]);
        let digest = Sha256::digest(op.canonical().as_bytes());
        assert_eq!(&op.id().as_str()[8..10], format!("{:02x}", digest[0]));
    }

    #[test]
    fn type_check_names_the_bad_input() {
        let state = TimeLineOp::latest_event_to_state("cdn");
        let err = state.clone().duration_where().check().unwrap_err();
        assert!(
            err.to_string().contains("duration_where expects a boolean timeline"),
            "{err}"
        );
        assert!(state.clone().duration_in_cur_state().check().is_ok());
        assert!(state.clone().negate().check().is_err());
        assert_eq!(
            state.compare(CmpOp::Eq, "x").duration_where().check(),
            Ok(TimelineType::Duration)
        );
    }

    #[test]
    fn post_order_lists_shared_nodes_once() {
        let x = TimeLineOp::has_existed(Predicate::compare("a", CmpOp::Eq, 1));
        let tree = x.clone().and(x.clone().negate());
        let names: Vec<_> = tree.post_order().iter().map(|n| n.operator().name()).collect();
        assert_eq!(names, ["has_existed", "not", "and"]);
    }
}
