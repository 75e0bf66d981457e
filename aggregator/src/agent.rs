//! The aggregator component's agents: thin shells over the crate's logic.

use golem_rust::{agent_definition, agent_implementation, endpoint};
use serde::{Deserialize, Serialize};
use timeline::metric::InputFold;
use timeline::{AggFn, Group, NodeId, Operator, Output, Partial, PlanNode, Time, Timeline, WorkerKind};
use timeline_golem_api::clients::{EventProcessorApiClient, TimelineProcessorApiClient, node_definition};
use timeline_golem_api::views::{AggregatorView, GroupView, GroupsView, RefreshView, ScalarValue, parse_time};

use crate::{AggregateDefinition, GroupAggregator, GroupDirectory, merge_shards, parse_functions};

fn json<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

fn functions_of(names: &[String]) -> Result<Vec<AggFn>, String> {
    names.iter().map(|f| f.parse::<AggFn>()).collect()
}

/// `end` (or nothing) is the latest event time; else milliseconds or RFC 3339.
fn instant(text: &str) -> Result<Option<Time>, String> {
    match text {
        "" | "end" => Ok(None),
        other => parse_time(other).map(Some),
    }
}

/// A key's output of a per-key node, read from the worker that runs it.
async fn read_output(key: &str, node: &NodeId) -> Result<Output, String> {
    let text = match node.worker_kind() {
        WorkerKind::EventProcessor => EventProcessorApiClient::get(key.to_string(), node.to_string())
            .map_err(|e| e.to_string())?
            .output()
            .await
            .map_err(|e| e.to_string())??,
        WorkerKind::TimelineProcessor => TimelineProcessorApiClient::get(key.to_string(), node.to_string())
            .map_err(|e| e.to_string())?
            .output()
            .await
            .map_err(|e| e.to_string())??,
        other => return Err(format!("{node} is run by {} workers, not per key", other.as_str())),
    };
    serde_json::from_str(&text).map_err(|e| format!("bad output of {node}: {e}"))
}

/// Pushes one key's contributions to an aggregate node's aggregators.
#[agent_definition(mount = "/v1/aggregate-feed/{node}/{key}", snapshotting = "periodic(30s)")]
pub trait Contributor {
    fn new(node: String, key: String) -> Self;

    /// Reads the key's source and group column and sends what changed.
    #[endpoint(post = "/refresh")]
    async fn refresh(&mut self) -> Result<RefreshView, String>;
}

#[derive(Serialize, Deserialize)]
struct ContributorImpl {
    node: String,
    key: String,
    definition: Option<AggregateDefinition>,
    state: crate::Contributor,
}

#[agent_implementation]
impl Contributor for ContributorImpl {
    fn new(node: String, key: String) -> Self {
        ContributorImpl {
            node,
            key,
            definition: None,
            state: crate::Contributor::new(),
        }
    }

    async fn refresh(&mut self) -> Result<RefreshView, String> {
        if self.definition.is_none() {
            self.definition = Some(AggregateDefinition::from_definition(
                &node_definition(&self.node).await?,
            )?);
        }
        let definition = self.definition.clone().ok_or("no definition")?;
        let source = read_output(&self.key, &definition.source).await?;
        let group = match &definition.group {
            Some(g) => Some(read_output(&self.key, g).await?.timeline),
            None => None,
        };
        let before = self.state.groups();
        let pushes = self
            .state
            .pushes(&definition.spec, &self.key, &source.timeline, group.as_ref());
        for push in &pushes {
            if push.contribution.is_some() && !before.contains(&push.group) {
                AggregateClient::get(self.node.clone())
                    .register(json(&push.group)?)
                    .await?;
            }
            let contribution = push.contribution.as_ref().map(json).transpose()?;
            AggregatorClient::get(self.node.clone(), push.group.label(), push.shard)
                .replace(self.key.clone(), contribution, source.latest)
                .await?;
        }
        Ok(RefreshView {
            node: self.node.clone(),
            key: self.key.clone(),
            sent: pushes.len() as u32,
            groups: self
                .state
                .groups()
                .iter()
                .map(|g| g.0.as_ref().map(ScalarValue::from))
                .collect(),
        })
    }
}

/// One group's (one shard's) members of an aggregate node.
#[agent_definition(mount = "/v1/aggregator/{node}/{group}/{shard}", snapshotting = "periodic(30s)")]
pub trait Aggregator {
    fn new(node: String, group: String, shard: u32) -> Self;

