//! Live figures per node of a job (as a stream processor's job graph shows
//! them): events taken in, keys, state bytes, the latest event time.

use rustc_hash::FxHashMap;
use timeline::{LeafData, NodeId, Operator, Time, WorkerKind};

use super::{Engine, ReadError, StreamId};

/// One node's live figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    /// The node.
    pub node: NodeId,
    /// The kind of worker computing it.
    pub worker: WorkerKind,
    /// Leaves: the events their workers took in (every event of the keys
    /// holding state for the leaf, replays into a new leaf included);
    /// `None` for the other nodes, which read their children, not events.
    pub events: Option<u64>,
    /// Keys it is computed for: leaves, the keys holding state; derived
    /// nodes, every key of the stream; aggregates, the keys held in a group;
    /// `None` for metrics (they read aggregates, not keys).
    pub keys: Option<u64>,
    /// Aggregates and metrics: the groups; `None` for per-key nodes.
    pub groups: Option<u64>,
    /// Estimated bytes of state (see [`Engine::job_stats`]).
    pub state_bytes: u64,
    /// The latest event time among the keys it holds.
    pub latest: Option<Time>,
}

/// A job's live figures: its stream's totals and each node's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStats {
    /// Events of the job's stream.
    pub events: u64,
    /// Keys of the job's stream.
    pub keys: u64,
    /// The latest event time of the stream.
    pub latest: Option<Time>,
    /// Every node of the plan, in plan order.
    pub nodes: Vec<NodeStats>,
}

/// What one pass over a stream's keys gathers for one leaf slot.
#[derive(Default)]
struct LeafTally {
    events: u64,
    keys: u64,
    bytes: u64,
    latest: Option<Time>,
}

impl Engine {
    /// Job `name`'s live figures, node by node.
    ///
    /// State bytes are an estimate: for a leaf, per key holding it, the
    /// inline size of its state plus the heap the state owns (a state
    /// history, a window's event times); for an aggregate, its aggregators'
    /// arenas and its key-to-group index. Derived nodes and metrics are
    /// computed on demand from their inputs and hold no state (0). What a key
    /// holds beside its leaves (its clock, log positions, repeat
    /// fingerprints) is the stream's, not a node's, and is not counted.
    pub fn job_stats(&self, name: &str) -> Result<JobStats, ReadError> {
        let job = self.job(name)?;
        let stream = self.job_stream(name)?;
        let tallies = self.leaf_tallies(stream);
        let state = &self.streams[stream as usize];
        let stream_keys = state.keys.len() as u64;
        let nodes = job
            .plan
            .nodes
            .iter()
            .map(|node| {
                let mut stats = NodeStats {
                    node: node.id.clone(),
                    worker: node.worker,
                    events: None,
                    keys: None,
                    groups: None,
                    state_bytes: 0,
                    latest: state.latest,
                };
                match &node.operator {
                    Operator::Leaf(_) => {
                        let tally = self.slot_of.get(&node.id).and_then(|slot| tallies.get(slot));
                        stats.events = Some(tally.map_or(0, |t| t.events));
                        stats.keys = Some(tally.map_or(0, |t| t.keys));
                        stats.state_bytes = tally.map_or(0, |t| t.bytes);
                        stats.latest = tally.and_then(|t| t.latest);
                    }
                    Operator::Derived(_) => stats.keys = Some(stream_keys),
                    Operator::Aggregate(_) => {
                        if let Some(slot) = self.aggregates.get(&node.id) {
                            stats.keys = Some(slot.memberships.len() as u64);
                            stats.groups = Some(slot.groups.len() as u64);
                            stats.state_bytes = slot.memory_bytes() as u64;
                        }
                    }
                    Operator::Metric(_) => {
                        stats.groups = self.metric(&node.id, None, None).ok().map(|v| v.groups.len() as u64);
                    }
                }
                stats
            })
            .collect();
        Ok(JobStats {
            events: state.events,
            keys: stream_keys,
            latest: state.latest,
            nodes,
        })
    }

