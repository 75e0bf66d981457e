//! A job's live figures per node, and its aggregates and metrics over time
//! (what the dashboard's plan and aggregates views draw).

use std::collections::BTreeMap;

use timeline::Group;

use super::*;

/// Samples a series takes when `points` is not given.
const DEFAULT_POINTS: usize = 120;
/// Most samples a series takes.
const MAX_POINTS: usize = 1000;

pub(super) async fn job_stats(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    // One pass over the stream's keys: off the runtime's threads.
    let stats = {
        let job = job.clone();
        tokio::task::spawn_blocking(move || state.engine.read().unwrap_or_else(|p| p.into_inner()).job_stats(&job))
            .await
            .map_err(ApiError::internal)??
    };
    let nodes: Vec<Json_> = stats
        .nodes
        .iter()
        .map(|n| {
            json!({
                "node": n.node,
                "worker": n.worker.as_str(),
                "events": n.events,
                "keys": n.keys,
                "groups": n.groups,
                "state_bytes": n.state_bytes,
                "latest": n.latest,
            })
        })
        .collect();
    Ok(Json(json!({
        "job": job,
        "events": stats.events,
        "keys": stats.keys,
        "latest": stats.latest,
        "nodes": nodes,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct SeriesQuery {
    from: Option<String>,
    to: Option<String>,
    points: Option<usize>,
    group: Option<String>,
}

/// `points` instants evenly spread over `[from, to]`, both included (fewer
/// when the range has fewer milliseconds).
fn sample_times(from: Time, to: Time, points: usize) -> Vec<Time> {
    let span = i128::from(to) - i128::from(from);
    let last = (points - 1) as i128;
    let mut times: Vec<Time> = (0..=last)
        .map(|i| (i128::from(from) + span * i / last) as Time)
        .collect();
    times.dedup();
    times
}

/// One group's series: its keys and each function's value at every instant.
struct GroupSeries {
    keys: Vec<u64>,
    values: BTreeMap<String, Vec<Option<timeline::Value>>>,
}

/// Every aggregate and metric of a job sampled over time: for each output,
/// each group's keys and values at each instant of `times` (null where the
/// group has no value then).
pub(super) async fn job_series(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<Json_>, ApiError> {
    let points = q.points.unwrap_or(DEFAULT_POINTS);
    if !(2..=MAX_POINTS).contains(&points) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`points`: {points} is out of range; give 2 to {MAX_POINTS}"),
        ));
    }
    let from = q.from.as_deref().map(|t| parse_time("from", t)).transpose()?;
    let to = q.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
    // Each sample folds every key of the aggregates read: off the runtime's threads.
    tokio::task::spawn_blocking(move || series(&state, &job, (from, to), points, q.group.as_deref()))
        .await
        .map_err(ApiError::internal)?
        .map(Json)
}

fn series(
    state: &AppState,
    job: &str,
    (from, to): (Option<Time>, Option<Time>),
    points: usize,
    group: Option<&str>,
) -> Result<Json_, ApiError> {
    let (outputs, from, to, times) = {
        let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
        let plan = &engine.job(job)?.plan;
        let outputs: Vec<(timeline::plan::PlanOutput, bool)> = plan
            .outputs
            .iter()
            .filter_map(|o| match o.worker {
                WorkerKind::Aggregator => Some((o.clone(), false)),
                WorkerKind::Metric => Some((o.clone(), true)),
                _ => None,
            })
            .collect();
        let stream = engine.job_stream(job)?;
        let from = from.or_else(|| engine.earliest(stream));
        let to = to.or_else(|| engine.latest(stream));
        let times = match (from, to) {
            (Some(from), Some(to)) if from > to => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("`from` ({from}) is after `to` ({to})"),
                ));
            }
            (Some(from), Some(to)) => sample_times(from, to, points),
            _ => Vec::new(),
        };
        (outputs, from, to, times)
    };
    let mut groups: Vec<BTreeMap<Group, GroupSeries>> = outputs.iter().map(|_| BTreeMap::new()).collect();
    for (i, &t) in times.iter().enumerate() {
        // The lock is taken per instant, so that writes wait for one sample,
        // not for the whole series (which may then span a few writes).
        let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
        for ((output, metric), groups) in outputs.iter().zip(&mut groups) {
            let read = if *metric {
                engine.metric(&output.node, Some(t), group)?
            } else {
                engine.aggregate(&output.node, Some(t), &output.functions, group)?
            };
            for row in read.groups {
                let series = groups.entry(row.group).or_insert_with(|| GroupSeries {
                    keys: vec![0; times.len()],
                    values: BTreeMap::new(),
                });
                series.keys[i] = row.keys;
                for (name, value) in row.values {
                    series.values.entry(name).or_insert_with(|| vec![None; times.len()])[i] = value;
                }
            }
        }
    }
    let outputs: Vec<Json_> = outputs
        .iter()
        .zip(groups)
        .map(|((output, metric), groups)| {
            let functions: Vec<String> = if *metric {
                vec!["value".to_string()]
            } else {
                output.functions.iter().map(|f| f.to_string()).collect()
            };
            let groups: Vec<Json_> = groups
                .into_iter()
                .map(|(group, s)| json!({"group": group, "keys": s.keys, "values": s.values}))
                .collect();
            json!({
                "name": output.name,
                "node": output.node,
                "worker": output.worker.as_str(),
                "group_by": output.group_by,
                "functions": functions,
                "groups": groups,
            })
        })
        .collect();
    Ok(json!({
        "job": job,
        "from": from,
        "to": to,
        "times": times,
        "outputs": outputs,
    }))
}

#[cfg(test)]
mod tests {
    use super::sample_times;

    #[test]
    fn samples_cover_both_ends_without_repeats() {
        assert_eq!(sample_times(0, 100, 5), vec![0, 25, 50, 75, 100]);
        assert_eq!(sample_times(10, 12, 50), vec![10, 11, 12]);
        assert_eq!(sample_times(7, 7, 3), vec![7]);
        let wide = sample_times(i64::MIN, i64::MAX, 3);
        assert_eq!((wide[0], wide[2]), (i64::MIN, i64::MAX));
    }
}
