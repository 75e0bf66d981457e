//! The `EventProcessor` agent: a durable shell around [`LeafWorker`].

use golem_rust::{agent_definition, agent_implementation, endpoint};
use serde::{Deserialize, Serialize};
use timeline_golem_api::clients::node_definition;
use timeline_golem_api::views::{AddEventsResult, DescriptionView, ResultView, TimelineView, parse_time};

use crate::LeafWorker;

/// The key field of events posted without one.
const KEY_FIELD: &str = timeline::event::DEFAULT_KEY_FIELD;

#[agent_definition(mount = "/v1/event-processor/{node}/{key}", snapshotting = "periodic(30s)")]
pub trait EventProcessor {
    fn new(key: String, node: String) -> Self;

    /// Applies a batch of events (JSON objects as strings) of this key.
    #[endpoint(post = "/events")]
    async fn add_events(&mut self, events: Vec<String>) -> Result<AddEventsResult, String>;

    /// The value at `t` (`end`, milliseconds or RFC 3339).
    #[endpoint(get = "/result?t={t}")]
    async fn result(&mut self, t: String) -> Result<ResultView, String>;

    /// The whole timeline.
    #[endpoint(get = "/timeline")]
    async fn timeline(&mut self) -> Result<TimelineView, String>;

    /// The timeline clipped to `[from, to)`.
    #[endpoint(get = "/timeline?from={from}&to={to}")]
    async fn timeline_between(&mut self, from: String, to: String) -> Result<TimelineView, String>;

    /// What the worker computes and holds.
    #[endpoint(get = "/")]
    async fn describe(&mut self) -> Result<DescriptionView, String>;

    /// JSON of the worker's `timeline::Output`, for timeline processors.
    async fn output(&mut self) -> Result<String, String>;
}

#[derive(Serialize, Deserialize)]
struct EventProcessorImpl {
    key: String,
    node: String,
    worker: Option<LeafWorker>,
}

impl EventProcessorImpl {
    /// The worker, made on first use from the node's definition in `Core`.
    async fn worker(&mut self) -> Result<&mut LeafWorker, String> {
        if self.worker.is_none() {
            let definition = node_definition(&self.node).await?;
            self.worker = Some(LeafWorker::from_definition(&self.key, &definition)?);
        }
        self.worker.as_mut().ok_or_else(|| "worker not initialised".to_string())
    }
}

#[agent_implementation]
impl EventProcessor for EventProcessorImpl {
    fn new(key: String, node: String) -> Self {
        EventProcessorImpl {
            key,
            node,
            worker: None,
        }
    }

    async fn add_events(&mut self, events: Vec<String>) -> Result<AddEventsResult, String> {
        Ok(self.worker().await?.add_events(KEY_FIELD, &events))
    }

    async fn result(&mut self, t: String) -> Result<ResultView, String> {
        let (node, key) = (self.node.clone(), self.key.clone());
        let output = self.worker().await?.output();
        ResultView::new(&node, &key, &output, Some(&t))
    }

    async fn timeline(&mut self) -> Result<TimelineView, String> {
        let (node, key) = (self.node.clone(), self.key.clone());
        Ok(TimelineView::new(
            &node,
            &key,
            &self.worker().await?.output(),
            None,
            None,
        ))
    }

    async fn timeline_between(&mut self, from: String, to: String) -> Result<TimelineView, String> {
        let (from, to) = (parse_time(&from)?, parse_time(&to)?);
        let (node, key) = (self.node.clone(), self.key.clone());
        Ok(TimelineView::new(
            &node,
            &key,
            &self.worker().await?.output(),
            Some(from),
            Some(to),
        ))
    }

    async fn describe(&mut self) -> Result<DescriptionView, String> {
        Ok(DescriptionView::from(&self.worker().await?.describe()))
    }

    async fn output(&mut self) -> Result<String, String> {
        serde_json::to_string(&self.worker().await?.output()).map_err(|e| e.to_string())
    }
}
