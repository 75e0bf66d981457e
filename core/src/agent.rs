//! The `Core` agent: the job registry, durable through Golem.

use golem_rust::{agent_definition, agent_implementation, endpoint};
use serde::{Deserialize, Serialize};
use timeline_golem_api::views::{JobError, JobView};

use crate::registry::JobRegistry;
use crate::service;

#[agent_definition(mount = "/v1/jobs", snapshotting = "every(20)")]
pub trait Core {
    fn new() -> Self;

    /// Submits a job: DSL in, execution plan out. Idempotent per name and query.
    #[endpoint(post = "/")]
    fn submit(&mut self, name: Option<String>, query: String) -> Result<JobView, JobError>;

    /// Every job.
    #[endpoint(get = "/")]
    fn jobs(&self) -> Vec<JobView>;

    /// One job.
    #[endpoint(get = "/{name}")]
    fn job(&self, name: String) -> Option<JobView>;

    /// Deletes a job; true if it existed.
    #[endpoint(delete = "/{name}")]
    fn delete(&mut self, name: String) -> bool;

    /// The definition of a live node (JSON), for the workers that run it.
    fn node(&self, id: String) -> Option<String>;

    /// Every job's plan (JSON), for feeders.
    fn plans(&self) -> String;
}

#[derive(Serialize, Deserialize)]
struct CoreImpl {
    registry: JobRegistry,
}

#[agent_implementation]
impl Core for CoreImpl {
    fn new() -> Self {
        CoreImpl {
            registry: JobRegistry::new(),
        }
    }

    fn submit(&mut self, name: Option<String>, query: String) -> Result<JobView, JobError> {
        service::submit(&mut self.registry, name.as_deref(), &query)
    }

    fn jobs(&self) -> Vec<JobView> {
        self.registry
            .jobs()
            .map(|j| JobView::new(&j.name, &j.query, &j.plan, false))
            .collect()
    }

    fn job(&self, name: String) -> Option<JobView> {
        self.registry
            .get(&name)
            .map(|j| JobView::new(&j.name, &j.query, &j.plan, false))
    }

    fn delete(&mut self, name: String) -> bool {
        self.registry.remove(&name).is_some()
    }

    fn node(&self, id: String) -> Option<String> {
        service::node_definition(&self.registry, &id)
    }

    fn plans(&self) -> String {
        service::plans(&self.registry)
    }
}
