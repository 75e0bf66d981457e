//! The in-memory engine of the local runtime: every job's workers for every
//! key, driven by the same `timeline` and `timeline-core` logic the Golem
//! components run. No I/O: the server makes it durable.

use rustc_hash::FxHashMap;
use smol_str::SmolStr;
use timeline::{
    DerivedOp, Event, LeafData, LeafOp, NodeId, Operator, Output, Time, TimelineProcessor, ValueTable,
    WorkerDescription,
};
use timeline_core::{Job, JobRegistry, SubmitError, Submitted};

/// Which leaf workers a batch of events is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every leaf of every job (the usual case: a key's events concern all).
    AllLeaves,
    /// One leaf worker (as the feeder and Golem deliver them).
    Leaf(NodeId),
}

/// A live leaf node.
#[derive(Debug, Clone)]
struct LeafSlot {
    op: LeafOp,
    /// Values of `latest_event_to_state`, shared by all keys.
    values: ValueTable,
}

/// What the engine holds for one key: the key's origin and latest time, shared
/// by all its leaves, and each leaf's operator state.
#[derive(Debug, Clone, Default)]
struct KeyState {
    origin: Option<Time>,
    latest: Option<Time>,
    events: u64,
    /// (slot, state), sorted by slot.
    leaves: Vec<(u32, LeafData)>,
}

/// Every job, every leaf state of every key.
#[derive(Debug, Default)]
pub struct Engine {
    registry: JobRegistry,
    slots: Vec<Option<LeafSlot>>,
    slot_of: FxHashMap<NodeId, u32>,
    /// For every live node, how to compute it from leaf states.
    eval: FxHashMap<NodeId, EvalPlan>,
    keys: FxHashMap<SmolStr, KeyState>,
    events: u64,
}

/// A node's subtree in evaluation order, children first, each node once: the
/// node for any key without looking anything up by id.
#[derive(Debug)]
struct EvalPlan {
    steps: Vec<Step>,
}

#[derive(Debug)]
enum Step {
    Leaf { slot: u32 },
    Derived { op: DerivedOp, children: Vec<usize> },
}

/// The result of a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No such job.
    #[error("no job named `{0}`")]
    UnknownJob(String),
    /// No live node with this id.
    #[error("no worker computes node `{0}`")]
    UnknownNode(String),
    /// The key never sent an event.
    #[error("key `{0}` has no events")]
    UnknownKey(String),
}

impl Engine {
    /// An engine with no job.
    pub fn new() -> Self {
        Self::default()
    }

    /// Submits a job. Returns what the registry did and the leaf nodes that are
    /// new (they must be fed the events seen so far).
    pub fn submit(&mut self, name: Option<&str>, query: &str) -> Result<(Submitted, Vec<NodeId>), SubmitError> {
        let submitted = self.registry.submit(name, query)?;
        let mut new_leaves = Vec::new();
        if let Submitted::Created(job) = &submitted {
            for node in &job.plan.nodes {
                if let Operator::Leaf(op) = &node.operator
                    && !self.slot_of.contains_key(&node.id)
                {
                    let slot = self.slots.len() as u32;
                    self.slots.push(Some(LeafSlot {
                        op: op.clone(),
                        values: ValueTable::default(),
                    }));
                    self.slot_of.insert(node.id.clone(), slot);
                    new_leaves.push(node.id.clone());
                }
            }
            for node in &job.plan.nodes {
                if !self.eval.contains_key(&node.id) {
                    let plan = self.eval_plan(&node.id);
                    self.eval.insert(node.id.clone(), plan);
                }
            }
        }
        Ok((submitted, new_leaves))
    }

    fn eval_plan(&self, root: &NodeId) -> EvalPlan {
        fn visit(engine: &Engine, id: &NodeId, steps: &mut Vec<Step>, seen: &mut FxHashMap<NodeId, usize>) -> usize {
            if let Some(&i) = seen.get(id) {
                return i;
            }
            let node = engine.registry.node(id).expect("plans reference live nodes");
            let step = match &node.operator {
                Operator::Leaf(_) => Step::Leaf {
                    slot: engine.slot_of[id],
                },
                Operator::Derived(op) => {
                    let children = node.children.iter().map(|c| visit(engine, c, steps, seen)).collect();
                    Step::Derived {
                        op: op.clone(),
                        children,
                    }
                }
            };
            steps.push(step);
            seen.insert(id.clone(), steps.len() - 1);
            steps.len() - 1
        }
        let mut steps = Vec::new();
        visit(self, root, &mut steps, &mut FxHashMap::default());
        EvalPlan { steps }
    }

