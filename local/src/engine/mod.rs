//! The in-memory engine of the local runtime: every job's workers for every
//! key of every stream, driven by the same `timeline` logic the Golem
//! components run. No I/O: the server makes it durable.
//!
//! Each stream is a key space of its own: its keys, the leaves that read it,
//! the catalogue of its columns. An event reaches the leaves of its stream
//! only.

use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;
use std::borrow::Cow;
use timeline::aggregate::key_contributions;
use timeline::metric::InputFold;

use timeline::registry::{Job, JobRegistry, SubmitError, Submitted};
use timeline::repeats::{Fields, content_digest, identity_digest};
use timeline::stream::{StreamConflict, StreamRef};
use timeline::{
    AggFn, Columns, Evaluation, Event, Group, Inputs, KeyClock, LeafData, LeafOp, NodeId, Operator, Output, StreamSpec,
    Time, Value, ValueTable, WorkerDescription, WorkerKind,
};

/// Which leaf workers a batch of events (of one stream) is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every leaf of every job on the stream (the usual case: a key's events
    /// concern all).
    AllLeaves,
    /// One leaf worker (as the feeder and Golem deliver them).
    Leaf(NodeId),
}

mod aggregates;
mod expiry;
mod ledger;
mod repeats;
mod snapshot;
mod stats;

pub use expiry::{ExpiredKey, horizon};
use ledger::{IdLedger, Seen};
pub use repeats::{fingerprint, fingerprint_with};
pub use snapshot::{EngineImage, RestoreError};
pub use stats::{JobStats, NodeStats};

use aggregates::AggregateSlot;

/// A stream's index in the engine.
pub type StreamId = u16;

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
    clock: KeyClock,
    /// (slot, state), sorted by slot.
    leaves: Vec<(u32, LeafData)>,
    /// The log records holding the key's events, in order (for reading a
    /// key's raw events back).
    records: Vec<u64>,
    /// Fingerprints (see [`fingerprint`]) of the identified events applied
    /// to single leaves, as the feeder delivers them (those delivered to
    /// every leaf are known from `ids`).
    seen: FxHashSet<u64>,
    /// The content applied of each identified event (time and id).
    ids: IdLedger,
}

/// One stream: its keys, the leaves that read it, its columns.
#[derive(Debug)]
struct StreamState {
    spec: StreamSpec,
    keys: FxHashMap<SmolStr, KeyState>,
    /// The live leaf slots that read the stream.
    leaves: Vec<u32>,
    columns: Columns,
    events: u64,
    /// The latest event time of any key: "the end" for its aggregates.
    latest: Option<Time>,
    /// Keys whose leaves changed since the aggregates last took them in.
    dirty: FxHashSet<SmolStr>,
}

impl StreamState {
    fn new(spec: StreamSpec) -> Self {
        StreamState {
            spec,
            keys: FxHashMap::default(),
            leaves: Vec::new(),
            columns: Columns::new(),
            events: 0,
            latest: None,
            dirty: FxHashSet::default(),
        }
    }
}

/// A stream as the engine knows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// The stream and its fields.
    pub spec: StreamSpec,
    /// Keys with events.
    pub keys: u64,
    /// Events received (identified repeats the log left out excluded; repeats
    /// without an id included).
    pub events: u64,
    /// The latest event time of any key.
    pub latest: Option<Time>,
    /// The columns its events carried.
    pub columns: Columns,
    /// The jobs that read it.
    pub jobs: Vec<String>,
}

/// Every job, every leaf state of every key, every aggregator.
#[derive(Debug)]
pub struct Engine {
    registry: JobRegistry,
    slots: Vec<Option<LeafSlot>>,
    slot_of: FxHashMap<NodeId, u32>,
    /// For every live per-key node, how to compute it from leaf states.
    eval: FxHashMap<NodeId, NodeEval>,
    streams: Vec<StreamState>,
    stream_of: FxHashMap<SmolStr, StreamId>,
    events: u64,
    aggregates: FxHashMap<NodeId, AggregateSlot>,
    /// Keys with deliveries of an identified event that disagree on its
    /// content, not yet rebuilt (see [`Engine::take_conflicts`]).
    pending: FxHashSet<(StreamId, SmolStr)>,
    /// Every key that ever had such a conflict: a new job's replay of the log
    /// must settle them again.
    conflicted: FxHashSet<(StreamId, SmolStr)>,
    /// Deliveries to every leaf found to lose such a conflict, by key,
    /// identity and content digest: sent again, they are repeats (the log has
    /// one copy), not new conflicts.
    losers: FxHashSet<(StreamId, SmolStr, u64, u64)>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::with_default_stream(StreamSpec::default())
    }
}

