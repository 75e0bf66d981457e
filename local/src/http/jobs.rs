//! Jobs: submit, list, show, delete; a job's keys, results, timelines and
//! metrics.

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct JobRequest {
    name: Option<String>,
    query: String,
    /// Refuse the job if the query has warnings.
    #[serde(default)]
    strict: bool,
    /// Record the changes of the job's result.
    #[serde(default)]
    changes: bool,
}

/// A warning as JSON: what and where, with the caret drawn.
pub(super) fn warning_json(query: &str, w: &timeline::dsl::DslError) -> Json_ {
    let mut warning = json!({
        "message": w.message,
        "line": w.line,
        "column": w.column,
        "diagnostic": w.render(query, "query"),
    });
    if let Some(help) = &w.help {
        warning["help"] = json!(help);
    }
    warning
}

/// The warnings of job `name` against its stream's columns so far.
pub(super) fn job_warnings(engine: &Engine, job: &timeline::registry::Job) -> Vec<Json_> {
    let columns = engine
        .stream_id(&job.plan.stream.name)
        .map(|s| engine.columns(s).clone())
        .unwrap_or_default();
    engine
        .registry()
        .warnings(&job.name, &columns)
        .iter()
        .map(|w| warning_json(&job.query, w))
        .collect()
}

pub(super) fn job_view(engine: &Engine, job: &timeline::registry::Job, created: bool, changes: bool) -> Json_ {
    let stream = &job.plan.stream;
    let events = if stream.is_default_stream() {
        "/v1/events".to_string()
    } else {
        format!("/v1/streams/{}/events", stream.name)
    };
    json!({
        "name": job.name,
        "query": job.query,
        "created": created,
        "stream": stream,
        "warnings": job_warnings(engine, job),
        "changes": changes,
        "plan": job.plan,
        "routes": {
            "events": events,
            "leaf_events": "/v1/event-processor/{node}/{key}/events",
            "result": format!("/v1/jobs/{}/keys/{{key}}/result", job.name),
            "metrics": format!("/v1/jobs/{}/metrics", job.name),
            "changes": format!("/v1/jobs/{}/changes", job.name),
            "worker": "/v1/{worker}/{node}/{key}",
            "aggregator": "/v1/aggregators/{node}",
            "metric": "/v1/metrics/{node}",
        },
        "result_worker": {"kind": job.plan.result.worker_kind().as_str(), "node": job.plan.result},
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct JobName {
    name: Option<String>,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    changes: bool,
}

/// The name of a job given both as `?name=` and in a JSON body: either, or
/// both when they agree.
fn job_name(parameter: Option<String>, body: Option<String>) -> Result<Option<String>, ApiError> {
    match (parameter, body) {
        (Some(p), Some(b)) if p != b => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name_mismatch",
            format!(
                "the `name` parameter says `{p}` but the JSON body's `name` says `{b}`: give one, or the same in both"
            ),
        )),
        (p, b) => Ok(b.or(p)),
    }
}

/// The body is `{"name", "query"}`, or the DSL itself (any body that is not a
/// JSON object) with the name in `?name=`.
pub(super) async fn submit_job(
    State(state): State<Arc<AppState>>,
    Query(named): Query<JobName>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let is_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let request: JobRequest = if is_json {
        let request: JobRequest = body_json(Ok(body))?;
        JobRequest {
            name: job_name(named.name, request.name)?,
            ..request
        }
    } else {
        let query = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the query is not UTF-8"))?;
        JobRequest {
            name: named.name,
            query,
            strict: named.strict,
            changes: named.changes,
        }
    };
    // Check before queueing, so a bad query never waits behind ingestion.
    let parsed = match timeline::dsl::parse_query(&request.query) {
        Ok(parsed) => parsed,
        Err(e) => return Err(submit_error(&request.query, SubmitError::Query(e))),
    };
    // After the query's check: its errors say more than a missing name.
    if request.name.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_name",
            "the job has no name: give the `name` parameter (POST /v1/jobs?name=NAME with the query as \
             the body) or a JSON body {\"name\": ..., \"query\": ...}",
        ));
    }
    if request.strict || named.strict {
        let warnings = {
            let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
            let name = parsed.stream.name();
            let spec = engine
                .registry()
                .stream(name)
                .cloned()
                .unwrap_or_else(|| timeline::StreamSpec::new(name, &engine.registry().default_stream().key));
            let columns = engine
                .stream_id(name)
                .map(|s| engine.columns(s).clone())
                .unwrap_or_default();
            timeline::dsl::warnings(&request.query, &parsed, &spec, &columns)
        };
        if !warnings.is_empty() {
            let list: Vec<Json_> = warnings.iter().map(|w| warning_json(&request.query, w)).collect();
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "warnings",
                format!(
                    "the query has {} warning(s) and `strict` is set: {}",
                    list.len(),
                    warnings[0]
                ),
            )
            .with(json!({ "warnings": list })));
        }
    }
    let (reply, response) = oneshot::channel();
    send(
        &state,
        Command::Submit {
            name: request.name,
            query: request.query,
            changes: request.changes || named.changes,
            reply,
        },
    )
    .await?;
    let (submitted, _) = response.await.map_err(ApiError::internal)??;
    let created = matches!(submitted, Submitted::Created(_));
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let changes = records_changes(&state, &submitted.job().name);
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Ok((status, Json(job_view(&engine, submitted.job(), created, changes))).into_response())
}

