//! `TimeLineOp`: the operator tree, each node annotated with its worker.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::id::{NodeId, WorkerKind};
use crate::ops;
pub use crate::ops::window::Window;
use crate::predicate::Predicate;
use crate::timeline::Timeline;
use crate::value::{CmpOp, Time, Value};

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
    /// `time_since(predicate)`
    TimeSince {
        /// The test of an event.
        predicate: Predicate,
    },
    /// `sequence(p1, ..., pn, within(d))`
    Sequence {
        /// The test of each step's event, in order (at least two).
        steps: Vec<Predicate>,
        /// Most ms from the first step's event to the last's (`None`: any).
        within_ms: Option<i64>,
    },
    /// `absent_after(start, completion, within)`
    AbsentAfter {
        /// What starts (an order placed).
        start: Predicate,
        /// What completes it (the order paid).
        completion: Predicate,
        /// How long a start may wait for its completion, in ms, > 0.
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
    /// `duration_where(b, window)`
    DurationWhereIn {
        /// The window.
        window: Window,
    },
    /// `count_where(b, window)`
    CountWhereIn {
        /// The window.
        window: Window,
    },
    /// `previous(tl)`
    Previous,
    /// `true_within(b, within)`
    TrueWithin {
        /// Window length in ms, > 0.
        within_ms: i64,
    },
}

impl DerivedOp {
    /// Computes this operator's timeline from its children's, in order, for
    /// a key whose latest event time is `latest`. Missing children are
    /// Unknown.
    pub fn evaluate(&self, children: &[&Timeline], latest: Option<Time>) -> Timeline {
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
            DerivedOp::DurationWhereIn { window } => ops::duration_where::duration_where_in(child(0), *window, latest),
            DerivedOp::CountWhereIn { window } => ops::count_where::count_where_in(child(0), *window),
            DerivedOp::Previous => ops::previous::previous(child(0)),
            DerivedOp::TrueWithin { within_ms } => ops::true_within::true_within(child(0), *within_ms),
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
            KeyOp::Leaf(LeafOp::TimeSince { .. }) => "time_since",
            KeyOp::Leaf(LeafOp::Sequence { .. }) => "sequence",
            KeyOp::Leaf(LeafOp::AbsentAfter { .. }) => "absent_after",
            KeyOp::Derived(DerivedOp::Compare { .. }) => "compare",
            KeyOp::Derived(DerivedOp::And) => "and",
            KeyOp::Derived(DerivedOp::Or) => "or",
            KeyOp::Derived(DerivedOp::Not) => "not",
            KeyOp::Derived(DerivedOp::DurationWhere) => "duration_where",
            KeyOp::Derived(DerivedOp::DurationInCurState) => "duration_in_cur_state",
            KeyOp::Derived(DerivedOp::CountWhere | DerivedOp::CountWhereIn { .. }) => "count_where",
            KeyOp::Derived(DerivedOp::DurationWhereIn { .. }) => "duration_where",
            KeyOp::Derived(DerivedOp::Previous) => "previous",
            KeyOp::Derived(DerivedOp::TrueWithin { .. }) => "true_within",
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
/// Cheap to clone: nodes are shared, so a `let` binding used twice is one
/// node. The id derives from the operator and the children's ids (a leaf's
/// from its canonical DSL), so building a node costs the same at any depth,
/// and no method recurses over the tree.
#[derive(Clone)]
pub struct TimeLineOp(Arc<Node>);

struct Node {
    operator: KeyOp,
    children: Vec<TimeLineOp>,
    /// What the id hashes: a leaf's canonical DSL; for a derived node, its
    /// operator with the children's ids.
    key: String,
    /// Length in bytes of the full canonical DSL (saturating).
    dsl_len: usize,
    worker: WorkerDetail,
}

impl Drop for Node {
    /// Frees a deep chain (e.g. of `let` bindings) without recursion.
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.children);
        while let Some(child) = stack.pop() {
            if let Some(mut node) = Arc::into_inner(child.0) {
                stack.append(&mut node.children);
            }
        }
    }
}