    /// Sets a key's contribution (JSON of a timeline) or, with none, retracts it.
    async fn replace(&mut self, key: String, contribution: Option<String>, latest: Option<i64>)
    -> Result<bool, String>;

    /// The latest event time of any member key.
    async fn latest(&mut self) -> Option<i64>;

    /// JSON of the members' `timeline::Partial` at `t`.
    async fn partial(&mut self, t: i64, functions: Vec<String>) -> Result<String, String>;

    /// What the aggregator holds.
    #[endpoint(get = "/")]
    async fn describe(&mut self) -> AggregatorView;
}

#[derive(Serialize, Deserialize)]
struct AggregatorImpl {
    node: String,
    group: String,
    shard: u32,
    state: GroupAggregator,
}

#[agent_implementation]
impl Aggregator for AggregatorImpl {
    fn new(node: String, group: String, shard: u32) -> Self {
        AggregatorImpl {
            node,
            group,
            shard,
            state: GroupAggregator::new(),
        }
    }

    async fn replace(
        &mut self,
        key: String,
        contribution: Option<String>,
        latest: Option<i64>,
    ) -> Result<bool, String> {
        let contribution: Option<Timeline> = contribution
            .map(|c| serde_json::from_str(&c).map_err(|e| format!("bad contribution of {key}: {e}")))
            .transpose()?;
        Ok(self.state.replace(&key, contribution, latest))
    }

    async fn latest(&mut self) -> Option<i64> {
        self.state.latest()
    }

    async fn partial(&mut self, t: i64, functions: Vec<String>) -> Result<String, String> {
        json(&self.state.partial(t, &functions_of(&functions)?))
    }

    async fn describe(&mut self) -> AggregatorView {
        AggregatorView {
            node: self.node.clone(),
            group: self.group.clone(),
            shard: self.shard,
            members: self.state.members() as u64,
            latest: self.state.latest(),
        }
    }
}

/// An aggregate node: its groups, and reads across them.
#[agent_definition(mount = "/v1/aggregators/{node}", snapshotting = "every(20)")]
pub trait Aggregate {
    fn new(node: String) -> Self;

    /// Adds a group (JSON of `timeline::Group`); false if known.
    async fn register(&mut self, group: String) -> Result<bool, String>;

    /// The latest event time of any key of any group.
    async fn latest(&mut self) -> Result<Option<i64>, String>;

    /// JSON of the `timeline::metric::InputFold` at `t`, for metrics.
    async fn fold(&mut self, t: i64, functions: Vec<String>) -> Result<String, String>;

    /// Every group (or the one labelled `group`) at `t` (`end`, ms or RFC
    /// 3339): `functions`, comma-separated (empty: count, sum, avg, min, max).
    #[endpoint(get = "/?t={t}&fn={functions}&group={group}")]
    async fn read(&mut self, t: String, functions: String, group: String) -> Result<GroupsView, String>;
}

#[derive(Serialize, Deserialize)]
struct AggregateImpl {
    node: String,
    definition: Option<AggregateDefinition>,
    directory: GroupDirectory,
}

impl AggregateImpl {
    async fn definition(&mut self) -> Result<AggregateDefinition, String> {
        if self.definition.is_none() {
            self.definition = Some(AggregateDefinition::from_definition(
                &node_definition(&self.node).await?,
            )?);
        }
        self.definition.clone().ok_or_else(|| "no definition".to_string())
    }

    async fn latest_of(&mut self) -> Result<Option<Time>, String> {
        let shards = self.definition().await?.spec.shards;
        let mut latest = None;
        for group in self.directory.groups(None) {
            for shard in 0..shards {
                latest = latest.max(
                    AggregatorClient::get(self.node.clone(), group.label(), shard)
                        .latest()
                        .await,
                );
            }
        }
        Ok(latest)
    }