    /// Deletes a job and the state of the workers no other job uses.
    pub fn delete(&mut self, name: &str) -> Option<Job> {
        let (job, freed) = self.registry.remove(name)?;
        let mut dead = Vec::new();
        for id in freed {
            self.eval.remove(&id);
            if let Some(slot) = self.slot_of.remove(&id) {
                self.slots[slot as usize] = None;
                dead.push(slot);
            }
        }
        if !dead.is_empty() {
            for key in self.keys.values_mut() {
                key.leaves.retain(|(slot, _)| !dead.contains(slot));
            }
        }
        Some(job)
    }

    /// Applies events; `only` restricts a replay to some leaves (a new job's).
    pub fn apply(&mut self, events: &[Event], target: &Target, only: Option<&[NodeId]>) {
        let chosen: Option<Vec<u32>> = match (target, only) {
            (Target::Leaf(id), _) if only.is_some_and(|o| !o.contains(id)) => return,
            (Target::Leaf(id), _) => match self.slot_of.get(id) {
                Some(&slot) => Some(vec![slot]),
                None => return,
            },
            (Target::AllLeaves, Some(only)) => {
                Some(only.iter().filter_map(|id| self.slot_of.get(id).copied()).collect())
            }
            (Target::AllLeaves, None) => None,
        };
        let replay = only.is_some();
        for event in events {
            let key = match self.keys.get_mut(&event.key) {
                Some(key) => key,
                None => self.keys.entry(event.key.clone()).or_default(),
            };
            if !replay {
                key.origin = Some(key.origin.map_or(event.time, |o| o.min(event.time)));
                key.latest = Some(key.latest.map_or(event.time, |l| l.max(event.time)));
                key.events += 1;
                self.events += 1;
            }
            match &chosen {
                Some(slots) => {
                    for &slot in slots {
                        apply_to_slot(&mut self.slots, key, slot, event);
                    }
                }
                None => {
                    for slot in 0..self.slots.len() as u32 {
                        apply_to_slot(&mut self.slots, key, slot, event);
                    }
                }
            }
        }
    }

    /// Applies one event to every leaf.
    pub fn apply_one(&mut self, event: &Event) {
        self.apply(std::slice::from_ref(event), &Target::AllLeaves, None);
    }

    /// The registry of jobs.
    pub fn registry(&self) -> &JobRegistry {
        &self.registry
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Result<&Job, ReadError> {
        self.registry
            .get(name)
            .ok_or_else(|| ReadError::UnknownJob(name.to_string()))
    }

    /// Keys with events, sorted, after `after`, at most `limit`.
    pub fn keys(&self, after: Option<&str>, limit: usize) -> Vec<SmolStr> {
        let mut keys: Vec<&SmolStr> = self
            .keys
            .keys()
            .filter(|k| after.is_none_or(|a| k.as_bytes() > a.as_bytes()))
            .collect();
        keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        keys.into_iter().take(limit).cloned().collect()
    }

    /// Number of keys with events.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Events applied since start (replays of the log included).
    pub fn event_count(&self) -> u64 {
        self.events
    }

    /// Number of live leaf workers per key.
    pub fn leaf_count(&self) -> usize {
        self.slot_of.len()
    }

    /// The output of node `id` for `key`: a leaf's state, or a derived node
    /// computed from its children on demand.
    pub fn output(&self, id: &NodeId, key: &str) -> Result<Output, ReadError> {
        let state = self
            .keys
            .get(key)
            .ok_or_else(|| ReadError::UnknownKey(key.to_string()))?;
        let plan = self
            .eval
            .get(id)
            .ok_or_else(|| ReadError::UnknownNode(id.to_string()))?;
        let mut outputs: Vec<Output> = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            let out = match step {
                Step::Leaf { slot } => {
                    let leaf = self.slots[*slot as usize].as_ref().expect("live node has a slot");
                    let timeline = match state.leaves.binary_search_by_key(slot, |(s, _)| *s) {
                        Ok(i) => state.leaves[i].1.timeline(&leaf.values, state.origin),
                        Err(_) => LeafData::new(&leaf.op).timeline(&leaf.values, state.origin),
                    };
                    Output {
                        timeline,
                        latest: state.latest,
                    }
                }
                Step::Derived { op, children } => {
                    let inputs: Vec<&Output> = children.iter().map(|&c| &outputs[c]).collect();
                    TimelineProcessor::evaluate_op(op, &inputs)
                }
            };
            outputs.push(out);
        }
        Ok(outputs.pop().expect("a plan has its node as last step"))
    }

