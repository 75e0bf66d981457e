//! The aggregator component's agents: thin shells over the crate's logic.

use golem_rust::agent_implementation;
use serde::{Deserialize, Serialize};
use timeline::aggregate::{Contributor as Sent, GroupDirectory, key_contributions, merge_shards};
use timeline::metric::InputFold;
use timeline::{AggFn, AggregateDefinition, Group, GroupAggregator, Operator, Partial, PlanNode, Time, Timeline};
use timeline_api::agents::{Aggregate, AggregateClient, Aggregator, AggregatorClient, Contributor, Metric};
use timeline_api::reads::{node_definition, outputs};
use timeline_api::views::{AggregatorView, GroupView, GroupsView, RefreshView, ScalarValue, parse_time};

fn json<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

fn functions_of(names: &[String]) -> Result<Vec<AggFn>, String> {
    names.iter().map(|f| f.parse::<AggFn>()).collect()
}

/// `end` (or nothing) is the latest event time; else milliseconds or RFC 3339.
fn instant(text: Option<&str>) -> Result<Option<Time>, String> {
    match text {
        None | Some("") | Some("end") => Ok(None),
        Some(other) => parse_time(other).map(Some),
    }
}

async fn aggregate_definition(node: &str) -> Result<AggregateDefinition, String> {
    AggregateDefinition::new(&node_definition(node).await?)
}

#[derive(Serialize, Deserialize)]
struct ContributorImpl {
    node: String,
    key: String,
    definition: Option<AggregateDefinition>,
    state: Sent,
}

#[agent_implementation]
impl Contributor for ContributorImpl {
    fn new(node: String, key: String) -> Self {
        ContributorImpl {
            node,
            key,
            definition: None,
            state: Sent::new(),
        }
    }

    async fn refresh(&mut self) -> Result<RefreshView, String> {
        if self.definition.is_none() {
            self.definition = Some(aggregate_definition(&self.node).await?);
        }
        let definition = self.definition.clone().ok_or("no definition")?;
        let mut read = outputs(&self.key, &definition.inputs()).await?.into_iter();
        let source = read.next().ok_or("no output of the source")?;
        let group = read.next().map(|o| o.timeline);
        let before = self.state.groups();
        let now = key_contributions(&definition.spec, &source.timeline, group.as_ref());
        let changes = self.state.update(now);
        let shard = definition.spec.shard_of(&self.key);
        for change in &changes {
            if change.contribution.is_some() && !before.contains(&change.group) {
                AggregateClient::get(self.node.clone())
                    .register(json(&change.group)?)
                    .await?;
            }
            let contribution = change.contribution.as_ref().map(json).transpose()?;
            AggregatorClient::get(self.node.clone(), change.group.label(), shard)
                .replace(self.key.clone(), contribution, source.latest)
                .await?;
        }
        Ok(RefreshView {
            node: self.node.clone(),
            key: self.key.clone(),
            sent: changes.len() as u32,
            groups: self
                .state
                .groups()
                .iter()
                .map(|g| g.0.as_ref().map(ScalarValue::from))
                .collect(),
        })
    }
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

    fn replace(&mut self, key: String, contribution: Option<String>, latest: Option<i64>) -> Result<bool, String> {
        let contribution: Option<Timeline> = contribution
            .map(|c| serde_json::from_str(&c).map_err(|e| format!("bad contribution of {key}: {e}")))
            .transpose()?;
        Ok(self.state.replace(&key, contribution, latest))
    }

    fn latest(&self) -> Option<i64> {
        self.state.latest()
    }

    fn partial(&self, t: i64, functions: Vec<String>) -> Result<String, String> {
        json(&self.state.partial(t, &functions_of(&functions)?))
    }

