//! Execution plans: a job's operator tree flattened into named workers.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::aggregate::{AggFn, AggregateNode, AggregateSpec};
use crate::id::{NodeId, WorkerKind};
use crate::metric::{MetricExpr, MetricNode};
use crate::op::{DerivedOp, KeyOp, LeafOp, TimeLineOp, TypeError};
use crate::stream::StreamSpec;

/// Longest [`ExecutionPlan::query`] written in full, in bytes.
pub const QUERY_TEXT_LIMIT: usize = 64 * 1024;

/// A node's operator: per key (leaf or derived), or across keys (aggregate
/// or metric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Run by an event processor.
    Leaf(LeafOp),
    /// Run by a timeline processor.
    Derived(DerivedOp),
    /// Run by aggregators, one per group (and shard): children are the
    /// per-key source and, with `group_by`, the group column's leaf.
    Aggregate(AggregateSpec),
    /// Computed from its children, aggregate nodes, when read.
    Metric(MetricExpr),
}

impl Operator {
    /// The operator's DSL name: `has_existed`, `and`, `compare`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Operator::Leaf(op) => KeyOp::Leaf(op.clone()).name(),
            Operator::Derived(op) => KeyOp::Derived(op.clone()).name(),
            Operator::Aggregate(_) => "aggregate",
            Operator::Metric(_) => "metric",
        }
    }

    /// The kind of worker that runs it.
    pub fn worker_kind(&self) -> WorkerKind {
        match self {
            Operator::Leaf(_) => WorkerKind::EventProcessor,
            Operator::Derived(_) => WorkerKind::TimelineProcessor,
            Operator::Aggregate(_) => WorkerKind::Aggregator,
            Operator::Metric(_) => WorkerKind::Metric,
        }
    }
}

impl From<KeyOp> for Operator {
    fn from(op: KeyOp) -> Self {
        match op {
            KeyOp::Leaf(l) => Operator::Leaf(l),
            KeyOp::Derived(d) => Operator::Derived(d),
        }
    }
}

/// What a job computes under one name.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutput {
    /// A timeline per key.
    Timeline(TimeLineOp),
    /// An aggregate across keys, read with `functions`.
    Aggregate {
        /// The aggregate node.
        node: AggregateNode,
        /// The functions the output shows (the aggregator answers any).
        functions: Vec<AggFn>,
    },
    /// Arithmetic over aggregates.
    Metric(MetricNode),
}

impl JobOutput {
    /// The node that holds the output.
    pub fn id(&self) -> &NodeId {
        match self {
            JobOutput::Timeline(op) => op.id(),
            JobOutput::Aggregate { node, .. } => node.id(),
            JobOutput::Metric(m) => m.id(),
        }
    }

    /// The output in canonical DSL, every binding written out in full.
    pub fn canonical(&self) -> String {
        match self {
            JobOutput::Timeline(op) => op.canonical(),
            JobOutput::Aggregate { node, functions } => node.dsl(functions, true),
            JobOutput::Metric(m) => m.canonical(),
        }
    }

    /// The output in DSL, bounded: large parts named by node id.
    pub fn description(&self) -> String {
        match self {
            JobOutput::Timeline(op) => op.description(),
            JobOutput::Aggregate { node, functions } => node.description(functions, true),
            JobOutput::Metric(m) => m.description(),
        }
    }

    /// About the length of [`JobOutput::canonical`], without writing it.
    fn canonical_len(&self) -> usize {
        const PARAMETERS: usize = 200;
        match self {
            JobOutput::Timeline(op) => op.canonical_len(),
            JobOutput::Aggregate { node, .. } => node.source().canonical_len().saturating_add(PARAMETERS),
            JobOutput::Metric(m) => m.inputs().iter().fold(PARAMETERS, |n, i| {
                n.saturating_add(i.source().canonical_len()).saturating_add(PARAMETERS)
            }),
        }
    }
}

/// A named output of a job, and where to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanOutput {
    /// The name given in the query (`result` for a bare expression).
    pub name: String,
    /// The node that holds it.
    pub node: NodeId,
    /// Which kind of worker holds it.
    pub worker: WorkerKind,
    /// For aggregates: the functions shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<AggFn>,
    /// For aggregates and metrics: the group column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<SmolStr>,
}

/// One node of a plan: what it computes and which worker computes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    /// Content-derived id; with a key, it names the worker.
    pub id: NodeId,
    /// Event processor (leaf) or timeline processor (derived).
    pub worker: WorkerKind,
    /// The operator and its parameters.
    pub operator: Operator,
    /// The node in DSL: in full when short, else with its larger children
    /// named by id (bounded, see [`TimeLineOp::description`]).
    pub expression: String,
    /// Input nodes, in order.
    pub children: Vec<NodeId>,
    /// Whether another job already ran this node when the plan was made.
    #[serde(default)]
    pub reused: bool,
    /// For a leaf: the stream whose events it reads, when not the default
    /// one with the default fields (its workers parse events with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSpec>,
}

