//! The `TimelineProcessor` agent.

use golem_rust::agent_implementation;
use timeline::{NodeId, Output, WorkerDescription};
use timeline_api::agents::TimelineProcessor;
use timeline_api::reads::{node_definition, outputs};
use timeline_api::views::{DescriptionView, ResultView, TimelineView, parse_time};

struct TimelineProcessorImpl {
    node: String,
    key: String,
}

impl TimelineProcessorImpl {
    async fn compute(&self) -> Result<Output, String> {
        let id = NodeId::parse(&self.node).ok_or_else(|| format!("`{}` is not a node id", self.node))?;
        let mut out = outputs(&self.key, &[id]).await?;
        out.pop().ok_or_else(|| "no output".to_string())
    }
}

#[agent_implementation]
impl TimelineProcessor for TimelineProcessorImpl {
    fn new(node: String, key: String) -> Self {
        TimelineProcessorImpl { node, key }
    }

    async fn get_timeline_result(&mut self, t: Option<String>) -> Result<ResultView, String> {
        ResultView::new(&self.node, &self.key, &self.compute().await?, t.as_deref())
    }

    async fn timeline(&mut self, from: Option<String>, to: Option<String>) -> Result<TimelineView, String> {
        let from = from.as_deref().map(parse_time).transpose()?;
        let to = to.as_deref().map(parse_time).transpose()?;
        Ok(TimelineView::new(
            &self.node,
            &self.key,
            &self.compute().await?,
            from,
            to,
        ))
    }

    async fn describe(&mut self) -> Result<DescriptionView, String> {
        let node = node_definition(&self.node).await?;
        let output = self.compute().await?;
        Ok(DescriptionView::from(&WorkerDescription::new(&node, &output, None)))
    }

    async fn output(&mut self) -> Result<String, String> {
        serde_json::to_string(&self.compute().await?).map_err(|e| e.to_string())
    }
}
