//! The engine's worker state as a snapshot: every key's clock, leaf states,
//! log records and repeat fingerprints, every leaf's value table, every
//! stream's catalogue. Leaves are named by node id, so a snapshot restores
//! into an engine whose jobs were submitted again in any order. Aggregators
//! are not in it: they are rebuilt from the keys.

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use timeline::{Columns, KeyClock, LeafData, NodeId, StreamSpec, Time, Value, ValueTable};

use super::{Engine, IdLedger, KeyState, StreamState};

/// A value, tagged (the snapshot's binary format cannot read untagged enums).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum TaggedValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(SmolStr),
}

/// A leaf node's shared values.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeafImage {
    node: String,
    values: Vec<TaggedValue>,
}

/// One key of a stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyImage {
    key: SmolStr,
    clock: KeyClock,
    /// (index into the image's leaves, state).
    leaves: Vec<(u32, LeafData)>,
    records: Vec<u64>,
    seen: Vec<u64>,
    /// (identity digest, content digest) of each identified event, as 16
    /// little-endian bytes each (random 64-bit digests take 10 bytes each as
    /// the format's variable-length integers, and decode slower).
    #[serde(with = "serde_bytes")]
    ids: Vec<u8>,
    /// Whether its deliveries ever disagreed on an event's content.
    conflicted: bool,
}

/// One stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StreamImage {
    spec: StreamSpec,
    columns: Columns,
    events: u64,
    latest: Option<Time>,
    keys: Vec<KeyImage>,
}

/// The engine's worker state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineImage {
    events: u64,
    leaves: Vec<LeafImage>,
    streams: Vec<StreamImage>,
}

/// Why a snapshot cannot be restored into an engine.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A leaf of the snapshot is not a live node of the engine's jobs.
    #[error("the snapshot holds node `{0}`, which no job runs")]
    UnknownLeaf(String),
    /// A stream of the snapshot has other fields than the engine's.
    #[error("stream `{0}` has other fields than in the snapshot")]
    StreamChanged(String),
    /// A key's leaf refers to no leaf of the snapshot.
    #[error("a key refers to a leaf the snapshot does not hold")]
    Malformed,
}

fn digests_to_bytes(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * 16);
    for (identity, content) in entries {
        bytes.extend_from_slice(&identity.to_le_bytes());
        bytes.extend_from_slice(&content.to_le_bytes());
    }
    bytes
}

fn digests_from_bytes(bytes: &[u8]) -> Option<Vec<(u64, u64)>> {
    if !bytes.len().is_multiple_of(16) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|c| {
                let (a, b) = c.split_at(8);
                (
                    u64::from_le_bytes(a.try_into().expect("8 bytes")),
                    u64::from_le_bytes(b.try_into().expect("8 bytes")),
                )
            })
            .collect(),
    )
}

fn tagged(v: Value) -> TaggedValue {
    match v {
        Value::Bool(b) => TaggedValue::Bool(b),
        Value::Int(i) => TaggedValue::Int(i),
        Value::Float(f) => TaggedValue::Float(f),
        Value::Str(s) => TaggedValue::Str(s),
    }
}

fn untagged(v: TaggedValue) -> Value {
    match v {
        TaggedValue::Bool(b) => Value::Bool(b),
        TaggedValue::Int(i) => Value::Int(i),
        TaggedValue::Float(f) => Value::Float(f),
        TaggedValue::Str(s) => Value::Str(s),
    }
}

impl Engine {
    /// The engine's worker state, for a snapshot.
    pub fn image(&self) -> EngineImage {
        // Slot -> index into the image's leaves.
        let mut index = vec![u32::MAX; self.slots.len()];
        let mut nodes: Vec<(&NodeId, u32)> = self.slot_of.iter().map(|(id, s)| (id, *s)).collect();
        nodes.sort();
        let leaves = nodes
            .iter()
            .enumerate()
            .map(|(i, (id, slot))| {
                index[*slot as usize] = i as u32;
                let values = self.slots[*slot as usize]
                    .as_ref()
                    .map(|l| Vec::<Value>::from(l.values.clone()))
                    .unwrap_or_default();
                LeafImage {
                    node: id.to_string(),
                    values: values.into_iter().map(tagged).collect(),
                }
            })
            .collect();
        let streams = self
            .streams
            .iter()
            .enumerate()
            .map(|(stream, s)| StreamImage {
                spec: s.spec.clone(),
                columns: s.columns.clone(),
                events: s.events,
                latest: s.latest,
                keys: s
                    .keys
                    .iter()
                    .map(|(key, k)| KeyImage {
                        key: key.clone(),
                        clock: k.clock,
                        leaves: k
                            .leaves
                            .iter()
                            .filter(|(slot, _)| index[*slot as usize] != u32::MAX)
                            .map(|(slot, d)| (index[*slot as usize], d.clone()))
                            .collect(),
                        records: k.records.clone(),
                        seen: k.seen.iter().copied().collect(),
                        ids: digests_to_bytes(&k.ids.entries()),
                        conflicted: self.conflicted.contains(&(stream as u16, key.clone())),
                    })
                    .collect(),
            })
            .collect();
        EngineImage {
            events: self.events,
            leaves,
            streams,
        }
    }

    /// Restores worker state from `image` into this engine, whose jobs must
    /// hold every leaf of the image (and which has no events yet).
    pub fn restore(&mut self, image: EngineImage) -> Result<(), RestoreError> {
        let mut slot_of_leaf = Vec::with_capacity(image.leaves.len());
        for leaf in image.leaves {
            let slot = NodeId::parse(&leaf.node)
                .and_then(|id| self.slot_of.get(&id).copied())
                .ok_or(RestoreError::UnknownLeaf(leaf.node))?;
            let values: Vec<Value> = leaf.values.into_iter().map(untagged).collect();
            if let Some(l) = self.slots[slot as usize].as_mut() {
                l.values = ValueTable::from(values);
            }
            slot_of_leaf.push(slot);
        }
        for s in image.streams {
            // Declared as recovery declares the streams of stored records.
            let id = self.open_stream(&s.spec);
            let state: &mut StreamState = &mut self.streams[id as usize];
            if state.spec != s.spec {
                return Err(RestoreError::StreamChanged(s.spec.name.to_string()));
            }
            state.columns = s.columns;
            state.events = s.events;
            state.latest = s.latest;
            state.keys.reserve(s.keys.len());
            for k in s.keys {
                if k.conflicted {
                    self.conflicted.insert((id, k.key.clone()));
                }
                let mut leaves = Vec::with_capacity(k.leaves.len());
                for (i, d) in k.leaves {
                    let slot = slot_of_leaf.get(i as usize).ok_or(RestoreError::Malformed)?;
                    leaves.push((*slot, d));
                }
                leaves.sort_by_key(|(slot, _)| *slot);
                state.keys.insert(
                    k.key,
                    KeyState {
                        clock: k.clock,
                        leaves,
                        records: k.records,
                        seen: k.seen.into_iter().collect::<FxHashSet<u64>>(),
                        ids: IdLedger::from_entries(digests_from_bytes(&k.ids).ok_or(RestoreError::Malformed)?),
                    },
                );
            }
        }
        self.events = image.events;
        self.invalidate_aggregates();
        Ok(())
    }
}