/// Longest [`TimeLineOp::description`], in bytes, before children are
/// named by id.
pub const DESCRIPTION_LIMIT: usize = 120;

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
            LeafOp::TimeSince { predicate } => LeafOp::TimeSince {
                predicate: predicate.canonical(),
            },
            LeafOp::Sequence { steps, within_ms } => LeafOp::Sequence {
                steps: steps.into_iter().map(|p| p.canonical()).collect(),
                within_ms,
            },
            LeafOp::AbsentAfter {
                start,
                completion,
                within_ms,
            } => LeafOp::AbsentAfter {
                start: start.canonical(),
                completion: completion.canonical(),
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

    /// `time_since(predicate)`
    pub fn time_since(predicate: Predicate) -> TimeLineOp {
        Self::leaf(LeafOp::TimeSince { predicate })
    }

    /// `sequence(steps..., within(within_ms))` (`None`: no bound); a bound
    /// under 1 ms is 1 ms.
    pub fn sequence(steps: Vec<Predicate>, within_ms: Option<i64>) -> TimeLineOp {
        Self::leaf(LeafOp::Sequence {
            steps,
            within_ms: within_ms.map(|d| d.max(1)),
        })
    }

    /// `absent_after(start, completion, within_ms)`; a window under 1 ms is
    /// 1 ms.
    pub fn absent_after(start: Predicate, completion: Predicate, within_ms: i64) -> TimeLineOp {
        Self::leaf(LeafOp::AbsentAfter {
            start,
            completion,
            within_ms: within_ms.max(1),
        })
    }

    /// `duration_where(self, window)`
    pub fn duration_where_in(self, window: Window) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::DurationWhereIn { window }), vec![self])
    }

    /// `count_where(self, window)`
    pub fn count_where_in(self, window: Window) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::CountWhereIn { window }), vec![self])
    }

    /// `previous(self)`
    pub fn previous(self) -> TimeLineOp {
        Self::node(KeyOp::Derived(DerivedOp::Previous), vec![self])
    }

    /// `true_within(self, within_ms)`; a window under 1 ms is 1 ms.
    pub fn true_within(self, within_ms: i64) -> TimeLineOp {
        Self::node(
            KeyOp::Derived(DerivedOp::TrueWithin {
                within_ms: within_ms.max(1),
            }),
            vec![self],
        )
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
        let (key, dsl_len) = match &operator {
            KeyOp::Leaf(leaf) => {
                let text = render_leaf(leaf);
                let len = text.len();
                (text, len)
            }
            KeyOp::Derived(op) => {
                let (prefix, separator, suffix) = template(op);
                let ids: Vec<&str> = children.iter().map(|c| c.id().as_str()).collect();
                let key = format!("{prefix}{}{suffix}", ids.join(separator));
                let len = children
                    .iter()
                    .fold(prefix.len() + suffix.len(), |n, c| n.saturating_add(c.0.dsl_len))
                    .saturating_add(separator.len() * children.len().saturating_sub(1));
                (key, len)
            }
        };
        let worker = WorkerDetail {
            kind: operator.worker_kind(),
            node: NodeId::derive(operator.name(), &key),
        };
        TimeLineOp(Arc::new(Node {
            operator,
            children,
            key,
            dsl_len,
            worker,
        }))
    }

    /// The node's operator.
    pub fn operator(&self) -> &KeyOp {
        &self.0.operator
    }

    /// The node's inputs (none for a leaf).
    pub fn children(&self) -> &[TimeLineOp] {
        &self.0.children
    }

    /// The worker that runs the node.
    pub fn worker(&self) -> &WorkerDetail {
        &self.0.worker
    }

    /// The node's id (its worker's name, per key).
    pub fn id(&self) -> &NodeId {
        &self.0.worker.node
    }

    /// Whether an event processor runs it.
    pub fn is_leaf(&self) -> bool {
        matches!(self.0.operator, KeyOp::Leaf(_))
    }

    /// Length in bytes of [`TimeLineOp::canonical`], without writing it
    /// (saturating: a tree of shared bindings can unfold to any size).
    pub fn canonical_len(&self) -> usize {
        self.0.dsl_len
    }

    /// The canonical form: valid DSL, equal for equal sub-expressions, with
    /// every shared binding written out in full (see
    /// [`TimeLineOp::canonical_len`] before writing a large one).
    pub fn canonical(&self) -> String {
        enum Step<'a> {
            Node(&'a TimeLineOp),
            Text(String),
        }
        let mut out = String::with_capacity(self.0.dsl_len.min(1 << 20));
        let mut stack = vec![Step::Node(self)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Text(text) => out.push_str(&text),
                Step::Node(node) => match &node.0.operator {
                    KeyOp::Leaf(_) => out.push_str(&node.0.key),
                    KeyOp::Derived(op) => {
                        let (prefix, separator, suffix) = template(op);
                        out.push_str(prefix);
                        stack.push(Step::Text(suffix));
                        for (i, child) in node.0.children.iter().enumerate().rev() {
                            stack.push(Step::Node(child));
                            if i > 0 {
                                stack.push(Step::Text(separator.to_string()));
                            }
                        }
                    }
                },
            }
        }
        out
    }

    /// The node in DSL, at most about [`DESCRIPTION_LIMIT`] bytes beyond its
    /// own parameters: in full when short, else with its larger children
    /// written as their node ids.
    pub fn description(&self) -> String {
        if self.0.dsl_len <= DESCRIPTION_LIMIT {
            return self.canonical();
        }
        let KeyOp::Derived(op) = &self.0.operator else {
            return self.0.key.clone();
        };
        let (prefix, separator, suffix) = template(op);
        let share = DESCRIPTION_LIMIT / self.0.children.len().max(1);
        let children: Vec<String> = self
            .0
            .children
            .iter()
            .map(|c| {
                if c.0.dsl_len <= share {
                    c.canonical()
                } else {
                    c.id().to_string()
                }
            })
            .collect();
        format!("{prefix}{}{suffix}", children.join(separator))
    }

    /// The type of the timeline the node computes (assuming its inputs are
    /// well typed; see [`TimeLineOp::check`]).
    pub fn output_type(&self) -> TimelineType {
        match &self.0.operator {
            KeyOp::Leaf(LeafOp::LatestEventToState { .. }) => TimelineType::State,
            KeyOp::Leaf(LeafOp::TimeSince { .. }) => TimelineType::Duration,
            KeyOp::Leaf(_) => TimelineType::Bool,
            KeyOp::Derived(DerivedOp::Previous) => self.0.children[0].output_type(),
            KeyOp::Derived(
                DerivedOp::DurationWhere | DerivedOp::DurationWhereIn { .. } | DerivedOp::DurationInCurState,
            ) => TimelineType::Duration,
            KeyOp::Derived(DerivedOp::CountWhere | DerivedOp::CountWhereIn { .. }) => TimelineType::Count,
            KeyOp::Derived(_) => TimelineType::Bool,
        }
    }

    /// Checks that every operator gets inputs of the type it needs.
    pub fn check(&self) -> Result<TimelineType, TypeError> {
        for node in self.post_order() {
            let needs_bool = matches!(
                node.0.operator,
                KeyOp::Derived(
                    DerivedOp::And
                        | DerivedOp::Or
                        | DerivedOp::Not
                        | DerivedOp::DurationWhere
                        | DerivedOp::CountWhere
                        | DerivedOp::DurationWhereIn { .. }
                        | DerivedOp::CountWhereIn { .. }
                        | DerivedOp::TrueWithin { .. }
                )
            );
            if !needs_bool {
                continue;
            }
            for child in &node.0.children {
                let found = child.output_type();
                if found != TimelineType::Bool {
                    return Err(TypeError {
                        operator: node.0.operator.name(),
                        expected: TimelineType::Bool.describe(),
                        input: child.description(),
                        found: found.describe(),
                    });
                }
            }
        }
        Ok(self.output_type())
    }

    /// Every node, children before parents, each once (by id).
    pub fn post_order(&self) -> Vec<&TimeLineOp> {
        let mut seen: HashSet<&NodeId> = HashSet::new();
        let mut out = Vec::new();
        // (node, whether its children are already listed)
        let mut stack = vec![(self, false)];
        while let Some((node, expanded)) = stack.pop() {
            if expanded {
                if seen.insert(node.id()) {
                    out.push(node);
                }
                continue;
            }
            if seen.contains(node.id()) {
                continue;
            }
            stack.push((node, true));
            for child in node.0.children.iter().rev() {
                if !seen.contains(child.id()) {
                    stack.push((child, false));
                }
            }
        }
        out
    }
}