/// The execution plan of a job: every node, children before parents; the leaf
/// workers that events must reach; the worker that holds the result.
/// Flat (no recursion) so that it crosses agent boundaries as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPlan {
    /// The query in canonical DSL; when that would exceed
    /// [`QUERY_TEXT_LIMIT`] (shared bindings unfolded), each output's
    /// bounded description instead.
    pub query: String,
    /// Every node once, children before parents.
    pub nodes: Vec<PlanNode>,
    /// The leaves: where events go.
    pub leaves: Vec<NodeId>,
    /// The node of the last output: where the result is read.
    pub result: NodeId,
    /// Every named output, in the order of the query.
    #[serde(default)]
    pub outputs: Vec<PlanOutput>,
    /// The stream the job reads.
    #[serde(default, skip_serializing_if = "StreamSpec::is_default")]
    pub stream: StreamSpec,
}

impl ExecutionPlan {
    /// Type-checks `root` and flattens it: a job with one output, `result`.
    pub fn new(root: &TimeLineOp) -> Result<Self, TypeError> {
        Self::from_outputs(&[("result".to_string(), JobOutput::Timeline(root.clone()))])
    }

    /// Type-checks every output and flattens them into one plan: per-key
    /// nodes first (children before parents), then aggregates, then metrics;
    /// each node once.
    pub fn from_outputs(outputs: &[(String, JobOutput)]) -> Result<Self, TypeError> {
        let mut per_key: Vec<&TimeLineOp> = Vec::new();
        let mut aggregates: Vec<&AggregateNode> = Vec::new();
        let mut metrics: Vec<&MetricNode> = Vec::new();
        for (_, output) in outputs {
            match output {
                JobOutput::Timeline(op) => per_key.push(op),
                JobOutput::Aggregate { node, .. } => add_aggregate(&mut aggregates, node),
                JobOutput::Metric(m) => {
                    for input in m.inputs() {
                        add_aggregate(&mut aggregates, input);
                    }
                    if !metrics.iter().any(|x| x.id() == m.id()) {
                        metrics.push(m);
                    }
                }
            }
        }
        for a in &aggregates {
            per_key.push(a.source());
            per_key.extend(a.group());
        }
        let mut nodes: Vec<PlanNode> = Vec::new();
        let mut listed: HashSet<NodeId> = HashSet::new();
        for root in &per_key {
            root.check()?;
            for n in root.post_order() {
                if !listed.insert(n.id().clone()) {
                    continue;
                }
                nodes.push(PlanNode {
                    id: n.id().clone(),
                    worker: n.worker().kind,
                    operator: n.operator().clone().into(),
                    expression: n.description(),
                    children: n.children().iter().map(|c| c.id().clone()).collect(),
                    reused: false,
                    stream: None,
                });
            }
        }
        for a in &aggregates {
            nodes.push(PlanNode {
                id: a.id().clone(),
                worker: WorkerKind::Aggregator,
                operator: Operator::Aggregate(a.spec().clone()),
                expression: match &a.spec().group_by {
                    Some(column) => format!(
                        "aggregate({}, group_by({}))",
                        a.source().description(),
                        crate::id::identifier(column)
                    ),
                    None => format!("aggregate({})", a.source().description()),
                },
                children: std::iter::once(a.source())
                    .chain(a.group())
                    .map(|c| c.id().clone())
                    .collect(),
                reused: false,
                stream: None,
            });
        }
        for m in &metrics {
            nodes.push(PlanNode {
                id: m.id().clone(),
                worker: WorkerKind::Metric,
                operator: Operator::Metric(m.expr().clone()),
                expression: m.description(),
                children: m.inputs().iter().map(|i| i.id().clone()).collect(),
                reused: false,
                stream: None,
            });
        }
        let leaves = nodes
            .iter()
            .filter(|n| n.worker == WorkerKind::EventProcessor)
            .map(|n| n.id.clone())
            .collect();
        let plan_outputs: Vec<PlanOutput> = outputs
            .iter()
            .map(|(name, output)| PlanOutput {
                name: name.clone(),
                node: output.id().clone(),
                worker: match output {
                    // A leaf's timeline is its event processor's.
                    JobOutput::Timeline(op) => op.worker().kind,
                    JobOutput::Aggregate { .. } => WorkerKind::Aggregator,
                    JobOutput::Metric(_) => WorkerKind::Metric,
                },
                functions: match output {
                    JobOutput::Aggregate { functions, .. } => functions.clone(),
                    _ => Vec::new(),
                },
                group_by: match output {
                    JobOutput::Timeline(_) => None,
                    JobOutput::Aggregate { node, .. } => node.spec().group_by.clone(),
                    JobOutput::Metric(m) => m.group_by().map(SmolStr::new),
                },
            })
            .collect();
        let full = outputs
            .iter()
            .fold(0usize, |n, (_, o)| n.saturating_add(o.canonical_len()))
            <= QUERY_TEXT_LIMIT;
        let text = |o: &JobOutput| if full { o.canonical() } else { o.description() };
        let query = match outputs {
            [(name, output @ JobOutput::Timeline(_))] if name == "result" => text(output),
            _ => outputs
                .iter()
                .map(|(name, output)| format!("{name} = {};", text(output)))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let result = outputs
            .last()
            .map(|(_, o)| o.id().clone())
            .expect("a job has at least one output");
        Ok(ExecutionPlan {
            query,
            nodes,
            leaves,
            result,
            outputs: plan_outputs,
            stream: StreamSpec::default(),
        })
    }

    /// The plan reading `stream`. On a stream other than the default one,
    /// every node id is scoped to it ([`NodeId::in_stream`]), so equal
    /// sub-expressions share workers within one stream only; the canonical
    /// query starts with the stream's header.
    pub fn in_stream(mut self, stream: StreamSpec) -> Self {
        if !stream.is_default_stream() {
            let name = stream.name.clone();
            let scope = |id: &mut NodeId| *id = id.in_stream(&name);
            let scoped: HashMap<String, NodeId> = self
                .nodes
                .iter()
                .map(|n| (n.id.as_str().to_string(), n.id.in_stream(&name)))
                .collect();
            for node in &mut self.nodes {
                scope(&mut node.id);
                node.children.iter_mut().for_each(scope);
                node.expression = rename_ids(&node.expression, &scoped);
            }
            self.leaves.iter_mut().for_each(scope);
            scope(&mut self.result);
            for output in &mut self.outputs {
                scope(&mut output.node);
            }
        }
        let header = stream.header();
        if !header.is_empty() {
            self.query = format!("{header}\n{}", self.query);
        }
        if !stream.is_default() {
            for node in &mut self.nodes {
                if node.worker == WorkerKind::EventProcessor {
                    node.stream = Some(stream.clone());
                }
            }
        }
        self.stream = stream;
        self
    }

    /// The output named `name`.
    pub fn output(&self, name: &str) -> Option<&PlanOutput> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// The node with id `id`.
    pub fn node(&self, id: &NodeId) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// For each node, the positions of its children in `nodes`.
    pub fn child_indices(&self) -> Vec<Vec<usize>> {
        let position: HashMap<&NodeId, usize> = self.nodes.iter().enumerate().map(|(i, n)| (&n.id, i)).collect();
        self.nodes
            .iter()
            .map(|n| {
                n.children
                    .iter()
                    .map(|c| *position.get(c).expect("plans list children before parents"))
                    .collect()
            })
            .collect()
    }
}

/// An aggregate node's definition as its workers need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateDefinition {
    /// The node.
    pub id: NodeId,
    /// Grouping and sharding.
    pub spec: AggregateSpec,
    /// The per-key source node.
    pub source: NodeId,
    /// The group column's leaf, with `group_by`.
    pub group: Option<NodeId>,
}

