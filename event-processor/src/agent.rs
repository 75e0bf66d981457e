//! The `EventProcessor` agent: a durable shell around [`LeafWorker`].

use golem_rust::agent_implementation;
use serde::{Deserialize, Serialize};
use timeline::Output;
use timeline_api::agents::EventProcessor;
use timeline_api::reads::node_definition;
use timeline_api::views::{AddEventsResult, DescriptionView, ResultView, TimelineView, parse_time};

use crate::LeafWorker;

#[derive(Serialize, Deserialize)]
struct EventProcessorImpl {
    node: String,
    key: String,
    /// Made at the first batch, from the node's definition in `Core`.
    worker: Option<LeafWorker>,
}

impl EventProcessorImpl {
    /// The output; a worker that has seen no event is Unknown everywhere.
    fn current(&self) -> Output {
        self.worker.as_ref().map(LeafWorker::output).unwrap_or_default()
    }
}

#[agent_implementation]
impl EventProcessor for EventProcessorImpl {
    fn new(node: String, key: String) -> Self {
        EventProcessorImpl {
            node,
            key,
            worker: None,
        }
    }

    async fn add_events(&mut self, events: Vec<String>) -> Result<AddEventsResult, String> {
        if self.worker.is_none() {
            let definition = node_definition(&self.node).await?;
            self.worker = Some(LeafWorker::new(&self.key, definition)?);
        }
        let worker = self.worker.as_mut().ok_or("no worker")?;
        Ok(worker.add_events(&events))
    }

    fn get_timeline_result(&self, t: Option<String>) -> Result<ResultView, String> {
        ResultView::new(&self.node, &self.key, &self.current(), t.as_deref())
    }

    fn timeline(&self, from: Option<String>, to: Option<String>) -> Result<TimelineView, String> {
        let from = from.as_deref().map(parse_time).transpose()?;
        let to = to.as_deref().map(parse_time).transpose()?;
        Ok(TimelineView::new(&self.node, &self.key, &self.current(), from, to))
    }

    fn describe(&self) -> Option<DescriptionView> {
        self.worker.as_ref().map(|w| DescriptionView::from(&w.describe()))
    }

    fn output(&self) -> String {
        serde_json::to_string(&self.current()).unwrap_or_default()
    }
}