    /// The earliest event time of any key of stream `stream`.
    pub fn earliest(&self, stream: StreamId) -> Option<Time> {
        self.streams[stream as usize]
            .keys
            .values()
            .filter_map(|k| k.clock.origin)
            .min()
    }

    /// Per leaf slot of `stream`: what its workers took in and hold, in one
    /// pass over the keys.
    fn leaf_tallies(&self, stream: StreamId) -> FxHashMap<u32, LeafTally> {
        let mut tallies: FxHashMap<u32, LeafTally> = FxHashMap::default();
        for key in self.streams[stream as usize].keys.values() {
            for (slot, data) in &key.leaves {
                let tally = tallies.entry(*slot).or_default();
                tally.events += key.clock.events;
                tally.keys += 1;
                tally.bytes += (std::mem::size_of::<(u32, LeafData)>() + data.heap_bytes()) as u64;
                tally.latest = tally.latest.max(key.clock.latest);
            }
        }
        tallies
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Target;
    use timeline::EventParser;

    fn apply(e: &mut Engine, lines: &[&str]) {
        let p = EventParser::default();
        let events: Vec<_> = lines.iter().map(|l| p.parse(l).unwrap()).collect();
        e.apply(0, &events, &Target::AllLeaves, None);
    }

    #[test]
    fn leaves_count_the_events_and_keys_they_took_in() {
        let mut e = Engine::new();
        e.submit(Some("j"), r#"has_existed(x == 1) && latest_event_to_state(s) == "a""#)
            .unwrap();
        apply(
            &mut e,
            &[
                r#"{"session_id":"k1","time":5,"x":1}"#,
                r#"{"session_id":"k1","time":9,"s":"a"}"#,
                r#"{"session_id":"k2","time":7,"s":"b"}"#,
            ],
        );
        let stats = e.job_stats("j").unwrap();
        assert_eq!((stats.events, stats.keys, stats.latest), (3, 2, Some(9)));
        let plan = &e.job("j").unwrap().plan;
        for n in &stats.nodes {
            let node = plan.node(&n.node).unwrap();
            match node.worker {
                WorkerKind::EventProcessor => {
                    assert_eq!((n.events, n.keys, n.latest), (Some(3), Some(2), Some(9)), "{}", n.node);
                    assert!(n.state_bytes > 0);
                }
                _ => {
                    assert_eq!((n.events, n.keys, n.state_bytes), (None, Some(2), 0), "{}", n.node);
                }
            }
        }
    }

    #[test]
    fn a_leaf_holding_a_history_weighs_more_per_state_change() {
        let mut e = Engine::new();
        e.submit(Some("j"), "latest_event_to_state(s)").unwrap();
        apply(&mut e, &[r#"{"session_id":"k","time":1,"s":"a"}"#]);
        let one = e.job_stats("j").unwrap().nodes[0].state_bytes;
        let many: Vec<String> = (2..50)
            .map(|t| format!(r#"{{"session_id":"k","time":{t},"s":"v{t}"}}"#))
            .collect();
        apply(&mut e, &many.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(e.job_stats("j").unwrap().nodes[0].state_bytes > one);
    }

    #[test]
    fn aggregates_count_their_keys_and_groups() {
        let mut e = Engine::new();
        e.submit(Some("j"), "has_existed(x == 1) | aggregate(group_by(cdn), count_true)")
            .unwrap();
        apply(
            &mut e,
            &[
                r#"{"session_id":"k1","time":1,"x":1,"cdn":"A"}"#,
                r#"{"session_id":"k2","time":2,"cdn":"B"}"#,
                r#"{"session_id":"k3","time":3,"cdn":"B"}"#,
            ],
        );
        e.refresh_aggregates();
        let stats = e.job_stats("j").unwrap();
        let agg = stats.nodes.iter().find(|n| n.worker == WorkerKind::Aggregator).unwrap();
        assert_eq!((agg.keys, agg.groups), (Some(3), Some(2)));
        assert!(agg.state_bytes > 0);
        assert!(matches!(e.job_stats("nope"), Err(ReadError::UnknownJob(_))));
    }
}
