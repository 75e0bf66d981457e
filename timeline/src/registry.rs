//! The job registry: jobs (a name and DSL text), their plans, and the nodes
//! they share. It checks and plans a job, names every worker by its node's
//! content hash, marks the nodes another job already runs (computation
//! reuse), and keeps the set of live nodes that feeders and runtimes read.
//! The local runtime keeps one in memory; on Golem the `Core` agent holds it.
//! The top layer: it parses DSL.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::dsl::DslError;
use crate::id::NodeId;
use crate::plan::{ExecutionPlan, PlanNode};
use crate::stream::{Columns, DEFAULT_STREAM, StreamConflict, StreamRef, StreamSpec};

/// A running job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's name, unique in the registry.
    pub name: String,
    /// The DSL text as submitted.
    pub query: String,
    /// Its execution plan; `reused` marks nodes that ran before this job.
    pub plan: ExecutionPlan,
}

/// Why a job was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// The DSL did not parse or type-check.
    #[error("invalid query: {0}")]
    Query(DslError),
    /// The name is not usable.
    #[error("invalid job name `{0}`: use 1 to 64 letters, digits, `-`, `_` or `.`")]
    Name(String),
    /// Another job already has the name.
    #[error("a different job named `{0}` exists; delete it first or choose another name")]
    Conflict(String),
    /// The query names a field of a known stream otherwise than the stream does.
    #[error("{0}")]
    Stream(#[from] StreamConflict),
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// A new job; its plan marks reused nodes.
    Created(Job),
    /// The same job (name and query) was already running: nothing changed.
    Existing(Job),
}

impl Submitted {
    /// The job, new or existing.
    pub fn job(&self) -> &Job {
        match self {
            Submitted::Created(job) | Submitted::Existing(job) => job,
        }
    }
}

/// The jobs and the nodes they run, with how many jobs use each node, and
/// the streams they read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobRegistry {
    jobs: BTreeMap<String, Job>,
    nodes: HashMap<NodeId, (PlanNode, usize)>,
    /// Every stream a job has named (the default one always), by name.
    #[serde(default)]
    streams: BTreeMap<SmolStr, StreamSpec>,
}

