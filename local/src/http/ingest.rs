//! Posting events: batches of any keys, of one key, or of one leaf worker.

use super::*;

/// The stream a batch is posted to: by name (none: the default stream), or
/// the stream of the leaf it is posted to.
fn resolve_stream(
    state: &AppState,
    stream: Option<&str>,
    leaf: Option<&NodeId>,
) -> Result<(StreamId, StreamSpec), ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let id = match (leaf, stream) {
        (Some(leaf), _) => engine.node_stream(leaf)?,
        (None, name) => {
            let name = name.unwrap_or(timeline::stream::DEFAULT_STREAM);
            engine.stream_id(name).ok_or_else(|| unknown_stream(name))?
        }
    };
    Ok((id, engine.stream_spec(id).clone()))
}

/// When a batch lacks its stream's key field but its first event carries
/// another stream's: where the events were likely meant to go.
fn other_streams_help(state: &AppState, spec: &StreamSpec, body: &[u8]) -> Option<String> {
    let first = body
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))?;
    let event: serde_json::Map<String, Json_> = serde_json::from_slice(first).ok()?;
    if event.contains_key(spec.key.as_str()) {
        return None;
    }
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let other = engine
        .streams()
        .into_iter()
        .find(|s| s.spec.name != spec.name && event.contains_key(s.spec.key.as_str()))?;
    Some(format!(
        "stream `{}` is keyed by `{}`, which these events lack; they carry `{}`, the key field of stream `{}`: \
         post them to /v1/streams/{}/events",
        spec.name, spec.key, other.spec.key, other.spec.name, other.spec.name
    ))
}

pub(super) async fn ingest(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    stream: Option<String>,
    key: Option<String>,
    leaf: Option<NodeId>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let (stream_id, spec) = resolve_stream(&state, stream.as_deref(), leaf.as_ref())?;
    let mut parser = spec.parser();
    if let Some(key) = &key {
        parser = parser.with_default_key(key);
    }
    let url_key = key.clone();
    let body_for_parse = body.clone();
    let ParsedBody {
        events,
        positions,
        mut rejected,
    } = tokio::task::spawn_blocking(move || parse_body_at(&parser, &body_for_parse, url_key.as_deref()))
        .await
        .map_err(ApiError::internal)?;
    state.metrics.events_rejected.inc_by(rejected.len() as u64);
    if events.len() + rejected.len() > state.config.max_batch_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{} events in one batch; at most {} are accepted",
                events.len() + rejected.len(),
                state.config.max_batch_events
            ),
        ));
    }
    if events.is_empty() {
        let status = if rejected.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        if status == StatusCode::OK {
            return Ok(Json(json!({"accepted": 0, "rejected": []})).into_response());
        }
        let mut details = json!({"rejected": rejected});
        if let Some(help) = other_streams_help(&state, &spec, &body) {
            details["help"] = json!(help);
        }
        return Err(ApiError::new(status, "bad_events", "no event of the batch is valid").with(details));
    }
    let header = LogHeader {
        leaf: leaf.as_ref().map(|l| l.to_string()),
        key,
        key_field: spec.key.to_string(),
        stream: (!spec.is_default_stream()).then(|| spec.clone()),
        restart: Vec::new(),
    };
    let target = match leaf {
        Some(id) => Target::Leaf(id),
        None => Target::AllLeaves,
    };
    let good = events.len();
    let (reply, response) = oneshot::channel();
    let ingest = Ingest::new(encode_record(&header, &body), events, stream_id, target, reply);
    send(&state, Command::Ingest(ingest)).await?;
    let refused = response.await.map_err(ApiError::internal)??;
    let accepted = good - refused.events.len();
    if let Some(horizon) = refused.horizon {
        state.metrics.events_rejected.inc_by(refused.events.len() as u64);
        let keep = std::time::Duration::from_millis(state.config.retention.keep.unwrap_or_default().max(0) as u64);
        for &(i, time) in &refused.events {
            let (index, line) = positions[i];
            rejected.push(Rejected {
                index,
                line,
                error: format!(
                    "event time {time} is older than the retention horizon {horizon} of stream `{}` (its newest \
                     event time minus --retention {}): events that old are not kept",
                    spec.name,
                    humantime::format_duration(keep),
                ),
            });
        }
        rejected.sort_by_key(|r| r.index);
    }
    state.metrics.events_accepted.inc_by(accepted as u64);
    state.metrics.batches.inc();
    if accepted == 0 && !rejected.is_empty() {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "bad_events", "no event of the batch is valid")
                .with(json!({"rejected": rejected})),
        );
    }
    Ok(Json(json!({"accepted": accepted, "rejected": rejected})).into_response())
}

pub(super) async fn post_events(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(state, body, None, None, None).await
}

pub(super) async fn post_stream_events(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(state, body, Some(stream), None, None).await
}

pub(super) async fn post_stream_key_events(
    State(state): State<Arc<AppState>>,
    Path((stream, key)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(state, body, Some(stream), Some(key), None).await
}

pub(super) async fn post_key_events(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(state, body, None, Some(key), None).await
}

pub(super) async fn post_worker_events(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let node = node_id(&node)?;
    {
        let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
        match engine.registry().node(&node) {
            Some(n) if n.worker == WorkerKind::EventProcessor => {}
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "not_a_leaf",
                    format!("`{node}` is a timeline processor; events go to event processors"),
                ));
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_worker",
                    format!("no job runs node `{node}`"),
                ));
            }
        }
    }
    ingest(state, body, None, Some(key), Some(node)).await
}
