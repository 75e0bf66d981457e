//! Which workers a key's events concern: the union of the leaves of every
//! job's plan, and the aggregate nodes whose contributors must hear of them.

use std::collections::BTreeSet;

use timeline_api::views::JobsView;

/// The leaf nodes events must reach, each once however many jobs share it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// Leaf node ids, sorted, without repeats.
    pub leaves: Vec<String>,
    /// Aggregate node ids, sorted, without repeats.
    pub aggregates: Vec<String>,
    /// Job names, sorted.
    pub jobs: Vec<String>,
}

impl Routes {
    /// The routes of the running jobs, as `GET /v1/jobs` lists them (the
    /// same view on the local runtime and on Golem).
    pub fn from_jobs(view: &JobsView) -> Routes {
        let mut leaves = BTreeSet::new();
        let mut aggregates = BTreeSet::new();
        let mut names = BTreeSet::new();
        for job in &view.jobs {
            leaves.extend(job.leaves.iter().cloned());
            aggregates.extend(job.aggregates.iter().cloned());
            names.insert(job.name.clone());
        }
        Routes {
            leaves: leaves.into_iter().collect(),
            aggregates: aggregates.into_iter().collect(),
            jobs: names.into_iter().collect(),
        }
    }

    /// Reads the body of `GET /v1/jobs`.
    pub fn from_body(body: &str) -> Result<Routes, String> {
        let view: JobsView = serde_json::from_str(body).map_err(|e| format!("the job list is not one: {e}"))?;
        Ok(Self::from_jobs(&view))
    }

    /// Whether no job runs.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_shared_by_two_jobs_is_routed_once() {
        let body = r#"{"jobs": [
            {"name": "b", "query": "q", "result": "r", "leaves": ["has_existed-1", "latest_event_to_state-2"]},
            {"name": "a", "query": "q", "result": "r", "leaves": ["latest_event_to_state-2", "has_existed_within-3"],
             "aggregates": ["aggregate-1"], "nodes": 3,
             "outputs": [{"name": "n", "node": "aggregate-1", "worker": "aggregator", "functions": [], "group_by": null}]}
        ]}"#;
        let routes = Routes::from_body(body).unwrap();
        assert_eq!(
            routes.leaves,
            ["has_existed-1", "has_existed_within-3", "latest_event_to_state-2"]
        );
        assert_eq!(routes.jobs, ["a", "b"]);
        assert_eq!(routes.aggregates, ["aggregate-1"]);
    }

    #[test]
    fn malformed_job_lists_are_errors() {
        let e = Routes::from_body(r#"{"jobs": [{"name": "a"}]}"#).unwrap_err();
        assert!(e.contains("leaves") || e.contains("missing field"), "{e}");
        assert!(Routes::from_body(r#""x""#).is_err());
        assert!(Routes::from_body(r#"{"jobs": []}"#).unwrap().is_empty());
    }
}
