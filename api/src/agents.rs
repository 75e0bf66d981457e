//! The definitions of every agent type: their identities, methods and HTTP
//! endpoints. Each component implements its own types; every component that
//! calls a type calls it through the client these definitions generate
//! (`EventProcessorClient`, `CoreClient`, ...), so a caller and its callee
//! cannot disagree on a signature.
//!
//! Reads that only look at an agent's state are `#[read_only]`: Golem answers
//! them outside the agent's queue, keeps them out of its oplog and caches
//! them until the agent next changes.

use golem_rust::{agent_definition, endpoint, read_only};

use crate::views::{
    AddEventsResult, AggregatorView, ChangesView, DescriptionView, GroupsView, JobError, JobView, JobsView,
    RefreshView, ResultView, TimelineView, WatchView,
};

/// A leaf worker: one leaf node of one key, events in, state timeline out.
#[agent_definition(mount = "/v1/event-processor/{node}/{key}", snapshotting = "periodic(30s)")]
pub trait EventProcessor {
    /// The worker of node `node` for key `key`.
    fn new(node: String, key: String) -> Self;

    /// Applies a batch of events (JSON objects as strings) of this key; the
    /// key field may be omitted.
    #[endpoint(post = "/events")]
    async fn add_events(&mut self, events: Vec<String>) -> Result<AddEventsResult, String>;

    /// The value at `t` (`end` or none: the key's latest event time;
    /// milliseconds; RFC 3339).
    #[read_only]
    #[endpoint(get = "/result?t={t}")]
    fn get_timeline_result(&self, t: Option<String>) -> Result<ResultView, String>;

    /// The timeline, clipped to `[from, to)` when given.
    #[read_only]
    #[endpoint(get = "/timeline?from={from}&to={to}")]
    fn timeline(&self, from: Option<String>, to: Option<String>) -> Result<TimelineView, String>;

    /// What the worker computes and holds; none before its first event.
    #[read_only]
    #[endpoint(get = "/")]
    fn describe(&self) -> Option<DescriptionView>;

    /// JSON of the worker's `timeline::Output`, for the readers of derived
    /// nodes and aggregates.
    #[read_only]
    fn output(&self) -> String;
}

/// A derived worker: one derived node of one key. It keeps nothing: each call
/// reads the leaves below its node (all at once) and evaluates the node.
#[agent_definition(ephemeral, mount = "/v1/timeline-processor/{node}/{key}")]
pub trait TimelineProcessor {
    /// The worker of node `node` for key `key`.
    fn new(node: String, key: String) -> Self;

    /// The value at `t` (`end` or none: the key's latest event time;
    /// milliseconds; RFC 3339).
    #[endpoint(get = "/result?t={t}")]
    async fn get_timeline_result(&mut self, t: Option<String>) -> Result<ResultView, String>;

    /// The timeline, clipped to `[from, to)` when given.
    #[endpoint(get = "/timeline?from={from}&to={to}")]
    async fn timeline(&mut self, from: Option<String>, to: Option<String>) -> Result<TimelineView, String>;

    /// What the worker computes.
    #[endpoint(get = "/")]
    async fn describe(&mut self) -> Result<DescriptionView, String>;

    /// JSON of the node's `timeline::Output`.
    async fn output(&mut self) -> Result<String, String>;
}

/// The orchestrator: the job registry, one for the deployment.
#[agent_definition(mount = "/v1/jobs", snapshotting = "every(20)")]
pub trait Core {
    /// The singleton.
    fn new() -> Self;

    /// Submits a job: DSL in, execution plan out. Idempotent per name and query.
    #[endpoint(post = "/")]
    fn submit(&mut self, name: Option<String>, query: String, changes: Option<bool>) -> Result<JobView, JobError>;

    /// Every job.
    #[read_only]
    #[endpoint(get = "/")]
    fn jobs(&self) -> JobsView;

    /// One job.
    #[read_only]
    #[endpoint(get = "/{name}")]
    fn job(&self, name: String) -> Option<JobView>;

    /// Deletes a job; true if it existed.
    #[endpoint(delete = "/{name}")]
    fn delete(&mut self, name: String) -> bool;

    /// The definition of a live node (JSON of `timeline::PlanNode`).
    #[read_only]
    fn node(&self, id: String) -> Option<String>;

    /// How to evaluate live per-key nodes from their leaves (JSON of
    /// `timeline::Evaluation`).
    #[read_only]
    fn evaluation(&self, nodes: Vec<String>) -> Result<String, String>;
}

/// Where a job starts: its DSL in, its plan out.
#[agent_definition(mount = "/v1/driver/{job}")]
pub trait Driver {
    /// The driver of job `job`.
    fn new(job: String) -> Self;

    /// Starts the job (or returns it if it already runs) and returns its plan.
    #[endpoint(post = "/")]
    async fn run(&mut self, query: String, changes: Option<bool>) -> Result<JobView, JobError>;
}