    async fn fold_at(&mut self, t: Time, functions: &[AggFn], only: Option<&str>) -> Result<InputFold, String> {
        let definition = self.definition().await?;
        let names: Vec<String> = functions.iter().map(AggFn::to_string).collect();
        let mut groups: Vec<(Group, Partial)> = Vec::new();
        for group in self.directory.groups(only) {
            let mut shards = Vec::with_capacity(definition.spec.shards as usize);
            for shard in 0..definition.spec.shards {
                let text = AggregatorClient::get(self.node.clone(), group.label(), shard)
                    .partial(t, names.clone())
                    .await?;
                shards.push(serde_json::from_str::<Partial>(&text).map_err(|e| e.to_string())?);
            }
            if let Some(merged) = merge_shards(&shards, functions) {
                groups.push((group, merged));
            }
        }
        Ok(InputFold {
            grouped: definition.spec.group_by.is_some(),
            groups,
        })
    }
}

#[agent_implementation]
impl Aggregate for AggregateImpl {
    fn new(node: String) -> Self {
        AggregateImpl {
            node,
            definition: None,
            directory: GroupDirectory::new(),
        }
    }

    async fn register(&mut self, group: String) -> Result<bool, String> {
        let group: Group = serde_json::from_str(&group).map_err(|e| format!("bad group: {e}"))?;
        Ok(self.directory.register(group))
    }

    async fn latest(&mut self) -> Result<Option<i64>, String> {
        self.latest_of().await
    }

    async fn fold(&mut self, t: i64, functions: Vec<String>) -> Result<String, String> {
        let fold = self.fold_at(t, &functions_of(&functions)?, None).await?;
        json(&fold)
    }

    async fn read(&mut self, t: String, functions: String, group: String) -> Result<GroupsView, String> {
        let functions = parse_functions(&functions)?;
        let at = match instant(&t)? {
            Some(t) => Some(t),
            None => self.latest_of().await?,
        };
        let only = (!group.is_empty()).then_some(group.as_str());
        let groups = match at {
            Some(t) => self.fold_at(t, &functions, only).await?.groups,
            None => Vec::new(),
        };
        Ok(GroupsView {
            node: self.node.clone(),
            t: at,
            groups: groups
                .iter()
                .map(|(g, p)| {
                    let values = functions.iter().map(|f| (f.to_string(), p.finish(*f))).collect();
                    GroupView::new(g, p.keys, values)
                })
                .collect(),
        })
    }
}

/// A metric: arithmetic over aggregates, computed when read.
#[agent_definition(mount = "/v1/metrics/{node}")]
pub trait Metric {
    fn new(node: String) -> Self;

    /// Every group (or the one labelled `group`) at `t` (`end`, ms or RFC 3339).
    #[endpoint(get = "/?t={t}&group={group}")]
    async fn read(&mut self, t: String, group: String) -> Result<GroupsView, String>;
}

#[derive(Serialize, Deserialize)]
struct MetricImpl {
    node: String,
    definition: Option<PlanNode>,
}

#[agent_implementation]
impl Metric for MetricImpl {
    fn new(node: String) -> Self {
        MetricImpl { node, definition: None }
    }

    async fn read(&mut self, t: String, group: String) -> Result<GroupsView, String> {
        if self.definition.is_none() {
            let text = node_definition(&self.node).await?;
            self.definition = Some(serde_json::from_str(&text).map_err(|e| format!("bad node definition: {e}"))?);
        }
        let node = self.definition.clone().ok_or("no definition")?;
        let Operator::Metric(expr) = &node.operator else {
            return Err(format!("`{}` is not a metric", node.id));
        };
        let at = match instant(&t)? {
            Some(t) => Some(t),
            None => {
                let mut latest = None;
                for input in &node.children {
                    latest = latest.max(AggregateClient::get(input.to_string()).latest().await?);
                }
                latest
            }
        };
        let Some(at) = at else {
            return Ok(GroupsView {
                node: self.node.clone(),
                t: None,
                groups: Vec::new(),
            });
        };
        let mut folds = Vec::with_capacity(node.children.len());
        for (i, input) in node.children.iter().enumerate() {
            let names: Vec<String> = expr.functions_of(i).iter().map(AggFn::to_string).collect();
            let text = AggregateClient::get(input.to_string()).fold(at, names).await?;
            folds.push(serde_json::from_str::<InputFold>(&text).map_err(|e| e.to_string())?);
        }
        let groups = expr
            .evaluate_groups(&folds)
            .into_iter()
            .filter(|(g, _, _)| group.is_empty() || g.is_named(&group))
            .map(|(g, keys, value)| GroupView::new(&g, keys, vec![("value".to_string(), value)]))
            .collect();
        Ok(GroupsView {
            node: self.node.clone(),
            t: Some(at),
            groups,
        })
    }
}
