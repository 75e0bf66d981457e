//! The API's request and response views, one owner for every runtime: the
//! local server serializes them with serde, the Golem agents return them
//! (Golem's gateway maps them with its own JSON mapping: 64-bit integers as
//! strings, a value as its case), the feeder and the tests read them.

use serde::{Deserialize, Serialize};
use timeline::{EventParser, Output, SpanView as Span, Time, Value, WorkerDescription};

/// A value of a timeline: plain JSON (`true`, `13000`, `1.5`, `"CDN1"`) to
/// serde; a case (`{"Int": ...}`) in Golem's mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub enum ScalarValue {
    /// A boolean.
    Bool(bool),
    /// An integer (durations are whole milliseconds).
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
}

impl From<&Value> for ScalarValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Bool(b) => ScalarValue::Bool(*b),
            Value::Int(i) => ScalarValue::Int(*i),
            Value::Float(x) => ScalarValue::Float(*x),
            Value::Str(s) => ScalarValue::Str(s.to_string()),
        }
    }
}

/// One span of a timeline, with its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct SpanView {
    /// First instant (ms).
    pub start: i64,
    /// End (exclusive); none is +infinity.
    pub end: Option<i64>,
    /// Value at `start`; none is Unknown.
    pub value: Option<ScalarValue>,
    /// Whether the value grows by 1 per ms.
    pub rising: bool,
    /// Whether the value falls by 1 per ms (sliding windows).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub falling: bool,
}

impl From<&Span> for SpanView {
    fn from(s: &Span) -> Self {
        SpanView {
            start: s.start,
            end: s.end,
            value: s.value.as_ref().map(ScalarValue::from),
            rising: s.rising,
            falling: s.falling,
        }
    }
}

/// A worker's value at an instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct ResultView {
    /// The node.
    pub node: String,
    /// The key.
    pub key: String,
    /// The instant asked (the key's latest event time for `end`).
    pub t: Option<i64>,
    /// The value; none is Unknown.
    pub value: Option<ScalarValue>,
    /// The key's latest event time.
    pub latest: Option<i64>,
}

impl ResultView {
    /// The result of `output` at `t` (`None` or `end`: the latest event time).
    pub fn new(node: &str, key: &str, output: &Output, t: Option<&str>) -> Result<Self, String> {
        let at = match t {
            None | Some("end") | Some("") => None,
            Some(text) => Some(parse_time(text)?),
        };
        Ok(Self::at(node, key, output, at))
    }

    /// The result of `output` at `t` (`None`: the latest event time).
    pub fn at(node: &str, key: &str, output: &Output, t: Option<Time>) -> Self {
        let at = t.or(output.latest);
        ResultView {
            node: node.to_string(),
            key: key.to_string(),
            t: at,
            value: at.and_then(|t| output.value_at(t)).as_ref().map(ScalarValue::from),
            latest: output.latest,
        }
    }
}

/// Reads milliseconds or an RFC 3339 time, within the contract's time bounds.
pub fn parse_time(text: &str) -> Result<Time, String> {
    timeline::event::parse_time_text(text)
}

/// A worker's timeline, optionally clipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct TimelineView {
    /// The node.
    pub node: String,
    /// The key.
    pub key: String,
    /// The key's earliest event time.
    pub origin: Option<i64>,
    /// The key's latest event time.
    pub latest: Option<i64>,
    /// The spans in `[from, to)`.
    pub spans: Vec<SpanView>,
}

impl TimelineView {
    /// The spans of `output` clipped to `[from, to)`.
    pub fn new(node: &str, key: &str, output: &Output, from: Option<i64>, to: Option<i64>) -> Self {
        TimelineView {
            node: node.to_string(),
            key: key.to_string(),
            origin: output.timeline.origin(),
            latest: output.latest,
            spans: output.timeline.clip(from, to).iter().map(SpanView::from).collect(),
        }
    }
}