/// Pushes one key's contributions to an aggregate.
#[agent_definition(mount = "/v1/aggregate-feed/{node}/{key}", snapshotting = "periodic(30s)")]
pub trait Contributor {
    /// The contributor of key `key` to aggregate node `node`.
    fn new(node: String, key: String) -> Self;

    /// Reads the key's source and group column and sends what changed.
    #[endpoint(post = "/refresh")]
    async fn refresh(&mut self) -> Result<RefreshView, String>;
}

/// One group's (one shard's) members of an aggregate node.
#[agent_definition(mount = "/v1/aggregator/{node}/{group}/{shard}", snapshotting = "periodic(30s)")]
pub trait Aggregator {
    /// The aggregator of `group` (its label), shard `shard`, of node `node`.
    fn new(node: String, group: String, shard: u32) -> Self;

    /// Sets a key's contribution (JSON of a timeline) or, with none, retracts it.
    fn replace(&mut self, key: String, contribution: Option<String>, latest: Option<i64>) -> Result<bool, String>;

    /// The latest event time of any member key.
    #[read_only]
    fn latest(&self) -> Option<i64>;

    /// JSON of the members' `timeline::Partial` at `t`.
    #[read_only]
    fn partial(&self, t: i64, functions: Vec<String>) -> Result<String, String>;

    /// What the aggregator holds.
    #[read_only]
    #[endpoint(get = "/")]
    fn describe(&self) -> AggregatorView;
}

/// An aggregate node: its groups, and reads across them.
#[agent_definition(mount = "/v1/aggregators/{node}", snapshotting = "every(20)")]
pub trait Aggregate {
    /// The aggregate node `node`.
    fn new(node: String) -> Self;

    /// Adds a group (JSON of `timeline::Group`); false if known.
    async fn register(&mut self, group: String) -> Result<bool, String>;

    /// The latest event time of any key of any group.
    async fn latest(&mut self) -> Result<Option<i64>, String>;

    /// JSON of the `timeline::metric::InputFold` at `t`, for metrics.
    async fn fold(&mut self, t: i64, functions: Vec<String>) -> Result<String, String>;

    /// Every group (or the one labelled `group`) at `t` (`end` or none: the
    /// latest event time; ms; RFC 3339): `functions`, comma-separated (none:
    /// count, sum, avg, min, max).
    #[endpoint(get = "/?t={t}&fn={functions}&group={group}")]
    async fn read(
        &mut self,
        t: Option<String>,
        functions: Option<String>,
        group: Option<String>,
    ) -> Result<GroupsView, String>;
}

/// A metric: arithmetic over aggregates, computed when read. It keeps
/// nothing, so every call gets a fresh agent.
#[agent_definition(ephemeral, mount = "/v1/metrics/{node}")]
pub trait Metric {
    /// The metric node `node`.
    fn new(node: String) -> Self;

    /// Every group (or the one labelled `group`) at `t` (`end` or none: the
    /// latest event time; ms; RFC 3339).
    #[endpoint(get = "/?t={t}&group={group}")]
    async fn read(&mut self, t: Option<String>, group: Option<String>) -> Result<GroupsView, String>;
}

/// Watches one key's result of a job that records changes: on `refresh`
/// (the feeder's, after delivering the key's events) it reads the job's
/// per-key outputs for the key, compares them with what it saw last
/// ([`timeline::changes::diff`]) and hands the differences to the job's
/// [`Changes`].
#[agent_definition(mount = "/v1/changes-feed/{job}/{key}", snapshotting = "periodic(30s)")]
pub trait KeyWatch {
    fn new(job: String, key: String) -> Self;

    #[endpoint(post = "/refresh")]
    async fn refresh(&mut self) -> Result<WatchView, String>;
}

/// Watches a job's aggregate and metric outputs: on `refresh` (the
/// feeder's, after the contributors of a delivery took it in) reads each
/// output's groups at the latest event time, compares them with what it saw
/// last and hands the differences to the job's [`Changes`].
#[agent_definition(mount = "/v1/changes-feed/{job}", snapshotting = "periodic(30s)")]
pub trait JobWatch {
    fn new(job: String) -> Self;

    #[endpoint(post = "/refresh")]
    async fn refresh(&mut self) -> Result<WatchView, String>;
}

/// A job's changes: ids in order of arrival, read as pages.
#[agent_definition(mount = "/v1/jobs/{job}/changes", snapshotting = "every(50)")]
pub trait Changes {
    fn new(job: String) -> Self;

    /// Adds changes (JSON of `Vec<ChangeView>`, ids unset); the last id.
    fn record(&mut self, changes: String) -> Result<u64, String>;

    #[read_only]
    #[endpoint(get = "/?after={after}&limit={limit}&where={condition}")]
    fn read(&self, after: Option<u64>, limit: Option<u32>, condition: Option<String>) -> Result<ChangesView, String>;
}