/// An aggregate (or metric) read at one instant: the groups and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupValues {
    /// The instant read.
    pub t: Option<Time>,
    /// Per group, sorted: the keys counted and each function's value.
    pub groups: Vec<GroupRow>,
}

/// One group of an aggregate read.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// The group.
    pub group: Group,
    /// Keys of the group with a known value at the instant.
    pub keys: u64,
    /// Each requested function's value (`None`: Unknown).
    pub values: Vec<(String, Option<Value>)>,
}

/// How many workers of each kind the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerCounts {
    /// Leaf workers with state (one per leaf node and key).
    pub event_processors: u64,
    /// Derived workers (one per derived node and key).
    pub timeline_processors: u64,
    /// Aggregators (one per aggregate node, group and shard).
    pub aggregators: u64,
    /// Metric workers (one per metric node).
    pub metrics: u64,
}

/// A node's evaluation, compiled when first read (compiling every node of
/// a long chain at submission would take time and memory quadratic in it).
#[derive(Debug)]
struct NodeEval {
    compiled: std::sync::OnceLock<CompiledNode>,
    /// The stream whose keys it is computed for.
    stream: StreamId,
}

/// A node's evaluation and the slot of each leaf it reads: the node for any
/// key without looking anything up by id.
#[derive(Debug)]
struct CompiledNode {
    eval: Evaluation,
    slots: Vec<u32>,
}

/// A key's leaves as the inputs of an evaluation.
struct KeyInputs<'a> {
    engine: &'a Engine,
    key: &'a KeyState,
    slots: &'a [u32],
}

impl Inputs for KeyInputs<'_> {
    fn leaf(&self, index: usize) -> Cow<'_, Output> {
        let slot = self.slots[index];
        let leaf = self.engine.slots[slot as usize].as_ref().expect("live node has a slot");
        let timeline = match self.key.leaves.binary_search_by_key(&slot, |(s, _)| *s) {
            Ok(i) => self.key.leaves[i].1.timeline(&leaf.values, self.key.clock.origin),
            Err(_) => LeafData::new(&leaf.op).timeline(&leaf.values, self.key.clock.origin),
        };
        Cow::Owned(Output {
            timeline,
            latest: self.key.clock.latest,
        })
    }
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
    /// No job reads a stream of that name.
    #[error("no stream named `{0}`")]
    UnknownStream(String),
    /// The node is not of the kind the read needs.
    #[error("`{0}` is {1}; {2}")]
    WrongKind(String, &'static str, &'static str),
}

