use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use timeline::repeats::{Fields, canonical_json};
use timeline::{Event, EventParser, EventProcessor, NodeId, Operator, Output, PlanNode, Time, WorkerDescription};
use timeline_api::views::{AddEventsResult, parse_events};

/// One leaf node of one key: the state an `EventProcessor` agent keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafWorker {
    key: String,
    node: PlanNode,
    worker: EventProcessor,
    /// Every delivery applied (see [`Deliveries`]).
    #[serde(default)]
    deliveries: Deliveries,
}

/// The deliveries a worker applied, as canonical JSON: every event without an
/// id and, of each identified event (time and id), the delivery the contract
/// picks (the least canonical JSON). A leaf's state cannot take an event
/// back, so when a later delivery of a known id with another content is the
/// one the contract picks, the worker starts again from these. (The local
/// runtime reads them back from its log instead; a Golem agent keeps them,
/// as Golem's oplog keeps every batch anyway.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Deliveries {
    events: Vec<Delivery>,
    /// (time, id) to the index of its delivery; rebuilt after a restore.
    #[serde(skip)]
    index: Option<HashMap<(Time, String), usize>>,
}

impl PartialEq for Deliveries {
    fn eq(&self, other: &Self) -> bool {
        self.events == other.events
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Delivery {
    time: Time,
    id: Option<String>,
    json: String,
}

/// What a delivery is to those applied before.
enum Taken {
    /// A new event: apply it.
    New,
    /// The event as applied, again, or a delivery the contract does not pick.
    Nothing,
    /// It replaces an applied delivery of its id: start again.
    Replaces,
}

impl Deliveries {
    fn index(&mut self) -> &mut HashMap<(Time, String), usize> {
        let events = &self.events;
        self.index.get_or_insert_with(|| {
            events
                .iter()
                .enumerate()
                .filter_map(|(i, d)| Some(((d.time, d.id.clone()?), i)))
                .collect()
        })
    }

    fn take(&mut self, event: &Event, fields: Fields<'_>) -> Taken {
        let json = canonical_json(event, fields);
        let Some(id) = &event.id else {
            self.events.push(Delivery {
                time: event.time,
                id: None,
                json,
            });
            return Taken::New;
        };
        let at = self.events.len();
        let found = *self.index().entry((event.time, id.to_string())).or_insert(at);
        if found == at {
            self.events.push(Delivery {
                time: event.time,
                id: Some(id.to_string()),
                json,
            });
            return Taken::New;
        }
        let applied = &mut self.events[found];
        match json.as_str().cmp(&applied.json) {
            Ordering::Less => {
                applied.json = json;
                Taken::Replaces
            }
            _ => Taken::Nothing,
        }
    }
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
            deliveries: Deliveries::default(),
        })
    }

    /// The node.
    pub fn node(&self) -> &NodeId {
        &self.node.id
    }

    /// Applies a batch of JSON events of this worker's key, read with its
    /// stream's key, time and id fields (the key field may be omitted);
    /// events of another key and invalid ones are rejected by position, the
    /// rest applied. Of the deliveries of one identified event (same time and
    /// id) the one with the least canonical JSON is the event, whatever their
    /// order; repeats change nothing.
    pub fn add_events(&mut self, events: &[String]) -> AddEventsResult {
        let parser = self.parser();
        let (good, rejected) = parse_events(&parser, events, &self.key);
        let spec = self.node.stream.clone().unwrap_or_default();
        let fields = Fields {
            key: &spec.key,
            time: &spec.time,
            id: &spec.id,
        };
        let mut fresh = Vec::with_capacity(good.len());
        let mut again = false;
        for event in &good {
            match self.deliveries.take(event, fields) {
                Taken::New => fresh.push(event),
                Taken::Nothing => {}
                Taken::Replaces => again = true,
            }
        }
        if again {
            self.worker = EventProcessor::new(self.worker.op().clone());
            let all: Vec<Event> = self
                .deliveries
                .events
                .iter()
                .filter_map(|d| parser.parse(&d.json).ok())
                .collect();
            self.worker.add_events(&all);
        } else {
            self.worker.add_events(fresh);
        }
        AddEventsResult {
            accepted: good.len() as u32,
            rejected,
        }
    }

    /// The parser of this worker's events: its stream's fields, its key by
    /// default.
    fn parser(&self) -> EventParser {
        self.node
            .stream
            .as_ref()
            .map(timeline::StreamSpec::parser)
            .unwrap_or_default()
            .with_default_key(&self.key)
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

    #[test]
    fn of_deliveries_of_one_id_the_least_canonical_json_is_the_event_in_any_order() {
        // e1: `"s":"a"` sorts before `"s":"b"`; e2: the one with `x` (`,"x"` before `}`).
        let winners = [
            r#"{"session_id":"k","time":0,"event_id":"e0","s":"c"}"#,
            r#"{"session_id":"k","time":10,"event_id":"e1","s":"a"}"#,
            r#"{"session_id":"k","time":20,"event_id":"e2","s":"b","x":1}"#,
            r#"{"session_id":"k","time":30,"s":"c"}"#,
        ];
        let losers = [
            r#"{"session_id":"k","time":10,"event_id":"e1","s":"b"}"#,
            r#"{"session_id":"k","time":20,"event_id":"e2","s":"b"}"#,
            r#"{"s":"b","y":true,"session_id":"k","time":10,"event_id":"e1"}"#,
        ];
        for query in [
            "latest_event_to_state(s)",
            r#"has_existed(s == "b")"#,
            r#"has_existed_within(s == "b", 5)"#,
            "has_existed(x == 1)",
        ] {
            let def = serde_json::to_string(&node(query)).unwrap();
            let batch = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
            let mut expected = LeafWorker::from_definition("k", &def).unwrap();
            expected.add_events(&batch(&winners));
            let orders: Vec<Vec<&str>> = vec![
                losers.iter().chain(&winners).copied().collect(),
                winners.iter().chain(&losers).copied().collect(),
                losers.iter().rev().chain(winners.iter().rev()).copied().collect(),
            ];
            for order in orders {
                // One batch, and one event per batch with a restore in the middle.
                let mut w = LeafWorker::from_definition("k", &def).unwrap();
                w.add_events(&batch(&order));
                assert_eq!(w.output(), expected.output(), "{query}: one batch of {order:?}");
                let mut w = LeafWorker::from_definition("k", &def).unwrap();
                for (i, line) in order.iter().enumerate() {
                    if i == 2 {
                        w = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
                    }
                    w.add_events(&batch(&[line]));
                }
                assert_eq!(w.output(), expected.output(), "{query}: {order:?} one by one");
            }
        }
    }
}
