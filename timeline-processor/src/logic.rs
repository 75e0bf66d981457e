use serde::{Deserialize, Serialize};
use timeline::{NodeId, Operator, Output, PlanNode, TimelineProcessor, WorkerDescription, WorkerKind};

/// One derived node of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DerivedWorker {
    key: String,
    node: PlanNode,
}

impl DerivedWorker {
    /// The worker of `key` for the node defined by `definition` (JSON of a
    /// `PlanNode`, as `Core` gives it).
    pub fn from_definition(key: &str, definition: &str) -> Result<Self, String> {
        let node: PlanNode = serde_json::from_str(definition).map_err(|e| format!("bad node definition: {e}"))?;
        Self::new(key, node)
    }

    /// The worker of `key` for a derived node.
    pub fn new(key: &str, node: PlanNode) -> Result<Self, String> {
        if !matches!(node.operator, Operator::Derived(_)) {
            return Err(format!("`{}` is a leaf node; an event processor runs it", node.id));
        }
        Ok(DerivedWorker {
            key: key.to_string(),
            node,
        })
    }

    /// The children to read, in order.
    pub fn children(&self) -> &[NodeId] {
        &self.node.children
    }

    /// This node's output from its children's, in the order of [`Self::children`].
    pub fn evaluate(&self, children: &[Output]) -> Result<Output, String> {
        let Operator::Derived(op) = &self.node.operator else {
            return Err("not a derived node".to_string());
        };
        if children.len() != self.node.children.len() {
            return Err(format!(
                "{} needs {} inputs, got {}",
                self.node.id,
                self.node.children.len(),
                children.len()
            ));
        }
        let refs: Vec<&Output> = children.iter().collect();
        Ok(TimelineProcessor::evaluate_op(op, &refs))
    }

    /// What the worker computes, given its current output.
    pub fn describe(&self, output: &Output) -> WorkerDescription {
        WorkerDescription {
            node: self.node.id.clone(),
            kind: WorkerKind::TimelineProcessor,
            operator: self.node.operator.name().to_string(),
            expression: self.node.expression.clone(),
            children: self.node.children.clone(),
            events: None,
            origin: output.timeline.origin(),
            latest: output.latest,
            spans: output.timeline.len(),
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }
}