impl Engine {
    /// An engine with no job; its default stream is keyed by `session_id`.
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine with no job whose default stream (of queries without a
    /// `from` header) is `default`.
    pub fn with_default_stream(default: StreamSpec) -> Self {
        let mut engine = Engine {
            registry: JobRegistry::with_default_stream(default.clone()),
            slots: Vec::new(),
            slot_of: FxHashMap::default(),
            eval: FxHashMap::default(),
            streams: Vec::new(),
            stream_of: FxHashMap::default(),
            events: 0,
            aggregates: FxHashMap::default(),
            pending: FxHashSet::default(),
            conflicted: FxHashSet::default(),
            losers: FxHashSet::default(),
        };
        engine.stream_index(&default);
        engine
    }

    fn stream_index(&mut self, spec: &StreamSpec) -> StreamId {
        if let Some(&id) = self.stream_of.get(&spec.name) {
            return id;
        }
        let id = self.streams.len() as StreamId;
        self.streams.push(StreamState::new(spec.clone()));
        self.stream_of.insert(spec.name.clone(), id);
        id
    }

    /// The stream of log records written for `spec`: known by its name, or
    /// declared now (recovery meets streams whose jobs are gone).
    pub fn open_stream(&mut self, spec: &StreamSpec) -> StreamId {
        if let Some(id) = self.stream_id(&spec.name) {
            return id;
        }
        let wanted = StreamRef {
            name: Some(spec.name.clone()),
            key: Some(spec.key.clone()),
            time: Some(spec.time.clone()),
            id: Some(spec.id.clone()),
        };
        let spec = self.registry.declare_stream(&wanted).unwrap_or_else(|_| spec.clone());
        self.stream_index(&spec)
    }

    /// The stream named `name`.
    pub fn stream_id(&self, name: &str) -> Option<StreamId> {
        self.stream_of.get(name).copied()
    }

    /// The stream `id`'s settings.
    pub fn stream_spec(&self, id: StreamId) -> &StreamSpec {
        &self.streams[id as usize].spec
    }

    /// Declares a stream (as a job's header would): a new one, or a known one
    /// whose fields agree.
    pub fn declare_stream(&mut self, wanted: &StreamRef) -> Result<StreamId, StreamConflict> {
        let spec = self.registry.declare_stream(wanted)?;
        Ok(self.stream_index(&spec))
    }

    /// The stream job `name` reads.
    pub fn job_stream(&self, name: &str) -> Result<StreamId, ReadError> {
        let job = self.job(name)?;
        self.stream_id(&job.plan.stream.name)
            .ok_or_else(|| ReadError::UnknownStream(job.plan.stream.name.to_string()))
    }

    /// The stream a per-key node reads.
    pub fn node_stream(&self, id: &NodeId) -> Result<StreamId, ReadError> {
        self.eval
            .get(id)
            .map(|n| n.stream)
            .ok_or_else(|| ReadError::UnknownNode(id.to_string()))
    }

    /// Every stream, by name.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let mut all: Vec<StreamInfo> = (0..self.streams.len() as StreamId)
            .map(|id| self.stream_info(id))
            .collect();
        all.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        all
    }

    /// What stream `id` holds.
    pub fn stream_info(&self, id: StreamId) -> StreamInfo {
        let s = &self.streams[id as usize];
        StreamInfo {
            spec: s.spec.clone(),
            keys: s.keys.len() as u64,
            events: s.events,
            latest: s.latest,
            columns: s.columns.clone(),
            jobs: self
                .registry
                .jobs()
                .filter(|j| j.plan.stream.name == s.spec.name)
                .map(|j| j.name.clone())
                .collect(),
        }
    }

    /// The columns stream `id`'s events carried.
    pub fn columns(&self, id: StreamId) -> &Columns {
        &self.streams[id as usize].columns
    }

    /// Submits a job. Returns what the registry did and the leaf nodes that are
    /// new (they must be fed the events seen so far).
    pub fn submit(&mut self, name: Option<&str>, query: &str) -> Result<(Submitted, Vec<NodeId>), SubmitError> {
        let submitted = self.registry.submit(name, query)?;
        let mut new_leaves = Vec::new();
        if let Submitted::Created(job) = &submitted {
            let stream = self.stream_index(&job.plan.stream);
            for node in &job.plan.nodes {
                if let Operator::Leaf(op) = &node.operator
                    && !self.slot_of.contains_key(&node.id)
                {
                    let slot = self.slots.len() as u32;
                    // Its stream holds it in `leaves`.
                    self.slots.push(Some(LeafSlot {
                        op: op.clone(),
                        values: ValueTable::default(),
                    }));
                    self.slot_of.insert(node.id.clone(), slot);
                    self.streams[stream as usize].leaves.push(slot);
                    new_leaves.push(node.id.clone());
                }
            }
            for node in &job.plan.nodes {
                match &node.operator {
                    Operator::Leaf(_) | Operator::Derived(_) => {
                        self.eval.entry(node.id.clone()).or_insert_with(|| NodeEval {
                            compiled: std::sync::OnceLock::new(),
                            stream,
                        });
                    }
                    Operator::Aggregate(spec) => {
                        self.aggregates.entry(node.id.clone()).or_insert_with(|| AggregateSlot {
                            stream,
                            source: node.children[0].clone(),
                            group: node.children.get(1).cloned(),
                            spec: spec.clone(),
                            group_index: FxHashMap::default(),
                            groups: Vec::new(),
                            memberships: FxHashMap::default(),
                            stale: true,
                        });
                    }
                    Operator::Metric(_) => {}
                }
            }
        }
        Ok((submitted, new_leaves))
    }

