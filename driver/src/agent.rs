//! The `Driver` agent: DSL in, plan out.

use golem_rust::{agent_definition, agent_implementation, endpoint};
use timeline_golem_api::clients::CoreApiClient;
use timeline_golem_api::views::{JobError, JobView};

#[agent_definition(mount = "/v1/driver/{job}")]
pub trait Driver {
    fn new(job: String) -> Self;

    /// Starts the job (or returns it if it already runs) and returns its plan.
    #[endpoint(post = "/")]
    async fn run(&mut self, query: String) -> Result<JobView, JobError>;
}

struct DriverImpl {
    job: String,
}

#[agent_implementation]
impl Driver for DriverImpl {
    fn new(job: String) -> Self {
        DriverImpl { job }
    }

    async fn run(&mut self, query: String) -> Result<JobView, JobError> {
        crate::check(&query)?;
        let unavailable = |e: String| JobError {
            code: "unavailable".to_string(),
            message: format!("cannot reach Core: {e}"),
            line: None,
            column: None,
            diagnostic: None,
        };
        let core = CoreApiClient::get().map_err(|e| unavailable(e.to_string()))?;
        core.submit(Some(self.job.clone()), query)
            .await
            .map_err(|e| unavailable(e.to_string()))?
    }
}