pub(super) async fn list_jobs(State(state): State<Arc<AppState>>) -> Json<JobsView> {
    let recording: std::collections::BTreeSet<String> = state
        .log
        .jobs()
        .map(|jobs| jobs.into_iter().filter(|j| j.changes).map(|j| j.name).collect())
        .unwrap_or_default();
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Json(JobsView {
        jobs: engine
            .registry()
            .jobs()
            .map(|j| JobSummary::new(&j.name, &j.query, &j.plan).with_changes(recording.contains(&j.name)))
            .collect(),
    })
}

pub(super) async fn show_job(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let changes = records_changes(&state, &job);
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(job_view(&engine, engine.job(&job)?, false, changes)))
}

/// Whether stored job `name` records its changes.
fn records_changes(state: &AppState, name: &str) -> bool {
    state.log.job(name).ok().flatten().is_some_and(|j| j.changes)
}

pub(super) async fn delete_job(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (reply, response) = oneshot::channel();
    send(&state, Command::Delete { name: job, reply }).await?;
    response.await.map_err(ApiError::internal)??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(super) struct KeysQuery {
    after: Option<String>,
    limit: Option<usize>,
    /// Only the keys that contain this text, ignoring case.
    contains: Option<String>,
}

pub(super) async fn job_keys(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(q): Query<KeysQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let stream = engine.job_stream(&job)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let keys = engine.keys_containing(stream, q.after.as_deref(), q.contains.as_deref(), limit);
    let next = (keys.len() == limit).then(|| keys.last().cloned()).flatten();
    Ok(Json(json!({"job": job, "keys": keys, "next_after": next})))
}

#[derive(Debug, Deserialize)]
pub(super) struct ResultsQuery {
    after: Option<String>,
    limit: Option<usize>,
    t: Option<String>,
    output: Option<String>,
}

/// The job's (per-key) result for many keys at once, sorted by key and paged
/// like `/keys`; `t` as for one key (`end`: each key's latest event time).
pub(super) async fn job_results(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> Result<Json<Json_>, ApiError> {
    let at = match q.t.as_deref() {
        None | Some("end") => None,
        Some(text) => Some(parse_time("t", text)?),
    };
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let node = per_key_node(&engine, &job, q.output.as_deref())?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let keys = engine.keys(engine.job_stream(&job)?, q.after.as_deref(), limit);
    let mut results = Vec::with_capacity(keys.len());
    for key in &keys {
        let out = engine.output(&node, key)?;
        let value = at.or(out.latest).and_then(|t| out.value_at(t));
        results.push(json!({"key": key, "value": value}));
    }
    let next = (keys.len() == limit).then(|| keys.last().cloned()).flatten();
    Ok(Json(
        json!({"job": job, "node": node, "results": results, "next_after": next}),
    ))
}

/// The node of a job's per-key output: the one named `output`, else the
/// job's result if it is per key, else its last per-key output.
pub(super) fn per_key_node(engine: &Engine, job: &str, output: Option<&str>) -> Result<NodeId, ApiError> {
    let plan = &engine.job(job)?.plan;
    let per_key = |o: &&timeline::plan::PlanOutput| o.worker.is_per_key();
    if let Some(name) = output {
        return match plan.output(name) {
            Some(o) if per_key(&o) => Ok(o.node.clone()),
            Some(o) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "wrong_kind",
                format!(
                    "output `{name}` of job `{job}` is computed by {} workers, not per key; read /v1/jobs/{job}/metrics/{name}",
                    o.worker.as_str()
                ),
            )),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_output",
                format!("job `{job}` has no output named `{name}`"),
            )),
        };
    }
    if plan.outputs.is_empty() || plan.outputs.iter().any(|o| o.node == plan.result && per_key(&o)) {
        return Ok(plan.result.clone());
    }
    plan.outputs
        .iter()
        .rev()
        .find(per_key)
        .map(|o| o.node.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "wrong_kind",
                format!("job `{job}` computes aggregates, not a result per key; read /v1/jobs/{job}/metrics"),
            )
        })
}

