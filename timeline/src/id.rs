//! Names: of columns as the DSL writes them, and of nodes (content hashes)
//! with the kind of worker that runs them. The bottom layer, with `value`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smol_str::SmolStr;

/// Whether `name` can stand bare in the DSL as a column name.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let start_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    start_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !matches!(name, "let" | "true" | "false")
}

/// A column name as the DSL writes it: bare, or `col("...")` when it is not a
/// plain identifier.
pub fn identifier(name: &str) -> String {
    if is_plain_identifier(name) {
        name.to_string()
    } else {
        format!("col({})", serde_json::Value::String(name.to_string()))
    }
}

pub(crate) fn write_identifier(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    f.write_str(&identifier(name))
}

/// Event processors run leaves; timeline processors run derived nodes;
/// aggregators fold a node's per-key results by group; metric workers
/// compute arithmetic over aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerKind {
    /// Runs a leaf node: events in, timeline out.
    EventProcessor,
    /// Runs a derived node from its children's timelines.
    TimelineProcessor,
    /// Holds one group's (one shard's) per-key contributions to an aggregate.
    Aggregator,
    /// Computes a derived metric from aggregates.
    Metric,
}

impl WorkerKind {
    /// Whether workers of this kind compute a timeline per key (event and
    /// timeline processors), rather than across keys.
    pub fn is_per_key(self) -> bool {
        matches!(self, WorkerKind::EventProcessor | WorkerKind::TimelineProcessor)
    }

    /// `event-processor` or `timeline-processor`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerKind::EventProcessor => "event-processor",
            WorkerKind::TimelineProcessor => "timeline-processor",
            WorkerKind::Aggregator => "aggregator",
            WorkerKind::Metric => "metric",
        }
    }
}

/// The content-derived name of a node: `<operator>-<16 hex digits of the
/// SHA-256 of its canonical form>`. Equal sub-expressions, in any job, have
/// equal ids, and so share a worker per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(SmolStr);

impl NodeId {
    pub(crate) fn derive(operator: &str, canonical: &str) -> NodeId {
        let digest = Sha256::digest(canonical.as_bytes());
        let mut id = String::with_capacity(operator.len() + 17);
        id.push_str(operator);
        id.push('-');
        for byte in &digest[..8] {
            id.push_str(&format!("{byte:02x}"));
        }
        NodeId(SmolStr::new(id))
    }

    /// Reads a node id given by a user; checks only its shape.
    pub fn parse(text: &str) -> Option<NodeId> {
        let (op, hash) = text.rsplit_once('-')?;
        let shape_ok = !op.is_empty()
            && op.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && hash.len() == 16
            && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        shape_ok.then(|| NodeId(SmolStr::new(text)))
    }

    /// The id of this node on stream `stream`: the same expression on
    /// another stream is another node (with workers of its own).
    pub fn in_stream(&self, stream: &str) -> NodeId {
        let operator = self.0.rsplit_once('-').map_or(self.0.as_str(), |(op, _)| op);
        NodeId::derive(operator, &format!("{stream}\u{0}{}", self.0))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind of worker that runs the node, read from the id's operator name.
    pub fn worker_kind(&self) -> WorkerKind {
        match self.0.rsplit_once('-').map(|(op, _)| op) {
            Some(
                "latest_event_to_state"
                | "has_existed"
                | "has_existed_within"
                | "time_since"
                | "sequence"
                | "absent_after",
            ) => WorkerKind::EventProcessor,
            Some("aggregate") => WorkerKind::Aggregator,
            Some("metric") => WorkerKind::Metric,
            _ => WorkerKind::TimelineProcessor,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