/// What a worker computes and holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct DescriptionView {
    /// The node.
    pub node: String,
    /// `event-processor` or `timeline-processor`.
    pub kind: String,
    /// Operator name.
    pub operator: String,
    /// Canonical DSL of the node.
    pub expression: String,
    /// Children's node ids.
    pub children: Vec<String>,
    /// Events received (event processors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// The key's earliest event time.
    pub origin: Option<i64>,
    /// The key's latest event time.
    pub latest: Option<i64>,
    /// Spans in the timeline.
    pub spans: u32,
}

impl From<&WorkerDescription> for DescriptionView {
    fn from(d: &WorkerDescription) -> Self {
        DescriptionView {
            node: d.node.to_string(),
            kind: d.kind.as_str().to_string(),
            operator: d.operator.clone(),
            expression: d.expression.clone(),
            children: d.children.iter().map(|c| c.to_string()).collect(),
            events: d.events,
            origin: d.origin,
            latest: d.latest,
            spans: u32::try_from(d.spans).unwrap_or(u32::MAX),
        }
    }
}

/// A rejected event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct RejectedEvent {
    /// 0-based position in the batch.
    pub index: u32,
    /// Why.
    pub error: String,
}

/// What `add_events` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct AddEventsResult {
    /// Events applied.
    pub accepted: u32,
    /// Events refused, with reasons; the others are applied regardless.
    pub rejected: Vec<RejectedEvent>,
}

/// Parses a batch of JSON events (one JSON object per string) addressed to
/// `key`; invalid events and events of another key are reported by their
/// position in the batch, the others kept.
pub fn parse_events(parser: &EventParser, events: &[String], key: &str) -> (Vec<timeline::Event>, Vec<RejectedEvent>) {
    let mut good = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for (i, text) in events.iter().enumerate() {
        let error = match parser.parse(text) {
            Ok(event) if event.key == key => {
                good.push(event);
                continue;
            }
            Ok(event) => format!("event of key `{}` sent to the worker of key `{key}`", event.key),
            Err(e) => e.to_string(),
        };
        rejected.push(RejectedEvent { index: i as u32, error });
    }
    (good, rejected)
}

/// One node of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct NodeView {
    /// Node id: with a key, the worker's name.
    pub id: String,
    /// `event-processor`, `timeline-processor`, `aggregator` or `metric`.
    pub worker: String,
    /// Operator name.
    pub operator: String,
    /// Canonical DSL.
    pub expression: String,
    /// Input node ids.
    pub children: Vec<String>,
    /// Whether another job already ran this node.
    pub reused: bool,
    /// The node's full definition (JSON of `timeline::PlanNode`).
    pub definition: String,
}

impl From<&timeline::PlanNode> for NodeView {
    fn from(n: &timeline::PlanNode) -> Self {
        NodeView {
            id: n.id.to_string(),
            worker: n.worker.as_str().to_string(),
            operator: n.operator.name().to_string(),
            expression: n.expression.clone(),
            children: n.children.iter().map(|c| c.to_string()).collect(),
            reused: n.reused,
            definition: serde_json::to_string(n).unwrap_or_default(),
        }
    }
}

/// A job and its execution plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct JobView {
    /// Name.
    pub name: String,
    /// DSL as submitted.
    pub query: String,
    /// Whether this call created it.
    pub created: bool,
    /// The result node (read it from its timeline processor).
    pub result: String,
    /// Leaf nodes (send events to their event processors).
    pub leaves: Vec<String>,
    /// Aggregate nodes (the feeder refreshes their contributors).
    pub aggregates: Vec<String>,
    /// Named outputs: `name=node`, in order.
    pub outputs: Vec<String>,
    /// Every node, children before parents.
    pub nodes: Vec<NodeView>,
    /// The stream the job reads.
    #[serde(default)]
    pub stream: StreamView,
    /// Whether the job records the changes of its result.
    #[serde(default)]
    pub changes: bool,
}