pub(super) async fn job_result(
    State(state): State<Arc<AppState>>,
    Path((job, key)): Path<(String, String)>,
    Query(q): Query<AtQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let node = per_key_node(&engine, &job, q.output.as_deref())?;
    let mut body = result_json(&engine, &node, &key, q.t.as_deref())?;
    body["job"] = json!(job);
    Ok(Json(body))
}

pub(super) async fn job_timeline(
    State(state): State<Arc<AppState>>,
    Path((job, key)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let node = per_key_node(&engine, &job, q.output.as_deref())?;
    Ok(Json(timeline_json(&engine, &node, &key, &q)?))
}

pub(super) fn group_rows(values: &crate::engine::GroupValues, metric: bool) -> Vec<Json_> {
    values
        .groups
        .iter()
        .map(|row| {
            if metric {
                json!({"group": row.group, "keys": row.keys, "value": row.values.first().and_then(|(_, v)| v.clone())})
            } else {
                let fields: serde_json::Map<String, Json_> =
                    row.values.iter().map(|(f, v)| (f.clone(), json!(v))).collect();
                json!({"group": row.group, "keys": row.keys, "values": fields})
            }
        })
        .collect()
}

/// One output of a job at `t`: an aggregate's functions or a metric's value
/// per group; a per-key output points at its route.
pub(super) fn output_json(
    engine: &Engine,
    job: &str,
    output: &timeline::plan::PlanOutput,
    t: Option<Time>,
    group: Option<&str>,
) -> Result<Json_, ApiError> {
    let mut body = json!({
        "name": output.name,
        "node": output.node,
        "worker": output.worker.as_str(),
        "group_by": output.group_by,
    });
    match output.worker {
        WorkerKind::Aggregator => {
            let read = engine.aggregate(&output.node, t, &output.functions, group)?;
            body["t"] = json!(read.t);
            body["groups"] = json!(group_rows(&read, false));
        }
        WorkerKind::Metric => {
            let read = engine.metric(&output.node, t, group)?;
            body["t"] = json!(read.t);
            body["groups"] = json!(group_rows(&read, true));
        }
        _ => {
            body["per_key"] = json!(format!("/v1/jobs/{job}/keys/{{key}}/result?output={}", output.name));
        }
    }
    Ok(body)
}

pub(super) async fn job_metrics(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(q): Query<GroupQuery>,
) -> Result<Json<Json_>, ApiError> {
    let t = at(&q)?;
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let plan = &engine.job(&job)?.plan;
    let outputs = plan
        .outputs
        .iter()
        .map(|o| output_json(&engine, &job, o, t, q.group.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(
        json!({"job": job, "t": t.or(engine.latest(engine.job_stream(&job)?)), "outputs": outputs}),
    ))
}

pub(super) async fn job_metric(
    State(state): State<Arc<AppState>>,
    Path((job, name)): Path<(String, String)>,
    Query(q): Query<GroupQuery>,
) -> Result<Json<Json_>, ApiError> {
    let t = at(&q)?;
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let output = engine.job(&job)?.plan.output(&name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_output",
            format!("job `{job}` has no output named `{name}`"),
        )
    })?;
    let mut body = output_json(&engine, &job, &output, t, q.group.as_deref())?;
    body["job"] = json!(job);
    Ok(Json(body))
}