impl PartialEq for TimeLineOp {
    /// Equal content, as the content-derived ids say.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.id() == other.id() && self.0.key == other.0.key)
    }
}

impl fmt::Debug for TimeLineOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeLineOp")
            .field("id", self.id())
            .field("description", &self.description())
            .finish()
    }
}

fn commutative(a: TimeLineOp, b: TimeLineOp) -> Vec<TimeLineOp> {
    if b.id() < a.id() { vec![b, a] } else { vec![a, b] }
}

/// A leaf's canonical DSL (what its id hashes: never change it).
fn render_leaf(leaf: &LeafOp) -> String {
    match leaf {
        LeafOp::LatestEventToState { column } => {
            format!("latest_event_to_state({})", crate::id::identifier(column))
        }
        LeafOp::HasExisted { predicate } => format!("has_existed({predicate})"),
        LeafOp::HasExistedWithin { predicate, within_ms } => {
            format!("has_existed_within({predicate}, {within_ms}ms)")
        }
        LeafOp::TimeSince { predicate } => format!("time_since({predicate})"),
        LeafOp::Sequence { steps, within_ms } => {
            let steps: Vec<String> = steps.iter().map(ToString::to_string).collect();
            match within_ms {
                Some(d) => format!("sequence({}, within({d}ms))", steps.join(", ")),
                None => format!("sequence({})", steps.join(", ")),
            }
        }
        LeafOp::AbsentAfter {
            start,
            completion,
            within_ms,
        } => format!("absent_after({start}, {completion}, {within_ms}ms)"),
    }
}