    /// Deletes a job and the state of the workers no other job uses.
    pub fn delete(&mut self, name: &str) -> Option<Job> {
        let (job, freed) = self.registry.remove(name)?;
        let mut dead = Vec::new();
        for id in freed {
            self.eval.remove(&id);
            self.aggregates.remove(&id);
            if let Some(slot) = self.slot_of.remove(&id) {
                self.slots[slot as usize] = None;
                dead.push(slot);
            }
        }
        if !dead.is_empty() {
            for stream in &mut self.streams {
                stream.leaves.retain(|slot| !dead.contains(slot));
                for key in stream.keys.values_mut() {
                    key.leaves.retain(|(slot, _)| !dead.contains(slot));
                }
            }
        }
        Some(job)
    }

    /// Applies events of stream `stream`; `only` restricts a replay to some
    /// leaves (a new job's).
    pub fn apply(&mut self, stream: StreamId, events: &[Event], target: &Target, only: Option<&[NodeId]>) {
        let Some(state) = self.streams.get_mut(stream as usize) else {
            return;
        };
        let chosen: Vec<u32> = match (target, only) {
            (Target::Leaf(id), Some(only)) if !only.contains(id) => return,
            (Target::AllLeaves, Some(only)) => only
                .iter()
                .filter_map(|id| self.slot_of.get(id).copied())
                .filter(|slot| state.leaves.contains(slot))
                .collect(),
            _ => target_slots(&self.slot_of, &state.leaves, target),
        };
        if chosen.is_empty() && *target != Target::AllLeaves {
            // A leaf that is not (or no longer) a live leaf of this stream.
            return;
        }
        let replay = only.is_some();
        let aggregated = !self.aggregates.is_empty();
        for event in events {
            let key = match state.keys.get_mut(&event.key) {
                Some(key) => key,
                None => state.keys.entry(event.key.clone()).or_default(),
            };
            let mut conflict = false;
            if !replay && let Some(id) = &event.id {
                let content = content_digest(event);
                let all = *target == Target::AllLeaves;
                conflict = key.ids.observe(identity_digest(event.time, id), content, all) == Seen::Conflict;
                if !all && !conflict {
                    key.seen.insert(fingerprint_with(event, target, content));
                }
            }
            if !replay {
                key.clock.observe(event.time);
                state.events += 1;
                self.events += 1;
                state.latest = Some(state.latest.map_or(event.time, |l| l.max(event.time)));
                state.columns.observe(event);
            }
            if aggregated && !state.dirty.contains(&event.key) {
                state.dirty.insert(event.key.clone());
            }
            if conflict {
                // Which content is the event needs the key's deliveries.
                self.pending.insert((stream, event.key.clone()));
                self.conflicted.insert((stream, event.key.clone()));
                continue;
            }
            for &slot in &chosen {
                apply_to_slot(&mut self.slots, key, slot, event);
            }
        }
    }

    /// The keys found since the last call to hold deliveries of one
    /// identified event with different contents: the caller rebuilds each
    /// from its deliveries with [`Engine::rebuild_key`].
    pub fn take_conflicts(&mut self) -> Vec<(StreamId, SmolStr)> {
        let mut keys: Vec<_> = self.pending.drain().collect();
        keys.sort();
        keys
    }

