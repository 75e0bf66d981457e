//! Which workers a key's events concern, stream by stream: the union of the
//! leaves of every job reading the stream, the aggregate nodes whose
//! contributors must hear of them, and the stream's key, time and id fields.

use std::collections::BTreeMap;

use timeline::StreamSpec;
use timeline_api::views::JobsView;

/// The routes of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRoutes {
    /// The stream's name and fields.
    pub spec: StreamSpec,
    /// Leaf node ids, sorted, without repeats.
    pub leaves: Vec<String>,
    /// Aggregate node ids, sorted, without repeats.
    pub aggregates: Vec<String>,
    /// Names of the jobs reading the stream, sorted.
    pub jobs: Vec<String>,
    /// Names of those jobs that record changes, sorted: their key watchers
    /// hear of a key's events.
    pub watched: Vec<String>,
}

/// The routes of every stream the runtime knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// By stream name.
    pub streams: BTreeMap<String, StreamRoutes>,
}

impl Routes {
    /// The routes of the running jobs, as `GET /v1/jobs` lists them (the
    /// same view on the local runtime and on Golem).
    pub fn from_jobs(view: &JobsView) -> Routes {
        let mut streams: BTreeMap<String, StreamRoutes> = BTreeMap::new();
        for job in &view.jobs {
            let routes = streams.entry(job.stream.name.clone()).or_insert_with(|| StreamRoutes {
                spec: StreamSpec::from(&job.stream),
                ..StreamRoutes::default()
            });
            routes.leaves.extend(job.leaves.iter().cloned());
            routes.aggregates.extend(job.aggregates.iter().cloned());
            routes.jobs.push(job.name.clone());
            if job.changes {
                routes.watched.push(job.name.clone());
            }
        }
        for routes in streams.values_mut() {
            for list in [
                &mut routes.leaves,
                &mut routes.aggregates,
                &mut routes.jobs,
                &mut routes.watched,
            ] {
                list.sort();
                list.dedup();
            }
        }
        Routes { streams }
    }

    /// Reads the body of `GET /v1/jobs`.
    pub fn from_body(body: &str) -> Result<Routes, String> {
        let view: JobsView = serde_json::from_str(body).map_err(|e| format!("the job list is not one: {e}"))?;
        Ok(Self::from_jobs(&view))
    }

    /// Adds streams the runtime knows though no job reads them yet (the local
    /// runtime's `GET /v1/streams`): their events are kept for later jobs.
    pub fn with_streams(mut self, specs: impl IntoIterator<Item = StreamSpec>) -> Routes {
        for spec in specs {
            self.streams
                .entry(spec.name.to_string())
                .or_insert_with(|| StreamRoutes {
                    spec,
                    ..StreamRoutes::default()
                });
        }
        self
    }

    /// The routes of stream `name`, if the runtime knows it.
    pub fn stream(&self, name: &str) -> Option<&StreamRoutes> {
        self.streams.get(name)
    }

    /// Every job's name, sorted.
    pub fn jobs(&self) -> Vec<String> {
        let mut jobs: Vec<String> = self.streams.values().flat_map(|s| s.jobs.iter().cloned()).collect();
        jobs.sort();
        jobs
    }

    /// How many leaves all streams have.
    pub fn leaves(&self) -> usize {
        self.streams.values().map(|s| s.leaves.len()).sum()
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
        let default = routes.stream("default").unwrap();
        assert_eq!(
            default.leaves,
            ["has_existed-1", "has_existed_within-3", "latest_event_to_state-2"]
        );
        assert_eq!(default.jobs, ["a", "b"]);
        assert_eq!(default.aggregates, ["aggregate-1"]);
        assert_eq!(default.spec, StreamSpec::default());
    }

    #[test]
    fn each_stream_has_its_own_leaves_and_fields() {
        let body = r#"{"jobs": [
            {"name": "cirr", "query": "q", "result": "r", "leaves": ["has_existed-1"]},
            {"name": "cards", "query": "q", "result": "r", "leaves": ["has_existed-2"],
             "stream": {"name": "cards", "key": "card", "time": "time", "id": "event_id"}}
        ]}"#;
        let routes = Routes::from_body(body)
            .unwrap()
            .with_streams([StreamSpec::new("games", "user"), StreamSpec::new("cards", "other")]);
        assert_eq!(routes.stream("default").unwrap().leaves, ["has_existed-1"]);
        let cards = routes.stream("cards").unwrap();
        assert_eq!(
            (cards.leaves.as_slice(), cards.spec.key.as_str()),
            (&["has_existed-2".to_string()][..], "card")
        );
        let games = routes.stream("games").unwrap();
        assert!(games.leaves.is_empty() && games.spec.key == "user");
        assert_eq!(routes.jobs(), ["cards", "cirr"]);
        assert_eq!(routes.leaves(), 2);
    }

    #[test]
    fn malformed_job_lists_are_errors() {
        let e = Routes::from_body(r#"{"jobs": [{"name": "a"}]}"#).unwrap_err();
        assert!(e.contains("leaves") || e.contains("missing field"), "{e}");
        assert!(Routes::from_body(r#""x""#).is_err());
        assert!(Routes::from_body(r#"{"jobs": []}"#).unwrap().streams.is_empty());
    }
}
