//! One way to evaluate a key: a node's subtree compiled once into steps,
//! leaves first, evaluated over whatever yields the leaves' outputs.
//!
//! Every runtime evaluates derived nodes with this: the local engine over its
//! in-memory leaf states, the Golem timeline processor over the outputs it
//! read from the leaves' agents (all at once, concurrently), the tests over
//! a list. Only the source of the leaves differs.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::id::NodeId;
use crate::op::{DerivedOp, LeafOp};
use crate::plan::{ExecutionPlan, Operator, PlanNode};
use crate::worker::{LeafState, Output};

/// The leaves' outputs an evaluation reads, by their position in
/// [`Evaluation::leaves`].
pub trait Inputs {
    /// The output of leaf `index`.
    fn leaf(&self, index: usize) -> Cow<'_, Output>;
}

impl Inputs for [Output] {
    fn leaf(&self, index: usize) -> Cow<'_, Output> {
        self.get(index)
            .map_or_else(|| Cow::Owned(Output::default()), Cow::Borrowed)
    }
}

impl Inputs for Vec<Output> {
    fn leaf(&self, index: usize) -> Cow<'_, Output> {
        self.as_slice().leaf(index)
    }
}

/// Leaf states in the order of [`Evaluation::leaves`] (in-process runs).
impl Inputs for [LeafState] {
    fn leaf(&self, index: usize) -> Cow<'_, Output> {
        Cow::Owned(self.get(index).map(LeafState::output).unwrap_or_default())
    }
}

/// One step: a leaf read, or a derived operator over earlier steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    /// Leaf number `n` of [`Evaluation::leaves`].
    Leaf(usize),
    /// An operator over the outputs of earlier steps, in order.
    Derived {
        /// The operator.
        op: DerivedOp,
        /// Earlier steps.
        children: Vec<usize>,
    },
}

/// Per-key nodes compiled for evaluation: each node once, children first,
/// with the leaves it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The leaf nodes read, in input order.
    leaves: Vec<NodeId>,
    /// The nodes computed, one per step.
    nodes: Vec<NodeId>,
    steps: Vec<Step>,
    /// The step of each root, in the order asked.
    roots: Vec<usize>,
}

/// A node that an evaluation cannot be made of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A node that no plan defines.
    #[error("no job runs node `{0}`")]
    Unknown(String),
    /// An aggregate or metric: not a per-key node.
    #[error("`{0}` is not a per-key node")]
    NotPerKey(String),
}

impl Evaluation {
    /// Compiles the subtrees of `roots`; `node` finds a node's definition.
    pub fn compile<'a>(roots: &[NodeId], node: impl Fn(&NodeId) -> Option<&'a PlanNode>) -> Result<Self, EvalError> {
        let mut e = Evaluation {
            leaves: Vec::new(),
            nodes: Vec::new(),
            steps: Vec::new(),
            roots: Vec::with_capacity(roots.len()),
        };
        let mut index = HashMap::new();
        for root in roots {
            let step = e.visit(root, &node, &mut index)?;
            e.roots.push(step);
        }
        Ok(e)
    }

    /// Every per-key node of `plan`, in the plan's order.
    pub fn of_plan(plan: &ExecutionPlan) -> Self {
        let per_key: Vec<NodeId> = plan
            .nodes
            .iter()
            .filter(|n| matches!(n.operator, Operator::Leaf(_) | Operator::Derived(_)))
            .map(|n| n.id.clone())
            .collect();
        let by_id: HashMap<&NodeId, &PlanNode> = plan.nodes.iter().map(|n| (&n.id, n)).collect();
        Self::compile(&per_key, |id| by_id.get(id).copied()).expect("a plan holds its nodes' children")
    }

    /// Adds the steps of `root`'s subtree not in `index` yet, children
    /// first, without recursion (a chain of bindings is thousands deep).
    fn visit<'a>(
        &mut self,
        root: &NodeId,
        node: &impl Fn(&NodeId) -> Option<&'a PlanNode>,
        index: &mut HashMap<NodeId, usize>,
    ) -> Result<usize, EvalError> {
        // (node, whether its children have steps already)
        let mut stack = vec![(root, false)];
        while let Some((id, expanded)) = stack.pop() {
            if index.contains_key(id) {
                continue;
            }
            let def = node(id).ok_or_else(|| EvalError::Unknown(id.to_string()))?;
            let step = match &def.operator {
                Operator::Leaf(_) => {
                    self.leaves.push(id.clone());
                    Step::Leaf(self.leaves.len() - 1)
                }
                Operator::Derived(_) if !expanded => {
                    stack.push((id, true));
                    stack.extend(def.children.iter().rev().map(|c| (c, false)));
                    continue;
                }
                Operator::Derived(op) => Step::Derived {
                    op: op.clone(),
                    children: def.children.iter().map(|c| index[c]).collect(),
                },
                Operator::Aggregate(_) | Operator::Metric(_) => return Err(EvalError::NotPerKey(id.to_string())),
            };
            self.nodes.push(id.clone());
            self.steps.push(step);
            index.insert(id.clone(), self.steps.len() - 1);
        }
        Ok(index[root])
    }

    /// The leaves to read, in the order [`Inputs::leaf`] is asked for them.
    pub fn leaves(&self) -> &[NodeId] {
        &self.leaves
    }

    /// Every node computed, in evaluation order (children first).
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The roots' outputs, in the order they were compiled.
    pub fn evaluate(&self, inputs: &(impl Inputs + ?Sized)) -> Vec<Output> {
        let all = self.evaluate_all(inputs);
        self.roots.iter().map(|&r| all[r].clone()).collect()
    }

    /// The first root's output.
    pub fn evaluate_root(&self, inputs: &(impl Inputs + ?Sized)) -> Output {
        let mut all = self.evaluate_all(inputs);
        match self.roots.first() {
            Some(&r) => all.swap_remove(r),
            None => Output::default(),
        }
    }

    /// Every node's output, in the order of [`Self::nodes`].
    pub fn evaluate_all(&self, inputs: &(impl Inputs + ?Sized)) -> Vec<Output> {
        let mut outputs: Vec<Output> = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let out = match step {
                Step::Leaf(i) => inputs.leaf(*i).into_owned(),
                Step::Derived { op, children } => {
                    let timelines: Vec<&crate::timeline::Timeline> =
                        children.iter().map(|&c| &outputs[c].timeline).collect();
                    let latest = children.iter().filter_map(|&c| outputs[c].latest).max();
                    Output {
                        timeline: op.evaluate(&timelines, latest),
                        latest,
                    }
                }
            };
            outputs.push(out);
        }
        outputs
    }
}

