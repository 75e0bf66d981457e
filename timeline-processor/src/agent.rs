//! The `TimelineProcessor` agent: a shell around [`DerivedWorker`] that reads
//! its children over agent-to-agent calls.

use golem_rust::{agent_definition, agent_implementation, endpoint};
use serde::{Deserialize, Serialize};
use timeline::{NodeId, Output, WorkerKind};
use timeline_golem_api::clients::{EventProcessorApiClient, node_definition};
use timeline_golem_api::views::{DescriptionView, ResultView, TimelineView, parse_time};

use crate::DerivedWorker;

#[agent_definition(mount = "/v1/timeline-processor/{node}/{key}")]
pub trait TimelineProcessor {
    fn new(key: String, node: String) -> Self;

    /// The value at `t` (`end`, milliseconds or RFC 3339).
    #[endpoint(get = "/result?t={t}")]
    async fn result(&mut self, t: String) -> Result<ResultView, String>;

    /// The whole timeline.
    #[endpoint(get = "/timeline")]
    async fn timeline(&mut self) -> Result<TimelineView, String>;

    /// The timeline clipped to `[from, to)`.
    #[endpoint(get = "/timeline?from={from}&to={to}")]
    async fn timeline_between(&mut self, from: String, to: String) -> Result<TimelineView, String>;

    /// What the worker computes.
    #[endpoint(get = "/")]
    async fn describe(&mut self) -> Result<DescriptionView, String>;

    /// JSON of the node's `timeline::Output`, for the timeline processor above.
    async fn output(&mut self) -> Result<String, String>;
}

#[derive(Serialize, Deserialize)]
struct TimelineProcessorImpl {
    key: String,
    node: String,
    /// The node's definition, fetched from `Core` once.
    worker: Option<DerivedWorker>,
}

impl TimelineProcessorImpl {
    async fn worker(&mut self) -> Result<DerivedWorker, String> {
        if self.worker.is_none() {
            let definition = node_definition(&self.node).await?;
            self.worker = Some(DerivedWorker::from_definition(&self.key, &definition)?);
        }
        self.worker.clone().ok_or_else(|| "worker not initialised".to_string())
    }

    /// Reads every child (awaited calls down the tree), then computes.
    async fn compute(&mut self) -> Result<(DerivedWorker, Output), String> {
        let worker = self.worker().await?;
        let mut inputs = Vec::with_capacity(worker.children().len());
        for child in worker.children() {
            inputs.push(read_child(&self.key, child).await?);
        }
        let output = worker.evaluate(&inputs)?;
        Ok((worker, output))
    }
}

async fn read_child(key: &str, child: &NodeId) -> Result<Output, String> {
    let json = match child.worker_kind() {
        WorkerKind::EventProcessor => {
            let client = EventProcessorApiClient::get(key.to_string(), child.to_string()).map_err(|e| e.to_string())?;
            client.output().await.map_err(|e| e.to_string())??
        }
        WorkerKind::TimelineProcessor => {
            TimelineProcessorClient::get(key.to_string(), child.to_string())
                .output()
                .await?
        }
        WorkerKind::Aggregator | WorkerKind::Metric => {
            return Err(format!("{child} is not a per-key node"));
        }
    };
    serde_json::from_str(&json).map_err(|e| format!("bad output of {child}: {e}"))
}

#[agent_implementation]
impl TimelineProcessor for TimelineProcessorImpl {
    fn new(key: String, node: String) -> Self {
        TimelineProcessorImpl {
            key,
            node,
            worker: None,
        }
    }

    async fn result(&mut self, t: String) -> Result<ResultView, String> {
        let (_, output) = self.compute().await?;
        ResultView::new(&self.node, &self.key, &output, Some(&t))
    }

    async fn timeline(&mut self) -> Result<TimelineView, String> {
        let (_, output) = self.compute().await?;
        Ok(TimelineView::new(&self.node, &self.key, &output, None, None))
    }

    async fn timeline_between(&mut self, from: String, to: String) -> Result<TimelineView, String> {
        let (from, to) = (parse_time(&from)?, parse_time(&to)?);
        let (_, output) = self.compute().await?;
        Ok(TimelineView::new(&self.node, &self.key, &output, Some(from), Some(to)))
    }

    async fn describe(&mut self) -> Result<DescriptionView, String> {
        let (worker, output) = self.compute().await?;
        Ok(DescriptionView::from(&worker.describe(&output)))
    }

    async fn output(&mut self) -> Result<String, String> {
        let (_, output) = self.compute().await?;
        serde_json::to_string(&output).map_err(|e| e.to_string())
    }
}
