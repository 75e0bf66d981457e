//! Posting events: batches of any keys, of one key, or of one leaf worker.

use super::*;

pub(super) async fn ingest(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    key: Option<String>,
    leaf: Option<NodeId>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let key_field = state.config.key_field.clone();
    let mut parser = EventParser::new(&key_field);
    if let Some(key) = &key {
        parser = parser.with_default_key(key);
    }
    let url_key = key.clone();
    let body_for_parse = body.clone();
    let (events, rejected) =
        tokio::task::spawn_blocking(move || parse_body(&parser, &body_for_parse, url_key.as_deref()))
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
        return Err(
            ApiError::new(status, "bad_events", "no event of the batch is valid").with(json!({"rejected": rejected}))
        );
    }
    let header = LogHeader {
        leaf: leaf.as_ref().map(|l| l.to_string()),
        key,
        key_field,
    };
    let target = match leaf {
        Some(id) => Target::Leaf(id),
        None => Target::AllLeaves,
    };
    let accepted = events.len();
    let (reply, response) = oneshot::channel();
    let ingest = Ingest {
        record: encode_record(&header, &body),
        events,
        target,
        reply,
    };
    send(&state, Command::Ingest(ingest)).await?;
    response.await.map_err(ApiError::internal)??;
    state.metrics.events_accepted.inc_by(accepted as u64);
    state.metrics.batches.inc();
    Ok(Json(json!({"accepted": accepted, "rejected": rejected})).into_response())
}

pub(super) async fn post_events(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(state, body, None, None).await
}

pub(super) async fn post_key_events(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(state, body, Some(key), None).await
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
    ingest(state, body, Some(key), Some(node)).await
}
