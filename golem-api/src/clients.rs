//! Clients of agents that live in other components, declared by type name so
//! that a component never links another's implementation.

use golem_rust::agent_client;

/// The orchestrator (`Core` in the `core` component).
#[agent_client(type_name = "Core")]
pub trait CoreApi {
    /// The singleton.
    fn new() -> Self;
    /// The definition of a live node (JSON of `timeline::PlanNode`).
    fn node(&self, id: String) -> Option<String>;
    /// Submits a job.
    fn submit(&self, name: Option<String>, query: String) -> Result<crate::views::JobView, crate::views::JobError>;
}

/// A leaf worker (`EventProcessor` in the `event-processor` component).
#[agent_client(type_name = "EventProcessor")]
pub trait EventProcessorApi {
    /// The worker of node `node` for key `key`.
    fn new(key: String, node: String) -> Self;
    /// JSON of its `timeline::Output`.
    fn output(&self) -> Result<String, String>;
}

/// A derived worker (`TimelineProcessor` in the `timeline-processor` component).
#[agent_client(type_name = "TimelineProcessor")]
pub trait TimelineProcessorApi {
    /// The worker of node `node` for key `key`.
    fn new(key: String, node: String) -> Self;
    /// JSON of its `timeline::Output`.
    fn output(&self) -> Result<String, String>;
}

/// The definition of node `id` (JSON of `timeline::PlanNode`), asked of `Core`.
pub async fn node_definition(id: &str) -> Result<String, String> {
    let core = CoreApiClient::get().map_err(|e| e.to_string())?;
    core.node(id.to_string())
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no job runs node `{id}`"))
}