impl AggregateDefinition {
    /// The definition of aggregate node `node`.
    pub fn new(node: &PlanNode) -> Result<Self, String> {
        let Operator::Aggregate(spec) = &node.operator else {
            return Err(format!("`{}` is not an aggregate node", node.id));
        };
        let source = node
            .children
            .first()
            .cloned()
            .ok_or_else(|| format!("aggregate `{}` has no source", node.id))?;
        Ok(AggregateDefinition {
            id: node.id.clone(),
            spec: spec.clone(),
            source,
            group: node.children.get(1).cloned(),
        })
    }

    /// The per-key nodes a contributor reads: the source, then the group column.
    pub fn inputs(&self) -> Vec<NodeId> {
        std::iter::once(self.source.clone()).chain(self.group.clone()).collect()
    }
}

fn add_aggregate<'a>(aggregates: &mut Vec<&'a AggregateNode>, node: &'a AggregateNode) {
    if !aggregates.iter().any(|a| a.id() == node.id()) {
        aggregates.push(node);
    }
}
/// `text` with every node id of `ids` (the names a description gives its
/// larger inputs) replaced by its new id.
fn rename_ids(text: &str, ids: &HashMap<String, NodeId>) -> String {
    let is_id_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_id_char) {
        out.push_str(&rest[..start]);
        let word = &rest[start..];
        let end = word.find(|c: char| !is_id_char(c)).unwrap_or(word.len());
        match ids.get(&word[..end]) {
            Some(id) => out.push_str(id.as_str()),
            None => out.push_str(&word[..end]),
        }
        rest = &word[end..];
    }
    out.push_str(rest);
    out
}