impl JobView {
    /// The view of the job `name` running `query` as `plan`.
    pub fn new(name: &str, query: &str, plan: &timeline::ExecutionPlan, created: bool) -> Self {
        JobView {
            name: name.to_string(),
            query: query.to_string(),
            created,
            result: plan.result.to_string(),
            leaves: plan.leaves.iter().map(|l| l.to_string()).collect(),
            aggregates: plan
                .nodes
                .iter()
                .filter(|n| n.worker == timeline::WorkerKind::Aggregator)
                .map(|n| n.id.to_string())
                .collect(),
            outputs: plan.outputs.iter().map(|o| format!("{}={}", o.name, o.node)).collect(),
            nodes: plan.nodes.iter().map(NodeView::from).collect(),
            stream: StreamView::from(&plan.stream),
            changes: false,
        }
    }

    /// The same view, saying whether the job records changes.
    pub fn with_changes(mut self, changes: bool) -> Self {
        self.changes = changes;
        self
    }
}

/// A named output of a job, and where to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct OutputView {
    /// The name given in the query (`result` for a bare expression).
    pub name: String,
    /// The node that holds it.
    pub node: String,
    /// `event-processor` (a leaf), `timeline-processor`, `aggregator` or
    /// `metric`.
    pub worker: String,
    /// For aggregates: the functions shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
    /// For aggregates and metrics: the group column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

impl From<&timeline::plan::PlanOutput> for OutputView {
    fn from(o: &timeline::plan::PlanOutput) -> Self {
        OutputView {
            name: o.name.clone(),
            node: o.node.to_string(),
            worker: o.worker.as_str().to_string(),
            functions: o.functions.iter().map(|f| f.to_string()).collect(),
            group_by: o.group_by.as_ref().map(|g| g.to_string()),
        }
    }
}

/// A stream's name and the fields its events' key, time and id are read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct StreamView {
    /// Name.
    pub name: String,
    /// The key field.
    pub key: String,
    /// The time field.
    pub time: String,
    /// The id field.
    pub id: String,
}

impl Default for StreamView {
    fn default() -> Self {
        StreamView::from(&timeline::StreamSpec::default())
    }
}

impl From<&timeline::StreamSpec> for StreamView {
    fn from(s: &timeline::StreamSpec) -> Self {
        StreamView {
            name: s.name.to_string(),
            key: s.key.to_string(),
            time: s.time.to_string(),
            id: s.id.to_string(),
        }
    }
}

impl From<&StreamView> for timeline::StreamSpec {
    fn from(s: &StreamView) -> Self {
        let mut spec = timeline::StreamSpec::new(&s.name, &s.key);
        spec.time = s.time.as_str().into();
        spec.id = s.id.as_str().into();
        spec
    }
}

/// A running job in a list: what feeders route by and what a reader reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct JobSummary {
    /// Name.
    pub name: String,
    /// DSL as submitted.
    pub query: String,
    /// The node of the last output.
    pub result: String,
    /// Every named output.
    #[serde(default)]
    pub outputs: Vec<OutputView>,
    /// Leaf nodes: where events go.
    pub leaves: Vec<String>,
    /// Aggregate nodes: whose contributors hear of a key's events.
    #[serde(default)]
    pub aggregates: Vec<String>,
    /// How many nodes the plan has.
    #[serde(default)]
    pub nodes: u32,
    /// The stream the job reads (the default stream when absent).
    #[serde(default)]
    pub stream: StreamView,
    /// Whether the job records the changes of its result (on Golem, the
    /// feeder then refreshes each delivered key's change watcher).
    #[serde(default)]
    pub changes: bool,
}