    /// What worker (`id`, `key`) computes and holds.
    pub fn describe(&self, id: &NodeId, key: &str) -> Result<WorkerDescription, ReadError> {
        let out = self.output(id, key)?;
        let node = self.registry.node(id).expect("checked by output");
        let state = &self.keys[key];
        Ok(WorkerDescription {
            node: id.clone(),
            kind: node.worker,
            operator: node.operator.name().to_string(),
            expression: node.expression.clone(),
            children: node.children.clone(),
            events: matches!(node.operator, Operator::Leaf(_)).then_some(state.events),
            origin: state.origin,
            latest: state.latest,
            spans: out.timeline.len(),
        })
    }

    /// Approximate bytes of worker state held for all keys.
    pub fn state_bytes(&self) -> usize {
        self.keys
            .iter()
            .map(|(k, s)| {
                std::mem::size_of_val(k)
                    + std::mem::size_of::<KeyState>()
                    + s.leaves.capacity() * std::mem::size_of::<(u32, LeafData)>()
                    + s.leaves.iter().map(|(_, d)| d.heap_bytes()).sum::<usize>()
            })
            .sum()
    }
}

/// Applies an event to one leaf of a key, creating the leaf's state if needed.
fn apply_to_slot(slots: &mut [Option<LeafSlot>], key: &mut KeyState, slot: u32, event: &Event) {
    let Some(leaf) = slots[slot as usize].as_mut() else {
        return;
    };
    let state = match key.leaves.binary_search_by_key(&slot, |(s, _)| *s) {
        Ok(i) => &mut key.leaves[i].1,
        Err(i) => {
            key.leaves.insert(i, (slot, LeafData::new(&leaf.op)));
            &mut key.leaves[i].1
        }
    };
    state.apply(&leaf.op, &mut leaf.values, event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeline::{EventParser, Value};

    fn events(lines: &[&str]) -> Vec<Event> {
        let p = EventParser::default();
        lines.iter().map(|l| p.parse(l).unwrap()).collect()
    }

    #[test]
    fn a_new_job_replays_history_into_its_new_leaves_only() {
        let mut e = Engine::new();
        let (_, leaves) = e.submit(Some("a"), "has_existed(x == 1)").unwrap();
        assert_eq!(leaves.len(), 1);
        let batch = events(&[
            r#"{"session_id":"k","time":5,"x":1}"#,
            r#"{"session_id":"k","time":9,"y":2}"#,
        ]);
        e.apply(&batch, &Target::AllLeaves, None);
        let (submitted, new) = e
            .submit(Some("b"), "has_existed(x == 1) && has_existed(y == 2)")
            .unwrap();
        assert_eq!(new.len(), 1, "has_existed(x == 1) is reused");
        assert!(submitted.job().plan.nodes.iter().any(|n| n.reused));
        e.apply(&batch, &Target::AllLeaves, Some(&new));
        let out = e.output(&submitted.job().plan.result, "k").unwrap();
        assert_eq!(out.value_at_end(), Some(Value::Bool(true)));
        let d = e.describe(&submitted.job().plan.leaves[0], "k").unwrap();
        assert_eq!(d.events, Some(2), "the replay did not count events twice");
    }

    #[test]
    fn deleting_a_job_frees_unshared_workers() {
        let mut e = Engine::new();
        e.submit(Some("a"), "has_existed(x == 1)").unwrap();
        e.submit(Some("b"), "has_existed(x == 1) && has_existed(y == 2)")
            .unwrap();
        e.apply(
            &events(&[r#"{"session_id":"k","time":5,"x":1,"y":2}"#]),
            &Target::AllLeaves,
            None,
        );
        assert_eq!(e.leaf_count(), 2);
        e.delete("b").unwrap();
        assert_eq!(e.leaf_count(), 1);
        assert!(e.keys["k"].leaves.len() == 1);
        assert!(matches!(e.job("b"), Err(ReadError::UnknownJob(_))));
    }
}
