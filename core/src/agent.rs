//! The `Core` agent: the job registry, durable through Golem.

use golem_rust::agent_implementation;
use serde::{Deserialize, Serialize};
use timeline_api::agents::Core;
use timeline_api::views::{JobError, JobView, JobsView};

use crate::service::{self, Recording};
use timeline::registry::JobRegistry;

#[derive(Serialize, Deserialize)]
struct CoreImpl {
    registry: JobRegistry,
    /// The jobs that record their changes.
    #[serde(default)]
    recording: Recording,
}

#[agent_implementation]
impl Core for CoreImpl {
    fn new() -> Self {
        CoreImpl {
            registry: JobRegistry::new(),
            recording: Recording::new(),
        }
    }

    fn submit(&mut self, name: Option<String>, query: String, changes: Option<bool>) -> Result<JobView, JobError> {
        service::submit(
            &mut self.registry,
            &mut self.recording,
            name.as_deref(),
            &query,
            changes.unwrap_or(false),
        )
    }

    fn jobs(&self) -> JobsView {
        service::jobs(&self.registry, &self.recording)
    }

    fn job(&self, name: String) -> Option<JobView> {
        self.registry
            .get(&name)
            .map(|j| JobView::new(&j.name, &j.query, &j.plan, false).with_changes(self.recording.contains(&name)))
    }

    fn delete(&mut self, name: String) -> bool {
        self.recording.remove(&name);
        self.registry.remove(&name).is_some()
    }

    fn node(&self, id: String) -> Option<String> {
        service::node_definition(&self.registry, &id)
    }

    fn evaluation(&self, nodes: Vec<String>) -> Result<String, String> {
        service::evaluation(&self.registry, &nodes)
    }
}