impl JobSummary {
    /// The summary of job `name` running `query` as `plan`.
    pub fn new(name: &str, query: &str, plan: &timeline::ExecutionPlan) -> Self {
        JobSummary {
            name: name.to_string(),
            query: query.to_string(),
            result: plan.result.to_string(),
            outputs: plan.outputs.iter().map(OutputView::from).collect(),
            leaves: plan.leaves.iter().map(|l| l.to_string()).collect(),
            aggregates: plan
                .nodes
                .iter()
                .filter(|n| n.worker == timeline::WorkerKind::Aggregator)
                .map(|n| n.id.to_string())
                .collect(),
            nodes: u32::try_from(plan.nodes.len()).unwrap_or(u32::MAX),
            stream: StreamView::from(&plan.stream),
            changes: false,
        }
    }

    /// The same summary, saying whether the job records changes.
    pub fn with_changes(mut self, changes: bool) -> Self {
        self.changes = changes;
        self
    }
}

/// Every running job: `GET /v1/jobs` on both runtimes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct JobsView {
    /// The jobs, by name.
    pub jobs: Vec<JobSummary>,
}

/// Why a job was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct JobError {
    /// `bad_query`, `bad_name` or `conflict`.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// Line of a DSL error.
    pub line: Option<u32>,
    /// Column of a DSL error.
    pub column: Option<u32>,
    /// The DSL error drawn with a caret.
    pub diagnostic: Option<String>,
}

impl JobError {
    /// The view of a refused submission of `query`: `code`, the message, and
    /// the DSL error if that was the reason.
    pub fn new(query: &str, code: &str, message: String, dsl: Option<&timeline::dsl::DslError>) -> Self {
        JobError {
            code: code.to_string(),
            message,
            line: dsl.map(|d| d.line as u32),
            column: dsl.map(|d| d.column as u32),
            diagnostic: dsl.map(|d| d.render(query, "query")),
        }
    }
}

/// A function's value in an aggregate read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct NamedValue {
    /// The function (`sum`, `p90`, ...) or `value` for a metric.
    pub name: String,
    /// Its value; none is Unknown.
    pub value: Option<ScalarValue>,
}

/// One group of an aggregate or metric read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct GroupView {
    /// The group's value of the group column; none is `null` (no value, or no `group_by`).
    pub group: Option<ScalarValue>,
    /// Keys of the group with a known value at the instant.
    pub keys: u64,
    /// The functions' values.
    pub values: Vec<NamedValue>,
}

impl GroupView {
    /// The view of `group` with `keys` keys and `values`.
    pub fn new(group: &timeline::Group, keys: u64, values: Vec<(String, Option<Value>)>) -> Self {
        GroupView {
            group: group.0.as_ref().map(ScalarValue::from),
            keys,
            values: values
                .into_iter()
                .map(|(name, value)| NamedValue {
                    name,
                    value: value.as_ref().map(ScalarValue::from),
                })
                .collect(),
        }
    }
}

/// An aggregate or a metric at one instant, every group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct GroupsView {
    /// The node.
    pub node: String,
    /// The instant read (the latest event time of any key, for `end`).
    pub t: Option<i64>,
    /// The groups, sorted.
    pub groups: Vec<GroupView>,
}

/// What a contributor did for its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct RefreshView {
    /// The aggregate node.
    pub node: String,
    /// The key.
    pub key: String,
    /// Contributions sent (retractions included).
    pub sent: u32,
    /// The groups the key is in now.
    pub groups: Vec<Option<ScalarValue>>,
}

