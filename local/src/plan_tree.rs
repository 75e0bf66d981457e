//! `timeline plan --tree`: an execution plan drawn as a tree to read.
//!
//! Each output is a root; under each node, its children. A node shows its id
//! (which names its workers), the kind of worker that runs it, whether another
//! job already runs it, and its full sub-expression in DSL. A node read by
//! several parents in the query is one worker: it is drawn in full the first
//! time and referred to after.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use timeline::dsl::Query;
use timeline::plan::{ExecutionPlan, JobOutput, PlanNode};
use timeline::{NodeId, TimeLineOp};

/// Longest sub-expression written in full, in bytes; a longer one (shared
/// bindings unfolded) is written with its larger parts named by node id.
const FULL_TEXT_LIMIT: usize = 2000;

/// Writes `plan` (planned from `query`) as a tree.
pub fn write_tree(out: &mut impl Write, query: &Query, plan: &ExecutionPlan) -> io::Result<()> {
    let texts = full_texts(query, plan);
    let nodes: HashMap<&NodeId, &PlanNode> = plan.nodes.iter().map(|n| (&n.id, n)).collect();
    let parents = parent_counts(plan);
    let mut tree = Tree {
        out,
        nodes,
        texts,
        parents,
        drawn: HashSet::new(),
    };
    if !plan.stream.is_default() {
        writeln!(tree.out, "{}", plan.stream.header())?;
    }
    for output in &plan.outputs {
        writeln!(tree.out, "output `{}`", output.name)?;
        tree.node(&output.node, "", true)?;
    }
    let count = |kind: timeline::WorkerKind| plan.nodes.iter().filter(|n| n.worker == kind).count();
    let shared = tree.parents.values().filter(|&&n| n > 1).count();
    let reused = plan.nodes.iter().filter(|n| n.reused).count();
    writeln!(
        tree.out,
        "{} nodes: {} event processors (leaves), {} timeline processors, {} aggregates, {} metrics; \
         {shared} shared within the query, {reused} run by another job",
        plan.nodes.len(),
        count(timeline::WorkerKind::EventProcessor),
        count(timeline::WorkerKind::TimelineProcessor),
        count(timeline::WorkerKind::Aggregator),
        count(timeline::WorkerKind::Metric),
    )
}

struct Tree<'a, W> {
    out: &'a mut W,
    nodes: HashMap<&'a NodeId, &'a PlanNode>,
    texts: HashMap<NodeId, String>,
    /// How many parents (and outputs) read each node.
    parents: HashMap<NodeId, usize>,
    drawn: HashSet<NodeId>,
}

impl<W: Write> Tree<'_, W> {
    /// Draws node `id` and, the first time, its children; `prefix` is the
    /// rail of its ancestors. Iterative, so that no plan's depth matters.
    fn node(&mut self, id: &NodeId, prefix: &str, last: bool) -> io::Result<()> {
        // (node, its prefix, whether it is its parent's last child, whether it is a root)
        let mut stack = vec![(id.clone(), prefix.to_string(), last, true)];
        while let Some((id, prefix, last, root)) = stack.pop() {
            let branch = match (root, last) {
                (true, _) => "",
                (false, true) => "└── ",
                (false, false) => "├── ",
            };
            let rail = match (root, last) {
                (true, _) => String::new(),
                (false, true) => format!("{prefix}    "),
                (false, false) => format!("{prefix}│   "),
            };
            let Some(node) = self.nodes.get(&id).copied() else {
                writeln!(self.out, "{prefix}{branch}{id}  (not in the plan)")?;
                continue;
            };
            let first = self.drawn.insert(id.clone());
            let mut flags = Vec::new();
            let readers = self.parents.get(&id).copied().unwrap_or(0);
            if readers > 1 {
                flags.push(if first {
                    format!("shared: read {readers} times in this query")
                } else {
                    "shared: drawn above".to_string()
                });
            }
            if node.reused {
                flags.push("reused: another job runs it already".to_string());
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!("  ({})", flags.join("; "))
            };
            writeln!(self.out, "{prefix}{branch}{id}  {}{flags}", node.worker.as_str())?;
            if !first {
                continue;
            }
            let expression = self.texts.get(&id).unwrap_or(&node.expression);
            let gutter = if node.children.is_empty() { "  " } else { "│ " };
            writeln!(self.out, "{rail}{gutter}{expression}")?;
            let n = node.children.len();
            for (i, child) in node.children.iter().enumerate().rev() {
                stack.push((child.clone(), rail.clone(), i + 1 == n, false));
            }
        }
        Ok(())
    }
}

/// How many times each node is read: by a parent node or as an output.
fn parent_counts(plan: &ExecutionPlan) -> HashMap<NodeId, usize> {
    let mut counts: HashMap<NodeId, usize> = HashMap::new();
    for child in plan.nodes.iter().flat_map(|n| &n.children) {
        *counts.entry(child.clone()).or_default() += 1;
    }
    let mut outputs: HashSet<&NodeId> = HashSet::new();
    for output in &plan.outputs {
        // Two outputs of the same node read it once.
        if outputs.insert(&output.node) {
            *counts.entry(output.node.clone()).or_default() += 1;
        }
    }
    counts
}

/// Every node's sub-expression in DSL, by the plan's node id.
fn full_texts(query: &Query, plan: &ExecutionPlan) -> HashMap<NodeId, String> {
    let stream = (!plan.stream.is_default_stream()).then(|| plan.stream.name.clone());
    let scoped = |id: &NodeId| match &stream {
        Some(name) => id.in_stream(name),
        None => id.clone(),
    };
    let mut texts = HashMap::new();
    let timeline = |texts: &mut HashMap<NodeId, String>, op: &TimeLineOp| {
        for n in op.post_order() {
            let text = if n.canonical_len() <= FULL_TEXT_LIMIT {
                n.canonical()
            } else {
                n.description()
            };
            texts.insert(scoped(n.id()), text);
        }
    };
    for (_, output) in &query.outputs {
        let aggregates = match output {
            JobOutput::Timeline(op) => {
                timeline(&mut texts, op);
                Vec::new()
            }
            JobOutput::Aggregate { node, .. } => vec![node],
            JobOutput::Metric(m) => {
                let full = m.inputs().iter().map(|i| i.source().canonical_len()).sum::<usize>() <= FULL_TEXT_LIMIT;
                texts.insert(scoped(m.id()), if full { m.canonical() } else { m.description() });
                m.inputs().iter().collect()
            }
        };
        for node in aggregates {
            let text = if node.source().canonical_len() <= FULL_TEXT_LIMIT {
                node.dsl(&[], false)
            } else {
                node.description(&[], false)
            };
            texts.insert(scoped(node.id()), text);
            timeline(&mut texts, node.source());
            if let Some(group) = node.group() {
                timeline(&mut texts, group);
            }
        }
    }
    texts
}