/// A plan's leaf operators and the evaluation of all its per-key nodes, for
/// running many keys in one process (batch runs, tests, fuzzing).
#[derive(Debug, Clone)]
pub struct CompiledPlan {
    plan: ExecutionPlan,
    eval: Evaluation,
    /// Each leaf's operator, in the order of `eval.leaves()`.
    ops: Vec<LeafOp>,
    result: usize,
}

impl CompiledPlan {
    /// Prepares `plan`.
    pub fn new(plan: ExecutionPlan) -> Self {
        let eval = Evaluation::of_plan(&plan);
        let ops = eval
            .leaves()
            .iter()
            .map(|l| match plan.node(l).map(|n| &n.operator) {
                Some(Operator::Leaf(op)) => op.clone(),
                _ => unreachable!("evaluations list leaves as leaves"),
            })
            .collect();
        let result = eval
            .nodes()
            .iter()
            .position(|n| *n == plan.result)
            .unwrap_or(eval.nodes().len().saturating_sub(1));
        CompiledPlan {
            plan,
            eval,
            ops,
            result,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &ExecutionPlan {
        &self.plan
    }

    /// The evaluation of every per-key node.
    pub fn evaluation(&self) -> &Evaluation {
        &self.eval
    }

    /// Fresh leaf states for one key, in the order of the evaluation's leaves.
    pub fn new_leaf_states(&self) -> Vec<LeafState> {
        self.ops.iter().map(LeafState::new).collect()
    }

    /// Applies an event of a key to that key's leaf states.
    pub fn apply(&self, states: &mut [LeafState], event: &crate::event::Event) {
        for (state, op) in states.iter_mut().zip(&self.ops) {
            state.apply(op, event);
        }
    }

    /// Every per-key node's output for one key, in the order of the plan's
    /// nodes (its aggregates and metrics left out).
    pub fn evaluate(&self, states: &[LeafState]) -> Vec<Output> {
        self.eval.evaluate_all(states)
    }

    /// The result node's output for one key.
    pub fn evaluate_result(&self, states: &[LeafState]) -> Output {
        self.evaluate(states).swap_remove(self.result)
    }

    /// Position of the result node among [`Self::evaluate`]'s outputs.
    pub fn result_index(&self) -> usize {
        self.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventParser;
    use crate::value::Value;

    #[test]
    fn evaluates_a_subtree_from_its_leaves_each_node_once() {
        let plan =
            ExecutionPlan::new(&crate::dsl::parse("let p = has_existed(a == 1); (p && !p) || p").unwrap()).unwrap();
        let eval = Evaluation::compile(std::slice::from_ref(&plan.result), |id| plan.node(id)).unwrap();
        assert_eq!(eval.leaves().len(), 1, "the shared leaf is read once");
        let parser = EventParser::default();
        let Operator::Leaf(op) = &plan.node(&eval.leaves()[0]).unwrap().operator else {
            panic!("a leaf")
        };
        let op: &LeafOp = op;
        let mut state = LeafState::new(op);
        state.apply(op, &parser.parse(r#"{"session_id":"k","time":3,"a":1}"#).unwrap());
        let out = eval.evaluate_root(&vec![state.output()]);
        assert_eq!(out.value_at(3), Some(Value::Bool(true)));
        assert_eq!(out.latest, Some(3));
        assert_eq!(eval.nodes().last(), Some(&plan.result));
    }

    #[test]
    fn refuses_unknown_and_cross_key_nodes() {
        let plan = ExecutionPlan::new(&crate::dsl::parse("has_existed(a == 1)").unwrap()).unwrap();
        let missing = NodeId::parse("not-0000000000000000").unwrap();
        assert!(matches!(
            Evaluation::compile(&[missing], |id| plan.node(id)),
            Err(EvalError::Unknown(_))
        ));
    }
}
