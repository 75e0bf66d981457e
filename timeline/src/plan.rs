//! Execution plans: a job's operator tree flattened into named workers.

use serde::{Deserialize, Serialize};

use crate::op::{NodeId, Operator, TimeLineOp, TypeError, WorkerKind};
use crate::worker::{LeafState, Output, TimelineProcessor};

/// One node of a plan: what it computes and which worker computes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    /// Content-derived id; with a key, it names the worker.
    pub id: NodeId,
    /// Event processor (leaf) or timeline processor (derived).
    pub worker: WorkerKind,
    /// The operator and its parameters.
    pub operator: Operator,
    /// The node in canonical DSL.
    pub expression: String,
    /// Input nodes, in order.
    pub children: Vec<NodeId>,
    /// Whether another job already ran this node when the plan was made.
    #[serde(default)]
    pub reused: bool,
}

/// The execution plan of a job: every node, children before parents; the leaf
/// workers that events must reach; the worker that holds the result.
/// Flat (no recursion) so that it crosses agent boundaries as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPlan {
    /// The query in canonical DSL.
    pub query: String,
    /// Every node once, children before parents.
    pub nodes: Vec<PlanNode>,
    /// The leaves: where events go.
    pub leaves: Vec<NodeId>,
    /// The root: where the result is read.
    pub result: NodeId,
}

impl ExecutionPlan {
    /// Type-checks `root` and flattens it.
    pub fn new(root: &TimeLineOp) -> Result<Self, TypeError> {
        root.check()?;
        let nodes: Vec<PlanNode> = root
            .post_order()
            .into_iter()
            .map(|n| PlanNode {
                id: n.id().clone(),
                worker: n.worker().kind,
                operator: n.operator().clone(),
                expression: n.canonical().to_string(),
                children: n.children().iter().map(|c| c.id().clone()).collect(),
                reused: false,
            })
            .collect();
        let leaves = nodes
            .iter()
            .filter(|n| n.worker == WorkerKind::EventProcessor)
            .map(|n| n.id.clone())
            .collect();
        Ok(ExecutionPlan {
            query: root.canonical().to_string(),
            nodes,
            leaves,
            result: root.id().clone(),
        })
    }

    /// The node with id `id`.
    pub fn node(&self, id: &NodeId) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// For each node, the positions of its children in `nodes`.
    pub fn child_indices(&self) -> Vec<Vec<usize>> {
        self.nodes
            .iter()
            .map(|n| {
                n.children
                    .iter()
                    .map(|c| {
                        self.nodes
                            .iter()
                            .position(|m| &m.id == c)
                            .expect("plans list children before parents")
                    })
                    .collect()
            })
            .collect()
    }
}

/// A plan prepared for evaluating many keys in-process.
#[derive(Debug, Clone)]
pub struct CompiledPlan {
    plan: ExecutionPlan,
    children: Vec<Vec<usize>>,
    /// Position in `plan.nodes` of each leaf, in the order of `plan.leaves`.
    leaf_nodes: Vec<usize>,
    result: usize,
}

impl CompiledPlan {
    /// Prepares `plan`.
    pub fn new(plan: ExecutionPlan) -> Self {
        let children = plan.child_indices();
        let leaf_nodes = plan
            .leaves
            .iter()
            .map(|l| plan.nodes.iter().position(|n| &n.id == l).expect("leaf in nodes"))
            .collect();
        let result = plan
            .nodes
            .iter()
            .position(|n| n.id == plan.result)
            .expect("result in nodes");
        CompiledPlan {
            plan,
            children,
            leaf_nodes,
            result,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &ExecutionPlan {
        &self.plan
    }

    /// Fresh leaf states for one key, in the order of `plan.leaves`.
    pub fn new_leaf_states(&self) -> Vec<LeafState> {
        self.leaf_nodes
            .iter()
            .map(|&i| LeafState::new(self.leaf_op(i)))
            .collect()
    }

    /// Applies an event of a key to that key's leaf states.
    pub fn apply(&self, states: &mut [LeafState], event: &crate::Event) {
        for (state, &i) in states.iter_mut().zip(&self.leaf_nodes) {
            state.apply(self.leaf_op(i), event);
        }
    }

    fn leaf_op(&self, node: usize) -> &crate::LeafOp {
        match &self.plan.nodes[node].operator {
            Operator::Leaf(op) => op,
            Operator::Derived(_) => unreachable!("leaf_nodes index leaves"),
        }
    }

    /// Every node's output for one key, in the order of `plan.nodes`.
    pub fn evaluate(&self, states: &[LeafState]) -> Vec<Output> {
        let mut outputs: Vec<Option<Output>> = vec![None; self.plan.nodes.len()];
        for (state, &i) in states.iter().zip(&self.leaf_nodes) {
            outputs[i] = Some(state.output());
        }
        for (i, node) in self.plan.nodes.iter().enumerate() {
            if let Operator::Derived(op) = &node.operator {
                let inputs: Vec<&Output> = self.children[i]
                    .iter()
                    .map(|&c| outputs[c].as_ref().expect("children first"))
                    .collect();
                outputs[i] = Some(TimelineProcessor::evaluate_op(op, &inputs));
            }
        }
        outputs.into_iter().map(|o| o.unwrap_or_default()).collect()
    }

    /// The result node's output for one key.
    pub fn evaluate_result(&self, states: &[LeafState]) -> Output {
        self.evaluate(states).swap_remove(self.result)
    }

    /// Position of the result node in `plan.nodes`.
    pub fn result_index(&self) -> usize {
        self.result
    }
}