/// A derived operator's DSL around its children: prefix, separator between
/// children, suffix.
fn template(op: &DerivedOp) -> (&'static str, &'static str, String) {
    match op {
        DerivedOp::Compare { op, value } => ("(", "", format!(" {op} {value})")),
        DerivedOp::And => ("(", " && ", ")".to_string()),
        DerivedOp::Or => ("(", " || ", ")".to_string()),
        DerivedOp::Not => ("!", "", String::new()),
        DerivedOp::DurationWhere => ("duration_where(", "", ")".to_string()),
        DerivedOp::DurationInCurState => ("duration_in_cur_state(", "", ")".to_string()),
        DerivedOp::CountWhere => ("count_where(", "", ")".to_string()),
        DerivedOp::DurationWhereIn { window } => ("duration_where(", "", format!(", {})", window.dsl())),
        DerivedOp::CountWhereIn { window } => ("count_where(", "", format!(", {})", window.dsl())),
        DerivedOp::Previous => ("previous(", "", ")".to_string()),
        DerivedOp::TrueWithin { within_ms } => ("true_within(", "", format!(", {within_ms}ms)")),
    }
}

impl fmt::Display for TimeLineOp {
    /// The canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
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
        // Leaf ids are persisted in logs and name Golem agents: never change them.
        let leaf = TimeLineOp::latest_event_to_state("cdnChange");
        assert_eq!(leaf.canonical(), "latest_event_to_state(cdnChange)");
        assert_eq!(leaf.id().as_str(), "latest_event_to_state-a4d23168dec92f25");
        let play = TimeLineOp::has_existed(Predicate::compare("playerStateChange", CmpOp::Eq, "play"));
        assert_eq!(play.id().as_str(), "has_existed-ba0df940e9969ac1");
        // A derived node's id hashes its operator and its children's ids.
        let op = leaf.clone().compare(CmpOp::Eq, "CDN1");
        assert_eq!(op.canonical(), r#"(latest_event_to_state(cdnChange) == "CDN1")"#);
        let digest = Sha256::digest(format!(r#"({} == "CDN1")"#, leaf.id()).as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(op.id().as_str(), format!("compare-{hex}"));
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
