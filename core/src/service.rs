//! The `Core` agent's answers, as the views that cross agent boundaries.

use timeline::NodeId;
use timeline_api::views::{JobError, JobSummary, JobView, JobsView};

use timeline::registry::{JobRegistry, SubmitError, Submitted};

/// The names of the jobs that record the changes of their results.
pub type Recording = std::collections::BTreeSet<String>;

/// Submits a job (recording its changes if `changes`); the view of the new
/// or existing job, or why it was refused.
pub fn submit(
    registry: &mut JobRegistry,
    recording: &mut Recording,
    name: Option<&str>,
    query: &str,
    changes: bool,
) -> Result<JobView, JobError> {
    match registry.submit(name, query) {
        Ok(Submitted::Created(job)) => {
            if changes {
                recording.insert(job.name.clone());
            }
            Ok(JobView::new(&job.name, &job.query, &job.plan, true).with_changes(changes))
        }
        Ok(Submitted::Existing(job)) => {
            Ok(JobView::new(&job.name, &job.query, &job.plan, false).with_changes(recording.contains(&job.name)))
        }
        Err(e) => {
            let (code, dsl) = match &e {
                SubmitError::Query(d) => ("bad_query", Some(d)),
                SubmitError::Name(_) => ("bad_name", None),
                SubmitError::Conflict(_) => ("conflict", None),
                SubmitError::Stream(_) => ("stream_conflict", None),
            };
            Err(JobError::new(query, code, e.to_string(), dsl))
        }
    }
}

/// The definition of a live node, as JSON, for the workers that run it.
pub fn node_definition(registry: &JobRegistry, id: &str) -> Option<String> {
    let id = NodeId::parse(id)?;
    registry.node(&id).and_then(|n| serde_json::to_string(n).ok())
}

/// How to evaluate the per-key nodes `ids` from their leaves, as JSON of
/// `timeline::Evaluation`.
pub fn evaluation(registry: &JobRegistry, ids: &[String]) -> Result<String, String> {
    let ids = ids
        .iter()
        .map(|id| NodeId::parse(id).ok_or_else(|| format!("`{id}` is not a node id")))
        .collect::<Result<Vec<_>, _>>()?;
    let eval = timeline::Evaluation::compile(&ids, |id| registry.node(id)).map_err(|e| e.to_string())?;
    serde_json::to_string(&eval).map_err(|e| e.to_string())
}

/// Every job, as `GET /v1/jobs` shows it on both runtimes.
pub fn jobs(registry: &JobRegistry, recording: &Recording) -> JobsView {
    JobsView {
        jobs: registry
            .jobs()
            .map(|j| JobSummary::new(&j.name, &j.query, &j.plan).with_changes(recording.contains(&j.name)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_reports_dsl_errors_with_position() {
        let mut r = JobRegistry::new();
        let mut rec = Recording::new();
        let e = submit(&mut r, &mut rec, Some("j"), "has_existed(a = 1)", false).unwrap_err();
        assert_eq!((e.code.as_str(), e.line, e.column), ("bad_query", Some(1), Some(15)));
        let v = submit(&mut r, &mut rec, Some("j"), "has_existed(a == 1)", true).unwrap();
        assert!(v.created && v.changes);
        let again = submit(&mut r, &mut rec, Some("j"), "has_existed(a == 1)", false).unwrap();
        assert!(!again.created && again.changes, "a job keeps recording its changes");
        assert!(node_definition(&r, &v.result).unwrap().contains("has_existed"));
        assert_eq!(node_definition(&r, "has_existed-0000000000000000"), None);
        assert_eq!(jobs(&r, &rec).jobs[0].result, v.result);
        assert!(jobs(&r, &rec).jobs[0].changes);
        assert!(!jobs(&r, &Recording::new()).jobs[0].changes);
        let eval: timeline::Evaluation =
            serde_json::from_str(&evaluation(&r, std::slice::from_ref(&v.result)).unwrap()).unwrap();
        assert_eq!(eval.leaves().len(), 1);
        assert!(
            evaluation(&r, &["has_existed-0000000000000000".into()])
                .unwrap_err()
                .contains("no job runs")
        );
    }
}