    fn describe(&self) -> AggregatorView {
        AggregatorView {
            node: self.node.clone(),
            group: self.group.clone(),
            shard: self.shard,
            members: self.state.members() as u64,
            latest: self.state.latest(),
        }
    }
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
            self.definition = Some(aggregate_definition(&self.node).await?);
        }
        self.definition.clone().ok_or_else(|| "no definition".to_string())
    }

    /// Every group's shards, each read at once.
    async fn shards<T>(
        &mut self,
        only: Option<&str>,
        read: impl Fn(AggregatorClient) -> futures::future::LocalBoxFuture<'static, Result<T, String>>,
    ) -> Result<Vec<(Group, Vec<T>)>, String> {
        let shards = self.definition().await?.spec.shards;
        let groups = self.directory.groups(only);
        let calls = groups
            .iter()
            .flat_map(|g| (0..shards).map(|s| read(AggregatorClient::get(self.node.clone(), g.label(), s))));
        let mut answers = futures::future::join_all(calls).await.into_iter();
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let mut of_group = Vec::with_capacity(shards as usize);
            for _ in 0..shards {
                of_group.push(answers.next().ok_or("missing shard answer")??);
            }
            out.push((group, of_group));
        }
        Ok(out)
    }

    async fn latest_of(&mut self) -> Result<Option<Time>, String> {
        let all = self
            .shards(None, |a| Box::pin(async move { Ok(a.latest().await) }))
            .await?;
        Ok(all.into_iter().flat_map(|(_, s)| s).flatten().max())
    }

    async fn fold_at(&mut self, t: Time, functions: &[AggFn], only: Option<&str>) -> Result<InputFold, String> {
        let definition = self.definition().await?;
        let names: Vec<String> = functions.iter().map(AggFn::to_string).collect();
        let all = self
            .shards(only, |a| {
                let names = names.clone();
                Box::pin(async move {
                    let text = a.partial(t, names).await?;
                    serde_json::from_str::<Partial>(&text).map_err(|e| e.to_string())
                })
            })
            .await?;
        let groups = all
            .into_iter()
            .filter_map(|(group, shards)| merge_shards(&shards, functions).map(|m| (group, m)))
            .collect();
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

    async fn read(
        &mut self,
        t: Option<String>,
        functions: Option<String>,
        group: Option<String>,
    ) -> Result<GroupsView, String> {
        let functions = AggFn::parse_list(functions.as_deref().unwrap_or(""))?;
        let at = match instant(t.as_deref())? {
            Some(t) => Some(t),
            None => self.latest_of().await?,
        };
        let only = group.as_deref().filter(|g| !g.is_empty());
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

struct MetricImpl {
    node: String,
}

#[agent_implementation]
impl Metric for MetricImpl {
    fn new(node: String) -> Self {
        MetricImpl { node }
    }

    async fn read(&mut self, t: Option<String>, group: Option<String>) -> Result<GroupsView, String> {
        let node: PlanNode = node_definition(&self.node).await?;
        let Operator::Metric(expr) = &node.operator else {
            return Err(format!("`{}` is not a metric", node.id));
        };
        let at = match instant(t.as_deref())? {
            Some(t) => Some(t),
            None => {
                let reads = node
                    .children
                    .iter()
                    .map(|input| async move { AggregateClient::get(input.to_string()).latest().await });
                let mut latest = None;
                for answer in futures::future::join_all(reads).await {
                    latest = latest.max(answer?);
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
        let reads = node.children.iter().enumerate().map(|(i, input)| {
            let names: Vec<String> = expr.functions_of(i).iter().map(AggFn::to_string).collect();
            async move { AggregateClient::get(input.to_string()).fold(at, names).await }
        });
        let mut folds = Vec::with_capacity(node.children.len());
        for answer in futures::future::join_all(reads).await {
            let text = answer?;
            folds.push(serde_json::from_str::<InputFold>(&text).map_err(|e| e.to_string())?);
        }
        let only = group.as_deref().filter(|g| !g.is_empty());
        let groups = expr
            .evaluate_groups(&folds)
            .into_iter()
            .filter(|(g, _, _)| only.is_none_or(|name| g.is_named(name)))
            .map(|(g, keys, value)| GroupView::new(&g, keys, vec![("value".to_string(), value)]))
            .collect();
        Ok(GroupsView {
            node: self.node.clone(),
            t: Some(at),
            groups,
        })
    }
}
