//! The `Driver` agent: DSL in, plan out.

use golem_rust::agent_implementation;
use timeline_api::agents::{CoreClient, Driver};
use timeline_api::views::{JobError, JobView};

struct DriverImpl {
    job: String,
}

#[agent_implementation]
impl Driver for DriverImpl {
    fn new(job: String) -> Self {
        DriverImpl { job }
    }

    async fn run(&mut self, query: String, changes: Option<bool>) -> Result<JobView, JobError> {
        crate::check(&query)?;
        CoreClient::get().submit(Some(self.job.clone()), query, changes).await
    }
}