    /// Whether [`Engine::take_conflicts`] has keys to give.
    pub fn has_conflicts(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Every key of `stream` that ever held such deliveries (a replay into a
    /// new job's leaves applies all deliveries, so these are rebuilt after it).
    pub fn conflicted_keys(&self, stream: StreamId) -> Vec<SmolStr> {
        let mut keys: Vec<SmolStr> = self
            .conflicted
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, k)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Rebuilds the leaves of `key` on `stream` from all its `deliveries`
    /// (in the order they were logged, with where each went): of the
    /// deliveries of each identified event the one the contract picks
    /// ([`timeline::repeats::resolve`]) is applied, to every leaf any of them
    /// went to.
    pub fn rebuild_key(&mut self, stream: StreamId, key: &str, deliveries: Vec<(Event, Target)>) {
        let Some(state) = self.streams.get_mut(stream as usize) else {
            return;
        };
        let spec = state.spec.clone();
        let fields = Fields {
            key: &spec.key,
            time: &spec.time,
            id: &spec.id,
        };
        let delivered: Vec<(u64, u64)> = deliveries
            .iter()
            .filter(|(_, target)| *target == Target::AllLeaves)
            .filter_map(|(e, _)| Some((identity_digest(e.time, e.id.as_deref()?), content_digest(e))))
            .collect();
        let resolved = ::timeline::repeats::resolve(deliveries, fields);
        let leaves = state.leaves.clone();
        let Some(k) = state.keys.get_mut(key) else {
            return;
        };
        k.leaves.clear();
        for (event, targets) in resolved {
            if let Some(id) = &event.id {
                let all = targets.contains(&Target::AllLeaves);
                k.ids.set(identity_digest(event.time, id), content_digest(&event), all);
            }
            let mut chosen: Vec<u32> = targets
                .iter()
                .flat_map(|target| target_slots(&self.slot_of, &leaves, target))
                .collect();
            chosen.sort_unstable();
            chosen.dedup();
            for slot in chosen {
                apply_to_slot(&mut self.slots, k, slot, &event);
            }
        }
        if !self.aggregates.is_empty() {
            state.dirty.insert(SmolStr::new(key));
        }
        for (identity, content) in delivered {
            if k.ids.holds(identity, content).is_none() {
                self.losers.insert((stream, SmolStr::new(key), identity, content));
            }
        }
    }

    /// Whether `event` (identified, with content digest `content`) was
    /// applied already as delivered to `target`, so that the log can leave
    /// it out.
    pub fn is_known(&self, stream: StreamId, event: &Event, target: &Target, content: u64) -> bool {
        let Some(id) = &event.id else { return false };
        let Some(key) = self.streams.get(stream as usize).and_then(|s| s.keys.get(&event.key)) else {
            return false;
        };
        let identity = identity_digest(event.time, id);
        match key.ids.holds(identity, content) {
            None => {
                *target == Target::AllLeaves && self.losers.contains(&(stream, event.key.clone(), identity, content))
            }
            Some(true) => true,
            Some(false) => *target != Target::AllLeaves && key.seen.contains(&fingerprint_with(event, target, content)),
        }
    }

    /// Notes that log record `seq` holds `events` (of stream `stream`).
    pub fn note_record(&mut self, stream: StreamId, seq: u64, events: &[Event]) {
        let Some(state) = self.streams.get_mut(stream as usize) else {
            return;
        };
        for event in events {
            if let Some(key) = state.keys.get_mut(&event.key)
                && key.records.last() != Some(&seq)
            {
                key.records.push(seq);
            }
        }
    }

    /// The log records that hold `key`'s events on stream `stream`, in order.
    pub fn key_records(&self, stream: StreamId, key: &str) -> Result<&[u64], ReadError> {
        self.streams[stream as usize]
            .keys
            .get(key)
            .map(|k| k.records.as_slice())
            .ok_or_else(|| ReadError::UnknownKey(key.to_string()))
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

    /// Keys of stream `stream` with events, sorted, after `after`, at most
    /// `limit`.
    pub fn keys(&self, stream: StreamId, after: Option<&str>, limit: usize) -> Vec<SmolStr> {
        self.keys_containing(stream, after, None, limit)
    }

    /// Like [`Engine::keys`], only the keys that contain `contains`, ignoring
    /// case (all of them if `None` or empty).
    pub fn keys_containing(
        &self,
        stream: StreamId,
        after: Option<&str>,
        contains: Option<&str>,
        limit: usize,
    ) -> Vec<SmolStr> {
        let needle = contains.filter(|c| !c.is_empty()).map(str::to_lowercase);
        let mut keys: Vec<&SmolStr> = self.streams[stream as usize]
            .keys
            .keys()
            .filter(|k| after.is_none_or(|a| k.as_bytes() > a.as_bytes()))
            .filter(|k| needle.as_deref().is_none_or(|n| k.to_lowercase().contains(n)))
            .collect();
        keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        keys.into_iter().take(limit).cloned().collect()
    }

    /// Number of keys with events, every stream's.
    pub fn key_count(&self) -> usize {
        self.streams.iter().map(|s| s.keys.len()).sum()
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
        let node = self
            .eval
            .get(id)
            .ok_or_else(|| ReadError::UnknownNode(id.to_string()))?;
        let state = self.streams[node.stream as usize]
            .keys
            .get(key)
            .ok_or_else(|| ReadError::UnknownKey(key.to_string()))?;
        let compiled = node.compiled.get_or_init(|| {
            let eval = Evaluation::compile(std::slice::from_ref(id), |id| self.registry.node(id))
                .expect("plans reference live per-key nodes");
            let slots = eval.leaves().iter().map(|l| self.slot_of[l]).collect();
            CompiledNode { eval, slots }
        });
        let inputs = KeyInputs {
            engine: self,
            key: state,
            slots: &compiled.slots,
        };
        Ok(compiled.eval.evaluate_root(&inputs))
    }

    /// Brings every aggregator up to date with the keys changed since the last
    /// call (and every key, for aggregates that are new): each such key's
    /// contributions replace its old ones. Call after applying events and
    /// before reading aggregates.
    pub fn refresh_aggregates(&mut self) {
        if self.aggregates.is_empty() {
            for stream in &mut self.streams {
                stream.dirty.clear();
            }
            return;
        }
        for stream in 0..self.streams.len() as StreamId {
            let dirty = std::mem::take(&mut self.streams[stream as usize].dirty);
            let mut ids: Vec<NodeId> = self
                .aggregates
                .iter()
                .filter(|(_, a)| a.stream == stream)
                .map(|(id, _)| id.clone())
                .collect();
            ids.sort();
            let (stale, fresh): (Vec<NodeId>, Vec<NodeId>) = ids.into_iter().partition(|id| self.aggregates[id].stale);
            if !stale.is_empty() {
                // The dirty keys too: those forgotten leave what they gave.
                let all: Vec<SmolStr> = self.streams[stream as usize].keys.keys().cloned().collect();
                self.take_in(&stale, all.iter().chain(dirty.iter()));
            }
            if !fresh.is_empty() {
                self.take_in(&fresh, dirty.iter());
            }
        }
    }

    /// Gives aggregates `ids` the current contributions of `keys`, one key
    /// at a time (nothing is buffered across keys).
    fn take_in<'k>(&mut self, ids: &[NodeId], keys: impl Iterator<Item = &'k SmolStr>) {
        // Out of the map while they take keys in, so that the per-key nodes
        // (which never read aggregates) can be evaluated meanwhile.
        let mut slots: Vec<AggregateSlot> = ids
            .iter()
            .map(|id| self.aggregates.remove(id).expect("listed by the caller"))
            .collect();
        // The group columns of this key evaluated so far.
        let mut groups: Vec<(NodeId, Option<timeline::Timeline>)> = Vec::new();
        for key in keys {
            groups.clear();
            for slot in &mut slots {
                let Ok(source) = self.output(&slot.source, key) else {
                    // A key no longer there (forgotten by retention).
                    slot.take_in(key, Vec::new(), None);
                    continue;
                };
                let group = match &slot.group {
                    None => None,
                    Some(g) => {
                        let i = match groups.iter().position(|(id, _)| id == g) {
                            Some(i) => i,
                            None => {
                                groups.push((g.clone(), self.output(g, key).ok().map(|o| o.timeline)));
                                groups.len() - 1
                            }
                        };
                        groups[i].1.as_ref()
                    }
                };
                let now = key_contributions(&slot.spec, &source.timeline, group);
                slot.take_in(key, now, source.latest);
            }
        }
        for (id, mut slot) in ids.iter().zip(slots) {
            slot.stale = false;
            self.aggregates.insert(id.clone(), slot);
        }
    }

    /// Marks every aggregate as needing all keys (after a recovery that
    /// replayed events into the leaves only).
    pub fn invalidate_aggregates(&mut self) {
        for slot in self.aggregates.values_mut() {
            slot.stale = true;
        }
    }

    /// The latest event time of any key of stream `stream`.
    pub fn latest(&self, stream: StreamId) -> Option<Time> {
        self.streams[stream as usize].latest
    }

    /// Aggregate `id` at `t` (default: the latest event time of any key):
    /// for each group (or the one named `group`), `functions` of its keys'
    /// values at `t`.
    pub fn aggregate(
        &self,
        id: &NodeId,
        t: Option<Time>,
        functions: &[AggFn],
        group: Option<&str>,
    ) -> Result<GroupValues, ReadError> {
        let slot = self.aggregate_slot(id)?;
        let Some(at) = t.or(self.streams[slot.stream as usize].latest) else {
            return Ok(GroupValues { t, groups: Vec::new() });
        };
        let groups = slot
            .fold(at, functions)
            .into_iter()
            .filter(|(g, _)| group.is_none_or(|name| g.is_named(name)))
            .map(|(group, partial)| GroupRow {
                keys: partial.keys,
                values: functions.iter().map(|f| (f.to_string(), partial.finish(*f))).collect(),
                group,
            })
            .collect();
        Ok(GroupValues { t: Some(at), groups })
    }

    fn aggregate_slot(&self, id: &NodeId) -> Result<&AggregateSlot, ReadError> {
        match self.aggregates.get(id) {
            Some(slot) => Ok(slot),
            None if self.registry.node(id).is_some() => Err(ReadError::WrongKind(
                id.to_string(),
                "not an aggregate",
                "aggregates are read at /v1/aggregators/{node}",
            )),
            None => Err(ReadError::UnknownNode(id.to_string())),
        }
    }

    /// Metric `id` at `t` (default: the latest event time): its value for
    /// each group of its grouped inputs (or the one named `group`).
    pub fn metric(&self, id: &NodeId, t: Option<Time>, group: Option<&str>) -> Result<GroupValues, ReadError> {
        let node = self
            .registry
            .node(id)
            .ok_or_else(|| ReadError::UnknownNode(id.to_string()))?;
        let Operator::Metric(expr) = &node.operator else {
            return Err(ReadError::WrongKind(
                id.to_string(),
                "not a metric",
                "metrics are read at /v1/metrics/{node}",
            ));
        };
        let stream = match node.children.first() {
            Some(input) => self.aggregate_slot(input)?.stream,
            None => 0,
        };
        let Some(at) = t.or(self.streams[stream as usize].latest) else {
            return Ok(GroupValues { t, groups: Vec::new() });
        };
        let mut folds = Vec::with_capacity(node.children.len());
        for (i, input) in node.children.iter().enumerate() {
            let slot = self.aggregate_slot(input)?;
            folds.push(InputFold {
                grouped: slot.spec.group_by.is_some(),
                groups: slot.fold(at, &expr.functions_of(i)),
            });
        }
        let rows = expr.evaluate_groups(&folds);
        let groups = rows
            .into_iter()
            .filter(|(g, _, _)| group.is_none_or(|name| g.is_named(name)))
            .map(|(group, keys, value)| GroupRow {
                group,
                keys,
                values: vec![("value".to_string(), value)],
            })
            .collect();
        Ok(GroupValues { t: Some(at), groups })
    }

    /// The groups `key` contributes to in aggregate `id`.
    pub fn key_groups(&self, id: &NodeId, key: &str) -> Result<Vec<Group>, ReadError> {
        let slot = self.aggregate_slot(id)?;
        if !self.streams[slot.stream as usize].keys.contains_key(key) {
            return Err(ReadError::UnknownKey(key.to_string()));
        }
        Ok(slot.memberships.get(key).map_or_else(Vec::new, |g| {
            g.as_slice()
                .iter()
                .map(|&i| slot.groups[i as usize].0.clone())
                .collect()
        }))
    }

    /// How many workers of each kind run.
    pub fn worker_counts(&self) -> WorkerCounts {
        let derived: u64 = self
            .registry
            .nodes()
            .filter(|n| n.worker == WorkerKind::TimelineProcessor)
            .filter_map(|n| self.eval.get(&n.id))
            .map(|e| self.streams[e.stream as usize].keys.len() as u64)
            .sum();
        WorkerCounts {
            event_processors: self
                .streams
                .iter()
                .flat_map(|s| s.keys.values())
                .map(|k| k.leaves.len() as u64)
                .sum(),
            timeline_processors: derived,
            aggregators: self.aggregates.values().map(|a| a.aggregators() as u64).sum(),
            metrics: self.registry.nodes().filter(|n| n.worker == WorkerKind::Metric).count() as u64,
        }
    }

    /// Approximate bytes held by the aggregators (their members'
    /// contributions and the key-to-group index).
    pub fn aggregator_bytes(&self) -> usize {
        self.aggregates.values().map(AggregateSlot::memory_bytes).sum()
    }

    /// What worker (`id`, `key`) computes and holds.
    pub fn describe(&self, id: &NodeId, key: &str) -> Result<WorkerDescription, ReadError> {
        let out = self.output(id, key)?;
        let node = self.registry.node(id).expect("checked by output");
        let state = &self.streams[self.eval[id].stream as usize].keys[key];
        Ok(WorkerDescription {
            node: id.clone(),
            kind: node.worker,
            operator: node.operator.name().to_string(),
            expression: node.expression.clone(),
            children: node.children.clone(),
            events: matches!(node.operator, Operator::Leaf(_)).then_some(state.clock.events),
            origin: state.clock.origin,
            latest: state.clock.latest,
            spans: out.timeline.len(),
        })
    }

    /// Approximate bytes of worker state held for all keys, aggregators included.
    pub fn state_bytes(&self) -> usize {
        self.streams
            .iter()
            .flat_map(|s| s.keys.iter())
            .map(|(k, s)| {
                std::mem::size_of_val(k)
                    + std::mem::size_of::<KeyState>()
                    + s.leaves.capacity() * std::mem::size_of::<(u32, LeafData)>()
                    + s.records.capacity() * std::mem::size_of::<u64>()
                    + s.seen.capacity() * (std::mem::size_of::<u64>() + 1)
                    + s.ids.heap_bytes()
                    + s.leaves.iter().map(|(_, d)| d.heap_bytes()).sum::<usize>()
            })
            .sum::<usize>()
            + self.aggregator_bytes()
    }
}

/// The slots among `stream_leaves` (a stream's live leaves) that a delivery
/// to `target` reaches.
fn target_slots(slot_of: &FxHashMap<NodeId, u32>, stream_leaves: &[u32], target: &Target) -> Vec<u32> {
    match target {
        Target::AllLeaves => stream_leaves.to_vec(),
        Target::Leaf(id) => slot_of
            .get(id)
            .copied()
            .filter(|slot| stream_leaves.contains(slot))
            .into_iter()
            .collect(),
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
        e.apply(0, &batch, &Target::AllLeaves, None);
        let (submitted, new) = e
            .submit(Some("b"), "has_existed(x == 1) && has_existed(y == 2)")
            .unwrap();
        assert_eq!(new.len(), 1, "has_existed(x == 1) is reused");
        assert!(submitted.job().plan.nodes.iter().any(|n| n.reused));
        e.apply(0, &batch, &Target::AllLeaves, Some(&new));
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
            0,
            &events(&[r#"{"session_id":"k","time":5,"x":1,"y":2}"#]),
            &Target::AllLeaves,
            None,
        );
        assert_eq!(e.leaf_count(), 2);
        e.delete("b").unwrap();
        assert_eq!(e.leaf_count(), 1);
        assert!(e.streams[0].keys["k"].leaves.len() == 1);
        assert!(matches!(e.job("b"), Err(ReadError::UnknownJob(_))));
    }

    #[test]
    fn deliveries_to_single_leaves_that_disagree_are_settled_for_every_leaf_they_reached() {
        let query = "has_existed(x == 1) && has_existed(y == 2)";
        let mut reference = Engine::new();
        let (submitted, leaves) = reference.submit(Some("a"), query).unwrap();
        let result = submitted.job().plan.result.clone();
        // The event is the delivery with `x` (`{"event_id":"e","x":1,...` sorts
        // before `{"event_id":"e","y":2,...`).
        let winner = events(&[r#"{"session_id":"k","time":5,"event_id":"e","x":1}"#]);
        let loser = events(&[r#"{"session_id":"k","time":5,"event_id":"e","y":2}"#]);
        reference.apply(0, &winner, &Target::AllLeaves, None);

        let mut e = Engine::new();
        e.submit(Some("a"), query).unwrap();
        let mut deliveries = Vec::new();
        // The losing content reaches both leaves first, the winner only one.
        for leaf in &leaves {
            let target = Target::Leaf(leaf.clone());
            e.apply(0, &loser, &target, None);
            deliveries.push((loser[0].clone(), target));
        }
        assert!(!e.has_conflicts());
        let target = Target::Leaf(leaves[0].clone());
        e.apply(0, &winner, &target, None);
        deliveries.push((winner[0].clone(), target));
        assert_eq!(e.take_conflicts(), vec![(0, SmolStr::new("k"))]);
        e.rebuild_key(0, "k", deliveries);
        for node in leaves.iter().chain([&result]) {
            assert_eq!(
                e.output(node, "k").unwrap().value_at_end(),
                reference.output(node, "k").unwrap().value_at_end(),
                "{node}"
            );
        }
        assert_eq!(e.conflicted_keys(0), vec![SmolStr::new("k")]);
    }
}