/// What one aggregator holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct AggregatorView {
    /// The aggregate node.
    pub node: String,
    /// The group, as its label.
    pub group: String,
    /// The shard.
    pub shard: u32,
    /// Member keys.
    pub members: u64,
    /// The latest event time of any member.
    pub latest: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_timelines_show_unknown_and_rising_values() {
        let out = Output {
            timeline: timeline::Timeline::from_spans([
                timeline::Span {
                    start: 0,
                    value: timeline::SpanValue::Unknown,
                },
                timeline::Span {
                    start: 10,
                    value: timeline::SpanValue::Rising { from: 0 },
                },
            ])
            .unwrap(),
            latest: Some(15),
        };
        let r = ResultView::new("n", "k", &out, None).unwrap();
        assert_eq!((r.t, r.value), (Some(15), Some(ScalarValue::Int(5))));
        assert_eq!(ResultView::new("n", "k", &out, Some("5")).unwrap().value, None);
        assert!(ResultView::new("n", "k", &out, Some("noon")).is_err());
        let tl = TimelineView::new("n", "k", &out, Some(12), None);
        assert_eq!(
            tl.spans,
            vec![SpanView {
                start: 12,
                end: None,
                value: Some(ScalarValue::Int(2)),
                rising: true,
                falling: false
            }]
        );
    }

    #[test]
    fn bad_events_are_reported_by_position_and_good_ones_kept() {
        let (good, bad) = parse_events(
            &EventParser::default(),
            &[
                r#"{"session_id":"other","time":1}"#.into(),
                r#"{"session_id":"k","time":1}"#.into(),
                "nope".into(),
                r#"{"time":2}"#.into(),
            ],
            "k",
        );
        assert_eq!(good.len(), 1);
        assert_eq!(bad.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 2, 3]);
        assert!(bad[0].error.contains("key `other`"), "{}", bad[0].error);
    }
}

/// One change of a job's result, as a changes stream gives it: for a
/// per-key output, a stretch of one key's timeline that a batch of events
/// changed (see [`timeline::changes`]); for an aggregate or a metric, one
/// group's value at the stream's latest event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct ChangeView {
    /// Increases by at least 1 per change of the job, never reused: resume
    /// after it.
    pub id: u64,
    /// The output of the job that changed.
    pub output: String,
    /// The key, for a per-key output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The group, for an aggregate or a metric, as in a URL: a string as
    /// is, other values as JSON, `null` for the keys without a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The aggregate function, for an aggregate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The first instant with the new value (ms).
    pub from: Time,
    /// Where the change ends (exclusive): from there the value is as it was.
    /// None: for ever.
    pub until: Option<Time>,
    /// The value at `from` before; none is Unknown.
    pub old: Option<ScalarValue>,
    /// The value at `from` now; none is Unknown.
    pub new: Option<ScalarValue>,
    /// `rising` or `falling` when the old value moved with time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_trend: Option<String>,
    /// `rising` or `falling` when the new value moves with time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_trend: Option<String>,
    /// The first and last sequence numbers of the batches of events that
    /// caused it, where the runtime logs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<u64>>,
}

impl ChangeView {
    /// A change of `key`'s output `output`.
    pub fn of_key(output: &str, key: &str, change: &timeline::changes::Change) -> Self {
        ChangeView {
            id: 0,
            output: output.to_string(),
            key: Some(key.to_string()),
            group: None,
            function: None,
            from: change.from,
            until: change.until,
            old: change.old_value().as_ref().map(ScalarValue::from),
            new: change.new_value().as_ref().map(ScalarValue::from),
            old_trend: timeline::changes::trend(&change.old).map(str::to_string),
            new_trend: timeline::changes::trend(&change.new).map(str::to_string),
            records: None,
        }
    }

    /// The change as a record of named columns, for a condition
    /// ([`timeline::dsl::parse_condition`]) to test: `value` (and `new`),
    /// `old`, `key`, `group`, `function`, `output`, `from`, `until`, `id`;
    /// Unknown values are absent.
    pub fn columns(&self) -> timeline::Event {
        let mut columns: Vec<(smol_str::SmolStr, Value)> = Vec::with_capacity(10);
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(v) = value {
                columns.push((name.into(), v));
            }
        };
        let scalar = |v: &Option<ScalarValue>| v.as_ref().map(ScalarValue::to_value);
        put("value", scalar(&self.new));
        put("new", scalar(&self.new));
        put("old", scalar(&self.old));
        put("key", self.key.as_deref().map(Value::str));
        put("group", self.group.as_deref().map(Value::str));
        put("function", self.function.as_deref().map(Value::str));
        put("output", Some(Value::str(&self.output)));
        put("from", Some(Value::Int(self.from)));
        put("until", self.until.map(Value::Int));
        put("id", i64::try_from(self.id).ok().map(Value::Int));
        timeline::Event {
            key: self.key.as_deref().unwrap_or_default().into(),
            time: self.from,
            id: None,
            columns,
        }
    }
}

