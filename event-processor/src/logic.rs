use serde::{Deserialize, Serialize};
use timeline::{EventParser, EventProcessor, NodeId, Operator, Output, PlanNode, WorkerDescription};
use timeline_api::views::{AddEventsResult, parse_events};

/// One leaf node of one key: the state an `EventProcessor` agent keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafWorker {
    key: String,
    node: PlanNode,
    worker: EventProcessor,
}

impl LeafWorker {
    /// The worker of `key` for the node defined by `definition` (JSON of a
    /// `PlanNode`, as `Core` gives it).
    pub fn from_definition(key: &str, definition: &str) -> Result<Self, String> {
        let node: PlanNode = serde_json::from_str(definition).map_err(|e| format!("bad node definition: {e}"))?;
        Self::new(key, node)
    }

    /// The worker of `key` for a leaf node.
    pub fn new(key: &str, node: PlanNode) -> Result<Self, String> {
        let Operator::Leaf(op) = node.operator.clone() else {
            return Err(format!(
                "`{}` is not a leaf node; a timeline processor runs it",
                node.id
            ));
        };
        Ok(LeafWorker {
            key: key.to_string(),
            node,
            worker: EventProcessor::new(op),
        })
    }

    /// The node.
    pub fn node(&self) -> &NodeId {
        &self.node.id
    }

    /// Applies a batch of JSON events of this worker's key, read with its
    /// stream's key, time and id fields (the key field may be omitted);
    /// events of another key and invalid ones are rejected by position, the
    /// rest applied.
    pub fn add_events(&mut self, events: &[String]) -> AddEventsResult {
        let parser: EventParser = self
            .node
            .stream
            .as_ref()
            .map(timeline::StreamSpec::parser)
            .unwrap_or_default()
            .with_default_key(&self.key);
        let (good, rejected) = parse_events(&parser, events, &self.key);
        self.worker.add_events(&good);
        AddEventsResult {
            accepted: good.len() as u32,
            rejected,
        }
    }

    /// The timeline and the key's latest time.
    pub fn output(&self) -> Output {
        self.worker.output()
    }

    /// What the worker computes and holds.
    pub fn describe(&self) -> WorkerDescription {
        WorkerDescription::new(&self.node, &self.output(), Some(self.worker.state().events()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(query: &str) -> PlanNode {
        let plan = timeline::ExecutionPlan::new(&timeline::dsl::parse(query).unwrap()).unwrap();
        plan.nodes[0].clone()
    }

    #[test]
    fn takes_its_keys_events_and_rejects_others() {
        let def = serde_json::to_string(&node("has_existed(x == 1)")).unwrap();
        let mut w = LeafWorker::from_definition("k", &def).unwrap();
        let r = w.add_events(&[
            r#"{"time":5,"x":1}"#.into(),
            r#"{"session_id":"other","time":1,"x":1}"#.into(),
            "garbage".into(),
            r#"{"session_id":"k","time":2}"#.into(),
        ]);
        assert_eq!(r.accepted, 2);
        let positions: Vec<u32> = r.rejected.iter().map(|e| e.index).collect();
        assert_eq!(
            positions,
            [1, 2],
            "rejected events are named by their place in the batch"
        );
        assert_eq!(w.output().timeline.to_string(), "[2,5):false [5,∞):true");
        assert_eq!(w.describe().events, Some(2));
    }

    #[test]
    fn reads_events_with_its_streams_fields() {
        let query = timeline::dsl::parse_query("from cards key card time at; has_existed(x == 1)").unwrap();
        let spec = query.stream.resolve(None, "session_id").unwrap();
        let plan = timeline::ExecutionPlan::from_outputs(&query.outputs)
            .unwrap()
            .in_stream(spec);
        let def = serde_json::to_string(&plan.nodes[0]).unwrap();
        let mut w = LeafWorker::from_definition("k", &def).unwrap();
        let r = w.add_events(&[
            r#"{"card":"k","at":5,"x":1}"#.into(),
            r#"{"session_id":"k","time":1,"x":1}"#.into(),
            r#"{"card":"other","at":1,"x":1}"#.into(),
        ]);
        let positions: Vec<u32> = r.rejected.iter().map(|e| e.index).collect();
        assert_eq!((r.accepted, positions), (1, vec![1, 2]), "{:?}", r.rejected);
        assert_eq!(w.output().timeline.to_string(), "[5,∞):true");
    }

    #[test]
    fn refuses_a_derived_node() {
        let plan = timeline::ExecutionPlan::new(&timeline::dsl::parse("!has_existed(x == 1)").unwrap()).unwrap();
        assert!(LeafWorker::new("k", plan.nodes[1].clone()).is_err());
    }
}
