//! Which workers a key's events concern: the union of the leaves of every
//! job's plan, and the aggregate nodes whose contributors must hear of them.

use std::collections::BTreeSet;

use serde_json::Value;

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
    /// Reads the answer of `GET /v1/jobs`: `{"jobs": [...]}` (local runtime)
    /// or `[...]` (Golem's Core agent); each job has `name` and `leaves`, and
    /// `aggregates` when it has any.
    pub fn from_jobs(body: &Value) -> Result<Routes, String> {
        let jobs = match body {
            Value::Array(jobs) => jobs,
            Value::Object(o) => o
                .get("jobs")
                .and_then(Value::as_array)
                .ok_or("the job list has no `jobs` array")?,
            _ => return Err("the job list is neither an array nor an object".into()),
        };
        let mut leaves = BTreeSet::new();
        let mut aggregates = BTreeSet::new();
        let mut names = BTreeSet::new();
        for job in jobs {
            let name = job.get("name").and_then(Value::as_str).ok_or("a job has no `name`")?;
            let job_leaves = job
                .get("leaves")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("job `{name}` lists no `leaves`"))?;
            for leaf in job_leaves {
                let leaf = leaf
                    .as_str()
                    .ok_or_else(|| format!("job `{name}` has a leaf that is not a string"))?;
                leaves.insert(leaf.to_string());
            }
            for aggregate in job.get("aggregates").and_then(Value::as_array).into_iter().flatten() {
                let aggregate = aggregate
                    .as_str()
                    .ok_or_else(|| format!("job `{name}` has an aggregate that is not a string"))?;
                aggregates.insert(aggregate.to_string());
            }
            names.insert(name.to_string());
        }
        Ok(Routes {
            leaves: leaves.into_iter().collect(),
            aggregates: aggregates.into_iter().collect(),
            jobs: names.into_iter().collect(),
        })
    }

    /// Whether no job runs.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_leaf_shared_by_two_jobs_is_routed_once() {
        let body = json!({"jobs": [
            {"name": "b", "leaves": ["has_existed-1", "latest_event_to_state-2"]},
            {"name": "a", "leaves": ["latest_event_to_state-2", "has_existed_within-3"]},
        ]});
        let routes = Routes::from_jobs(&body).unwrap();
        assert_eq!(
            routes.leaves,
            ["has_existed-1", "has_existed_within-3", "latest_event_to_state-2"]
        );
        assert_eq!(routes.jobs, ["a", "b"]);
        assert!(routes.aggregates.is_empty());
        let golem = json!([{"name": "a", "leaves": ["x"], "aggregates": ["aggregate-1"]}]);
        let routes = Routes::from_jobs(&golem).unwrap();
        assert_eq!(
            (routes.leaves, routes.aggregates),
            (vec!["x".to_string()], vec!["aggregate-1".to_string()])
        );
    }

    #[test]
    fn malformed_job_lists_are_errors() {
        assert!(
            Routes::from_jobs(&json!({"jobs": [{"name": "a"}]}))
                .unwrap_err()
                .contains("`a`")
        );
        assert!(Routes::from_jobs(&json!("x")).is_err());
        assert!(Routes::from_jobs(&json!({"jobs": [{"leaves": []}]})).is_err());
        assert!(Routes::from_jobs(&json!({"jobs": []})).unwrap().is_empty());
    }
}
