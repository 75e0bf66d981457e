//! Reads of any worker, aggregator or metric by node, and a key's stored
//! events.

use super::*;

pub(super) fn result_json(engine: &Engine, node: &NodeId, key: &str, t: Option<&str>) -> Result<Json_, ApiError> {
    let out = engine.output(node, key)?;
    let at = match t {
        None | Some("end") => None,
        Some(text) => Some(parse_time("t", text)?),
    };
    let view = ResultView::at(node.as_str(), key, &out, at);
    serde_json::to_value(view).map_err(ApiError::internal)
}

pub(super) fn timeline_json(engine: &Engine, node: &NodeId, key: &str, range: &RangeQuery) -> Result<Json_, ApiError> {
    let from = range.from.as_deref().map(|t| parse_time("from", t)).transpose()?;
    let to = range.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
    let out = engine.output(node, key)?;
    let view = TimelineView::new(node.as_str(), key, &out, from, to);
    serde_json::to_value(view).map_err(ApiError::internal)
}

pub(super) async fn aggregator_read(
    State(state): State<Arc<AppState>>,
    Path(node): Path<String>,
    Query(q): Query<GroupQuery>,
) -> Result<Json<Json_>, ApiError> {
    let t = at(&q)?;
    let asked = aggregate_functions(q.functions.as_deref())?;
    let functions: Vec<AggFn> = asked.iter().map(|(_, f)| *f).collect();
    let node = node_id(&node)?;
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let mut read = engine.aggregate(&node, t, &functions, q.group.as_deref())?;
    // Each value under the name it was asked by.
    for row in &mut read.groups {
        for ((name, _), (asked, _)) in row.values.iter_mut().zip(&asked) {
            name.clone_from(asked);
        }
    }
    let definition = engine.registry().node(&node).map(|n| n.expression.clone());
    Ok(Json(json!({
        "node": node,
        "expression": definition,
        "t": read.t,
        "groups": group_rows(&read, false),
    })))
}

pub(super) async fn metric_read(
    State(state): State<Arc<AppState>>,
    Path(node): Path<String>,
    Query(q): Query<GroupQuery>,
) -> Result<Json<Json_>, ApiError> {
    let t = at(&q)?;
    let node = node_id(&node)?;
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let read = engine.metric(&node, t, q.group.as_deref())?;
    let definition = engine.registry().node(&node).map(|n| n.expression.clone());
    Ok(Json(json!({
        "node": node,
        "expression": definition,
        "t": read.t,
        "groups": group_rows(&read, true),
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// A key's events as stored, in `[from, to)`, by time (a repeated event, or
/// one delivered to several leaves, once), at most `limit` (default 10000).
pub(super) async fn key_events(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Json_>, ApiError> {
    stored_events(state, timeline::stream::DEFAULT_STREAM.to_string(), key, q).await
}

pub(super) async fn stream_key_events(
    State(state): State<Arc<AppState>>,
    Path((stream, key)): Path<(String, String)>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Json_>, ApiError> {
    stored_events(state, stream, key, q).await
}

async fn stored_events(
    state: Arc<AppState>,
    stream: String,
    key: String,
    q: EventsQuery,
) -> Result<Json<Json_>, ApiError> {
    let from = q.from.as_deref().map(|t| parse_time("from", t)).transpose()?;
    let to = q.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    let (records, spec) = {
        let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
        let id = engine.stream_id(&stream).ok_or_else(|| unknown_stream(&stream))?;
        (engine.key_records(id, &key)?.to_vec(), engine.stream_spec(id).clone())
    };
    let log = state.log.clone();
    let wanted = key.clone();
    let (events, truncated) = tokio::task::spawn_blocking(move || -> Result<(Vec<Json_>, bool)> {
        let events = key_deliveries(&records, &wanted, |seq| log.get(seq))?
            .into_iter()
            .map(|(event, _)| event)
            .filter(|e| from.is_none_or(|f| e.time >= f) && to.is_none_or(|t| e.time < t));
        // By time, repeats side by side, then once each.
        let mut events: Vec<(Event, String)> = events
            .into_iter()
            .map(|e| {
                let text = e.to_json_with(&spec.key, &spec.time, &spec.id).to_string();
                (e, text)
            })
            .collect();
        events.sort_by(|a, b| (a.0.time, &a.1).cmp(&(b.0.time, &b.1)));
        events.dedup_by(|a, b| a.1 == b.1);
        let mut events: Vec<Event> = events.into_iter().map(|(e, _)| e).collect();
        let truncated = events.len() > limit;
        events.truncate(limit);
        Ok((
            events
                .iter()
                .map(|e| e.to_json_with(&spec.key, &spec.time, &spec.id))
                .collect(),
            truncated,
        ))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"stream": stream, "key": key, "events": events, "truncated": truncated}),
    ))
}

/// Golem's contributors push a key's contributions when the feeder calls
/// this; the local runtime keeps its aggregators current on every commit, so
/// it only answers which groups the key is in.
pub(super) async fn refresh_contributor(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    let node = node_id(&node)?;
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let groups = engine.key_groups(&node, &key)?;
    Ok(Json(json!({"node": node, "key": key, "sent": 0, "groups": groups})))
}

/// The local runtime records changes as it applies events: a key watcher's
/// refresh (what the feeder asks of Golem after a delivery) finds nothing
/// more to do.
pub(super) async fn refresh_key_watch(
    State(state): State<Arc<AppState>>,
    Path((job, key)): Path<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    state.engine.read().unwrap_or_else(|p| p.into_inner()).job(&job)?;
    let log = state.log.clone();
    let name = job.clone();
    let last = tokio::task::spawn_blocking(move || log.last_change(&name))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"job": job, "key": key, "changes": 0, "last": last})))
}

/// A job watcher's refresh (the feeder asks it of Golem after the
/// contributors of a delivery): nothing more to do here either.
pub(super) async fn refresh_job_watch(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    refresh_key_watch(State(state), Path((job, String::new()))).await
}

pub(super) async fn worker_counts(State(state): State<Arc<AppState>>) -> Json<Json_> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let c = engine.worker_counts();
    Json(json!({
        "event-processor": c.event_processors,
        "timeline-processor": c.timeline_processors,
        "aggregator": c.aggregators,
        "metric": c.metrics,
        "total": c.event_processors + c.timeline_processors + c.aggregators + c.metrics,
    }))
}

pub(super) async fn worker_describe(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let d = engine.describe(&node_id(&node)?, &key)?;
    Ok(Json(
        serde_json::to_value(DescriptionView::from(&d)).map_err(ApiError::internal)?,
    ))
}

pub(super) async fn worker_result(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
    Query(q): Query<AtQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(result_json(&engine, &node_id(&node)?, &key, q.t.as_deref())?))
}

pub(super) async fn worker_timeline(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(timeline_json(&engine, &node_id(&node)?, &key, &q)?))
}