/// One group's value of one function of an aggregate or metric output: the
/// group as in a URL ([`timeline::Group::label`]), the function (none for a
/// metric's value), the value (none: Unknown).
pub type GroupValue = (String, Option<String>, Option<ScalarValue>);

/// The rows of an aggregate or metric read, as [`GroupValue`]s (`metric`:
/// its one value, not named).
pub fn group_values(read: &GroupsView, metric: bool) -> Vec<GroupValue> {
    read.groups
        .iter()
        .flat_map(|g| {
            let label = timeline::Group(g.group.as_ref().map(ScalarValue::to_value)).label();
            g.values
                .iter()
                .map(move |v| (label.clone(), (!metric).then(|| v.name.clone()), v.value.clone()))
        })
        .collect()
}

/// The changes of aggregate or metric output `output` from one read to the
/// next: a change per group and function whose value differs, from `at`,
/// the instant of the new read (a group gone is not a change).
pub fn group_changes(output: &str, old: &[GroupValue], new: &[GroupValue], at: Option<Time>) -> Vec<ChangeView> {
    let before: std::collections::BTreeMap<(&str, Option<&str>), &Option<ScalarValue>> =
        old.iter().map(|(g, f, v)| ((g.as_str(), f.as_deref()), v)).collect();
    new.iter()
        .filter_map(|(group, function, value)| {
            let was = before
                .get(&(group.as_str(), function.as_deref()))
                .copied()
                .cloned()
                .flatten();
            (was != *value).then(|| ChangeView {
                id: 0,
                output: output.to_string(),
                key: None,
                group: Some(group.clone()),
                function: function.clone(),
                from: at.unwrap_or_default(),
                until: None,
                old: was,
                new: value.clone(),
                old_trend: None,
                new_trend: None,
                records: None,
            })
        })
        .collect()
}

impl ScalarValue {
    /// The value as the timeline library holds it.
    pub fn to_value(&self) -> Value {
        match self {
            ScalarValue::Bool(b) => Value::Bool(*b),
            ScalarValue::Int(i) => Value::Int(*i),
            ScalarValue::Float(x) => Value::Float(*x),
            ScalarValue::Str(s) => Value::str(s),
        }
    }
}

/// What a key's change watcher did on a refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct WatchView {
    /// The job.
    pub job: String,
    /// The key.
    pub key: String,
    /// Changes found and recorded.
    pub changes: u32,
    /// The job's last change id after them (0: none yet).
    pub last: u64,
}

/// A page of a job's changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_family = "wasm", derive(golem_rust::Schema))]
pub struct ChangesView {
    /// The job.
    pub job: String,
    /// The changes after the id asked for, in order (those a condition
    /// left out are skipped).
    pub changes: Vec<ChangeView>,
    /// The id to ask after next: the last change looked at.
    pub next: u64,
    /// The id of the newest change of the job (0: none yet).
    pub last: u64,
}

#[cfg(test)]
mod change_tests {
    use super::*;
    use timeline::SpanValue;
    use timeline::changes::Change;