/// Whether `name` is a valid job name.
pub fn valid_job_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl JobRegistry {
    /// An empty registry whose default stream is keyed by `session_id`.
    pub fn new() -> Self {
        Self::with_default_stream(StreamSpec::default())
    }

    /// An empty registry whose default stream (of queries without a
    /// `from` header) is `default`.
    pub fn with_default_stream(default: StreamSpec) -> Self {
        let mut registry = JobRegistry::default();
        registry.streams.insert(default.name.clone(), default);
        registry
    }

    /// The default stream.
    pub fn default_stream(&self) -> StreamSpec {
        self.streams.get(DEFAULT_STREAM).cloned().unwrap_or_default()
    }

    /// Every stream, by name.
    pub fn streams(&self) -> impl Iterator<Item = &StreamSpec> {
        self.streams.values()
    }

    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamSpec> {
        self.streams.get(name)
    }

    /// Declares a stream (as a job's header would); fields that differ from
    /// a known stream of that name are refused.
    pub fn declare_stream(&mut self, wanted: &StreamRef) -> Result<StreamSpec, StreamConflict> {
        let default_key = self.default_stream().key;
        let spec = wanted.resolve(self.streams.get(wanted.name()), &default_key)?;
        self.streams.insert(spec.name.clone(), spec.clone());
        Ok(spec)
    }

    /// The warnings of job `name` against the columns its stream's events
    /// carried so far (see [`crate::dsl::warnings`]).
    pub fn warnings(&self, name: &str, columns: &Columns) -> Vec<DslError> {
        let Some(job) = self.jobs.get(name) else {
            return Vec::new();
        };
        match crate::dsl::parse_query(&job.query) {
            Ok(query) => crate::dsl::warnings(&job.query, &query, &job.plan.stream, columns),
            Err(_) => Vec::new(),
        }
    }

    /// Checks and plans a job. Without a name, the job is named after its
    /// result node. Submitting the same name and query again is a no-op.
    pub fn submit(&mut self, name: Option<&str>, query: &str) -> Result<Submitted, SubmitError> {
        let parsed = crate::dsl::parse_query(query).map_err(SubmitError::Query)?;
        let default_key = self.default_stream().key;
        let stream = parsed
            .stream
            .resolve(self.streams.get(parsed.stream.name()), &default_key)?;
        let mut plan = ExecutionPlan::from_outputs(&parsed.outputs)
            .expect("the DSL type-checks what it parses")
            .in_stream(stream.clone());
        let name = name.map(str::to_string).unwrap_or_else(|| plan.result.to_string());
        if !valid_job_name(&name) {
            return Err(SubmitError::Name(name));
        }
        if let Some(existing) = self.jobs.get(&name) {
            return if existing.plan.query == plan.query && existing.plan.outputs == plan.outputs {
                Ok(Submitted::Existing(existing.clone()))
            } else {
                Err(SubmitError::Conflict(name))
            };
        }
        for node in &mut plan.nodes {
            node.reused = self.nodes.contains_key(&node.id);
        }
        for node in &plan.nodes {
            self.nodes.entry(node.id.clone()).or_insert_with(|| (node.clone(), 0)).1 += 1;
        }
        self.streams.insert(stream.name.clone(), stream);
        let job = Job {
            name: name.clone(),
            query: query.to_string(),
            plan,
        };
        self.jobs.insert(name, job.clone());
        Ok(Submitted::Created(job))
    }

    /// Removes a job; returns it and the nodes no other job uses any more.
    pub fn remove(&mut self, name: &str) -> Option<(Job, Vec<NodeId>)> {
        let job = self.jobs.remove(name)?;
        let mut freed = Vec::new();
        for node in &job.plan.nodes {
            if let Some(entry) = self.nodes.get_mut(&node.id) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.nodes.remove(&node.id);
                    freed.push(node.id.clone());
                }
            }
        }
        Some((job, freed))
    }

    /// The job named `name`.
    pub fn get(&self, name: &str) -> Option<&Job> {
        self.jobs.get(name)
    }

    /// Every job, by name.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// The live node with id `id`.
    pub fn node(&self, id: &NodeId) -> Option<&PlanNode> {
        self.nodes.get(id).map(|(node, _)| node)
    }

    /// Every live node (of any job), each once, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &PlanNode> {
        self.nodes.values().map(|(node, _)| node)
    }

    /// How many jobs use node `id`.
    pub fn users(&self, id: &NodeId) -> usize {
        self.nodes.get(id).map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIRR: &str = r#"duration_where(has_existed(playerStateChange == "play") && !has_existed_within(userAction == "seek", 5s) && latest_event_to_state(playerStateChange) == "buffer" && latest_event_to_state(cdnChange) == "CDN1")"#;

    #[test]
    fn shared_nodes_are_reused_and_refcounted() {
        let mut r = JobRegistry::new();
        let cirr = r.submit(Some("cirr"), CIRR).unwrap();
        let Submitted::Created(cirr) = cirr else {
            panic!("new job")
        };
        assert!(cirr.plan.nodes.iter().all(|n| !n.reused));
        let total = r.nodes().count();

        let buffering = r
            .submit(
                Some("buffering"),
                r#"duration_where(latest_event_to_state(playerStateChange) == "buffer")"#,
            )
            .unwrap();
        let reused: Vec<_> = buffering
            .job()
            .plan
            .nodes
            .iter()
            .filter(|n| n.reused)
            .map(|n| n.expression.clone())
            .collect();
        assert_eq!(
            reused,
            [
                "latest_event_to_state(playerStateChange)",
                r#"(latest_event_to_state(playerStateChange) == "buffer")"#
            ]
        );
        assert_eq!(r.nodes().count(), total + 1, "only duration_where is new");

        let (_, freed) = r.remove("cirr").unwrap();
        assert_eq!(freed.len(), total - 2, "the shared nodes stay for the other job");
        let (_, freed) = r.remove("buffering").unwrap();
        assert_eq!(freed.len(), 3);
        assert_eq!(r.nodes().count(), 0);
    }

    #[test]
    fn submission_is_idempotent_and_names_are_checked() {
        let mut r = JobRegistry::new();
        assert!(matches!(r.submit(Some("j"), CIRR).unwrap(), Submitted::Created(_)));
        assert!(matches!(r.submit(Some("j"), CIRR).unwrap(), Submitted::Existing(_)));
        assert_eq!(
            r.users(&r.get("j").unwrap().plan.result),
            1,
            "a repeat does not count twice"
        );
        assert!(matches!(
            r.submit(Some("j"), "has_existed(a == 1)"),
            Err(SubmitError::Conflict(_))
        ));
        assert!(matches!(r.submit(Some("bad name"), CIRR), Err(SubmitError::Name(_))));
        let e = r.submit(None, "has_existed(a = 1)").unwrap_err();
        assert!(matches!(&e, SubmitError::Query(d) if d.column == 15), "{e}");
        let unnamed = r.submit(None, "has_existed(a == 1)").unwrap();
        assert!(unnamed.job().name.starts_with("has_existed-"));
    }

    #[test]
    fn workers_are_shared_within_a_stream_and_never_across_streams() {
        let mut r = JobRegistry::new();
        let query = "has_existed(kind == \"swipe\")";
        let plain = r.submit(Some("plain"), query).unwrap().job().clone();
        let cards = r
            .submit(Some("cards"), &format!("from cards key card;\n{query}"))
            .unwrap()
            .job()
            .clone();
        assert_ne!(plain.plan.result, cards.plan.result, "another stream, another worker");
        assert!(!cards.plan.nodes[0].reused);
        assert_eq!(cards.plan.query, format!("from cards key card;\n{query}"));
        assert_eq!(
            cards.plan.nodes[0].stream.as_ref().map(|s| s.key.as_str()),
            Some("card"),
            "a leaf knows its stream's fields"
        );
        assert_eq!(plain.plan.nodes[0].stream, None);

        // The stream's fields come from its first job; a later one may omit them.
        let again = r.submit(Some("again"), &format!("from cards; {query}")).unwrap();
        assert_eq!(again.job().plan.result, cards.plan.result);
        assert!(again.job().plan.nodes.iter().all(|n| n.reused));
        let e = r
            .submit(Some("other"), &format!("from cards key id2; {query}"))
            .unwrap_err();
        assert!(matches!(e, SubmitError::Stream(_)), "{e}");
        assert!(e.to_string().contains("`card`"), "{e}");
        assert_eq!(r.stream("cards").map(|s| s.key.as_str()), Some("card"));
        assert_eq!(r.default_stream().key, crate::event::DEFAULT_KEY_FIELD);
    }

    #[test]
    fn descriptions_name_inputs_by_the_ids_of_the_plan_on_any_stream() {
        let mut r = JobRegistry::new();
        let big = r#"has_existed_within(suburb == "Newtown" && kind == "swipe", 10m) && has_existed_within(suburb == "Parramatta" && kind == "swipe", 10m)"#;
        for (name, query) in [
            ("default", big.to_string()),
            ("cards", format!("from cards key card;\n{big}")),
        ] {
            let job = r.submit(Some(name), &query).unwrap();
            let plan = &job.job().plan;
            let and = plan.node(&plan.result).unwrap();
            let named: Vec<&str> = and
                .expression
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .filter(|w| NodeId::parse(w).is_some())
                .collect();
            assert_eq!(named.len(), 2, "{name}: {}", and.expression);
            for id in named {
                assert!(
                    and.children.iter().any(|c| c.as_str() == id),
                    "{name}: {id} is not an input of {}",
                    and.expression
                );
            }
        }
    }
}
