//! The changes component's agents: thin shells over `timeline::changes` and
//! [`crate::log`].

use golem_rust::agent_implementation;
use serde::{Deserialize, Serialize};
use timeline::changes::diff;
use timeline::{NodeId, Timeline, WorkerKind};
use timeline_api::agents::{AggregateClient, Changes, ChangesClient, CoreClient, JobWatch, KeyWatch, MetricClient};
use timeline_api::reads::outputs;
use timeline_api::views::{ChangeView, ChangesView, GroupValue, WatchView, group_changes, group_values};

use crate::log::ChangeLog;

#[derive(Serialize, Deserialize)]
struct KeyWatchImpl {
    job: String,
    key: String,
    /// The job's per-key outputs (name, node), once known.
    outputs: Option<Vec<(String, String)>>,
    /// What each output was at the last refresh.
    seen: Vec<Timeline>,
}

#[agent_implementation]
impl KeyWatch for KeyWatchImpl {
    fn new(job: String, key: String) -> Self {
        KeyWatchImpl {
            job,
            key,
            outputs: None,
            seen: Vec::new(),
        }
    }

    async fn refresh(&mut self) -> Result<WatchView, String> {
        if self.outputs.is_none() {
            let job = CoreClient::get()
                .job(self.job.clone())
                .await
                .ok_or_else(|| format!("no job named `{}`", self.job))?;
            let per_key = job
                .outputs
                .iter()
                .filter_map(|o| o.split_once('='))
                .filter(|(_, node)| {
                    NodeId::parse(node).is_some_and(|id| {
                        matches!(
                            id.worker_kind(),
                            WorkerKind::EventProcessor | WorkerKind::TimelineProcessor
                        )
                    })
                })
                .map(|(name, node)| (name.to_string(), node.to_string()))
                .collect::<Vec<_>>();
            self.seen = vec![Timeline::unknown(); per_key.len()];
            self.outputs = Some(per_key);
        }
        let named = self.outputs.clone().unwrap_or_default();
        let nodes = named
            .iter()
            .map(|(_, node)| NodeId::parse(node).ok_or_else(|| format!("`{node}` is not a node id")))
            .collect::<Result<Vec<_>, _>>()?;
        let now = outputs(&self.key, &nodes).await?;
        let mut found: Vec<ChangeView> = Vec::new();
        for (((name, _), old), new) in named.iter().zip(&self.seen).zip(&now) {
            found.extend(
                diff(old, &new.timeline)
                    .iter()
                    .map(|c| ChangeView::of_key(name, &self.key, c)),
            );
        }
        let mut last = 0;
        if !found.is_empty() {
            let json = serde_json::to_string(&found).map_err(|e| e.to_string())?;
            last = ChangesClient::get(self.job.clone()).record(json).await?;
        }
        self.seen = now.into_iter().map(|o| o.timeline).collect();
        Ok(WatchView {
            job: self.job.clone(),
            key: self.key.clone(),
            changes: u32::try_from(found.len()).unwrap_or(u32::MAX),
            last,
        })
    }
}

/// An aggregate or metric output: name, node, functions (none: a metric).
type AggregateOutput = (String, String, Option<Vec<String>>);

#[derive(Serialize, Deserialize)]
struct JobWatchImpl {
    job: String,
    /// The job's aggregate and metric outputs, once known.
    outputs: Option<Vec<AggregateOutput>>,
    /// What each output was at the last refresh, by output name.
    seen: Vec<(String, Vec<GroupValue>)>,
}

#[agent_implementation]
impl JobWatch for JobWatchImpl {
    fn new(job: String) -> Self {
        JobWatchImpl {
            job,
            outputs: None,
            seen: Vec::new(),
        }
    }

    async fn refresh(&mut self) -> Result<WatchView, String> {
        if self.outputs.is_none() {
            let jobs = CoreClient::get().jobs().await;
            let job = jobs
                .jobs
                .into_iter()
                .find(|j| j.name == self.job)
                .ok_or_else(|| format!("no job named `{}`", self.job))?;
            let outputs = job
                .outputs
                .into_iter()
                .filter_map(|o| match o.worker.as_str() {
                    "aggregator" => Some((o.name, o.node, Some(o.functions))),
                    "metric" => Some((o.name, o.node, None)),
                    _ => None,
                })
                .collect();
            self.outputs = Some(outputs);
        }
        let mut found: Vec<ChangeView> = Vec::new();
        let mut seen = Vec::new();
        for (name, node, functions) in self.outputs.clone().unwrap_or_default() {
            let read = match &functions {
                Some(f) => {
                    AggregateClient::get(node.clone())
                        .read(None, Some(f.join(",")), None)
                        .await?
                }
                None => MetricClient::new_phantom(node.clone()).read(None, None).await.value?,
            };
            let now = group_values(&read, functions.is_none());
            let before = self.seen.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_slice());
            found.extend(group_changes(&name, before.unwrap_or_default(), &now, read.t));
            seen.push((name, now));
        }
        let mut last = 0;
        if !found.is_empty() {
            let json = serde_json::to_string(&found).map_err(|e| e.to_string())?;
            last = ChangesClient::get(self.job.clone()).record(json).await?;
        }
        self.seen = seen;
        Ok(WatchView {
            job: self.job.clone(),
            key: String::new(),
            changes: u32::try_from(found.len()).unwrap_or(u32::MAX),
            last,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ChangesImpl {
    job: String,
    log: ChangeLog,
}

#[agent_implementation]
impl Changes for ChangesImpl {
    fn new(job: String) -> Self {
        ChangesImpl {
            job,
            log: ChangeLog::new(),
        }
    }

    fn record(&mut self, changes: String) -> Result<u64, String> {
        let changes: Vec<ChangeView> = serde_json::from_str(&changes).map_err(|e| format!("bad changes: {e}"))?;
        Ok(self.log.record(changes))
    }

    fn read(&self, after: Option<u64>, limit: Option<u32>, condition: Option<String>) -> Result<ChangesView, String> {
        self.log
            .page(&self.job, after.unwrap_or(0), limit, condition.as_deref())
    }
}