    #[test]
    fn a_change_reads_as_columns_for_a_condition() {
        let change = Change {
            from: 100,
            until: None,
            old: SpanValue::Known(Value::Bool(false)),
            new: SpanValue::Known(Value::Bool(true)),
        };
        let view = ChangeView::of_key("alert", "card-1", &change);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 0, "output": "alert", "key": "card-1", "from": 100, "until": null, "old": false, "new": true})
        );
        let when = timeline::dsl::parse_condition("value == true && old == false && key == \"card-1\"").unwrap();
        assert!(when.matches(&view.columns()));
        let not = timeline::dsl::parse_condition("value == false || output != \"alert\"").unwrap();
        assert!(!not.matches(&view.columns()));
        let back: ChangeView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
    }

    #[test]
    fn an_aggregate_changes_per_group_and_function_whose_value_changed() {
        let row = |g: &str, f: &str, v: Option<i64>| (g.to_string(), Some(f.to_string()), v.map(ScalarValue::Int));
        let old = vec![row("CDN1", "count", Some(1)), row("CDN1", "sum", Some(5))];
        let new = vec![
            row("CDN1", "count", Some(2)),
            row("CDN1", "sum", Some(5)),
            row("CDN2", "count", Some(1)),
        ];
        let changes = group_changes("plays", &old, &new, Some(70));
        #[allow(clippy::type_complexity)]
        let seen: Vec<(
            Option<&str>,
            Option<&str>,
            Option<ScalarValue>,
            Option<ScalarValue>,
            i64,
        )> = changes
            .iter()
            .map(|c| {
                (
                    c.group.as_deref(),
                    c.function.as_deref(),
                    c.old.clone(),
                    c.new.clone(),
                    c.from,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    Some("CDN1"),
                    Some("count"),
                    Some(ScalarValue::Int(1)),
                    Some(ScalarValue::Int(2)),
                    70
                ),
                (Some("CDN2"), Some("count"), None, Some(ScalarValue::Int(1)), 70),
            ]
        );
        assert!(group_changes("plays", &new, &new, Some(80)).is_empty());
    }

    #[test]
    fn a_page_keeps_what_the_condition_keeps_and_moves_past_what_it_looked_at() {
        let change = |id: u64, new: bool| ChangeView {
            id,
            new: Some(ScalarValue::Bool(new)),
            ..ChangeView::of_key(
                "alert",
                "k",
                &Change {
                    from: 0,
                    until: None,
                    old: SpanValue::Unknown,
                    new: SpanValue::Unknown,
                },
            )
        };
        let when = timeline::dsl::parse_condition("value == true").unwrap();
        let mut page = ChangesView::empty("j", 3, 9);
        let full = page.fill((4..=9).map(|id| change(id, id % 2 == 0)), 2, Some(&when));
        assert!(full);
        assert_eq!(page.changes.iter().map(|c| c.id).collect::<Vec<_>>(), [4, 6]);
        assert_eq!(page.next, 6, "7 was not looked at");
        let mut all = ChangesView::empty("j", 0, 9);
        assert!(!all.fill((1..=3).map(|id| change(id, false)), 10, None));
        assert_eq!((all.changes.len(), all.next), (3, 3));
    }
}

impl ChangesView {
    /// An empty page of `job`'s changes after `after`; `last` is the job's
    /// newest change id.
    pub fn empty(job: &str, after: u64, last: u64) -> Self {
        ChangesView {
            job: job.to_string(),
            changes: Vec::new(),
            next: after,
            last,
        }
    }

    /// Takes changes of `batch` (ids ascending, after `next`) into the page
    /// while it has fewer than `limit`: those `condition` keeps are added,
    /// and `next` moves past each one looked at. True when the page is full.
    pub fn fill(
        &mut self,
        batch: impl IntoIterator<Item = ChangeView>,
        limit: usize,
        condition: Option<&timeline::Predicate>,
    ) -> bool {
        for change in batch {
            if self.changes.len() >= limit {
                return true;
            }
            self.next = change.id;
            if condition.is_none_or(|c| c.matches(&change.columns())) {
                self.changes.push(change);
            }
        }
        self.changes.len() >= limit
    }
}
