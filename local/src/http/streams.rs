//! Streams: list them with their fields, columns and counts, declare one,
//! and post events to one.

use super::*;

/// 404 for a stream no job reads and none was declared.
pub(super) fn unknown_stream(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_stream",
        format!("no stream named `{name}`"),
    )
    .with(json!({
        "help": format!("a job whose query starts with `from {name} key <field>;` creates it, or PUT /v1/streams/{name}")
    }))
}

/// A stream as JSON: its fields, counts and, when asked, its columns.
fn stream_json(info: &StreamInfo, columns: bool) -> Json_ {
    let mut body = json!({
        "name": info.spec.name,
        "key": info.spec.key,
        "time": info.spec.time,
        "id": info.spec.id,
        "events": info.events,
        "keys": info.keys,
        "latest": info.latest,
        "jobs": info.jobs,
        "columns": info.columns.sorted().len(),
    });
    if columns {
        body["columns"] = json!(info.columns.sorted());
    }
    body
}

pub(super) async fn list_streams(State(state): State<Arc<AppState>>) -> Json<Json_> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let streams: Vec<Json_> = engine.streams().iter().map(|s| stream_json(s, false)).collect();
    Json(json!({ "streams": streams }))
}

pub(super) async fn show_stream(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let id = engine.stream_id(&stream).ok_or_else(|| unknown_stream(&stream))?;
    Ok(Json(stream_json(&engine.stream_info(id), true)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamRequest {
    key: Option<String>,
    time: Option<String>,
    id: Option<String>,
}

/// Declares a stream, as a job's `from` header would: 201 for a new one,
/// 200 for a known one whose fields agree, 409 for one whose fields differ.
/// Streams declared this way live as long as the events posted to them.
pub(super) async fn declare_stream(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let request: StreamRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StreamRequest::default()
    } else {
        body_json(Ok(body))?
    };
    if stream.is_empty() || stream.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_name",
            "a stream name has 1 to 64 characters",
        ));
    }
    let wanted = StreamRef {
        name: Some(stream.as_str().into()),
        key: request.key.map(Into::into),
        time: request.time.map(Into::into),
        id: request.id.map(Into::into),
    };
    let mut engine = state.engine.write().unwrap_or_else(|p| p.into_inner());
    let known = engine.stream_id(&stream).is_some();
    let id = engine
        .declare_stream(&wanted)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "stream_conflict", e.to_string()))?;
    let status = if known { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(stream_json(&engine.stream_info(id), true))).into_response())
}
