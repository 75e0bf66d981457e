//! `timeline serve`: the embedded local runtime over HTTP.
//!
//! [`serve`] recovers the engine ([`crate::durable`]), starts the writer and
//! serves the routes: jobs ([`jobs`]), reads of any worker ([`reads`]) and
//! posting events ([`ingest`]), behind the token check, with errors as JSON
//! ([`ApiError`]).
//!
//! One process runs every worker of every job in memory ([`Engine`]); a single
//! writer thread makes each change durable ([`Store`]) before it is applied and
//! acknowledged, batching concurrent writes into one fsync. Reads take a shared
//! lock and compute derived workers on demand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use timeline::registry::{SubmitError, Submitted};
use timeline::{AggFn, Event, NodeId, Time, WorkerKind};
use tokio::sync::{mpsc, oneshot};

use timeline_api::views::{DescriptionView, JobSummary, JobsView, ResultView, TimelineView};

use crate::body::{ParsedBody, Rejected, parse_body_at};
use crate::durable::{self, Command, DurableError, Ingest, RetentionPolicy, key_deliveries};
use crate::engine::{Engine, ReadError, StreamId, StreamInfo, Target};
use crate::metrics::Metrics;
use crate::store::{LogHeader, LogReader, StorageStatus, Store, encode_record};
use timeline::StreamSpec;
use timeline::stream::StreamRef;

mod changes;
mod conn;
mod extract;
mod guard;
mod ingest;
mod jobs;
mod json;
mod live;
mod reads;
mod streams;

use changes::*;
pub use conn::Connections;
use extract::{Path, Query};
pub use guard::Access;
use ingest::*;
use jobs::*;
use json::Json;
use live::*;
use reads::*;
use streams::*;

/// Settings of `timeline serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where jobs and the event log live.
    pub data_dir: PathBuf,
    /// Bearer token required on every route but health, if set.
    pub token: Option<String>,
    /// The field naming an event's key.
    pub key_field: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most events accepted in one request.
    pub max_batch_events: usize,
    /// Hosts and origins allowed besides the server's own.
    pub access: Access,
    /// Deadlines and limits of client connections.
    pub connections: Connections,
    /// When to snapshot the workers' state.
    pub snapshots: crate::snapshot::SnapshotPolicy,
    /// How long events are kept.
    pub retention: RetentionPolicy,
}

impl ServeConfig {
    /// A server on `listen` keeping its data in `data_dir`, with every other
    /// setting at `timeline serve`'s default.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServeConfig {
            listen,
            data_dir,
            token: None,
            key_field: timeline::event::DEFAULT_KEY_FIELD.to_string(),
            max_body_bytes: 64 << 20,
            max_batch_events: 1_000_000,
            access: Access::default(),
            connections: Connections::default(),
            snapshots: crate::snapshot::SnapshotPolicy::default(),
            retention: RetentionPolicy::default(),
        }
    }
}

/// The OpenAPI document of the HTTP API.
pub const OPENAPI: &str = include_str!("../openapi.json");

struct AppState {
    engine: Arc<RwLock<Engine>>,
    /// The number of changes stored: bumped as changes are recorded.
    changes: tokio::sync::watch::Receiver<u64>,
    /// Permits for the event streams of changes open at once.
    change_streams: Arc<tokio::sync::Semaphore>,
    /// Becomes true when the server begins to shut down (event streams end).
    stopping: tokio::sync::watch::Receiver<bool>,
    log: LogReader,
    writer: mpsc::Sender<Command>,
    config: ServeConfig,
    metrics: Arc<Metrics>,
    storage: StorageStatus,
}

/// An error answered as JSON: `{"error": {"code", "message", ...}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Json_>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    fn with(mut self, details: Json_) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds `help`, if there is any (never `"help": null`).
    fn with_help(mut self, help: Option<String>) -> Self {
        if let Some(help) = help {
            let details = self.details.get_or_insert_with(|| json!({}));
            details["help"] = json!(help);
        }
        self
    }

    fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {err}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some(Json_::Object(details)), Some(obj)) = (self.details, error.as_object_mut()) {
            obj.extend(details);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<DurableError> for ApiError {
    fn from(e: DurableError) -> Self {
        match e {
            DurableError::Storage(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", m),
            DurableError::Submit { query, error } => submit_error(&query, error),
            DurableError::Read(e) => e.into(),
            DurableError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let code = match e {
            ReadError::UnknownJob(_) => "unknown_job",
            ReadError::UnknownNode(_) => "unknown_worker",
            ReadError::UnknownKey(_) => "unknown_key",
            ReadError::UnknownStream(name) => return unknown_stream(&name),
            ReadError::WrongKind(..) => {
                return ApiError::new(StatusCode::BAD_REQUEST, "wrong_kind", e.to_string());
            }
        };
        ApiError::new(StatusCode::NOT_FOUND, code, e.to_string())
    }
}

fn submit_error(query: &str, e: SubmitError) -> ApiError {
    match e {
        SubmitError::Query(dsl) => ApiError::new(
            StatusCode::BAD_REQUEST,
            // query_too_large, query_too_deep or query_too_complex for a limit.
            dsl.limit.map_or("bad_query", |limit| limit.code()),
            format!("invalid query: {dsl}"),
        )
        .with(json!({
            "line": dsl.line,
            "column": dsl.column,
            "diagnostic": dsl.render(query, "query"),
        }))
        .with_help(dsl.help),
        SubmitError::Name(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_name", e.to_string()),
        SubmitError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        SubmitError::Stream(_) => ApiError::new(StatusCode::CONFLICT, "stream_conflict", e.to_string()),
    }
}

/// Opens the store, recovers every job and worker, and serves until Ctrl-C or
/// SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<()> {
    let mut store = Store::open(&config.data_dir)?;
    let (engine, recorder) = durable::recover_with_changes(
        &mut store,
        StreamSpec::new(timeline::stream::DEFAULT_STREAM, &config.key_field),
    )?;
    let changes = recorder.feed();
    let metrics = Arc::new(Metrics::new());
    let log = store.reader();
    let storage = store.status();
    let engine = Arc::new(RwLock::new(engine));
    if let Some(keep) = config.retention.keep {
        // Keys that fell behind while the server was down, or were forgotten
        // in the engine but not yet in the log when it stopped.
        durable::forget_expired(&mut store, &engine, &metrics, keep)?;
    }
    let (writer, writer_thread) = durable::spawn_writer(
        store,
        engine.clone(),
        metrics.clone(),
        config.snapshots,
        config.retention,
        recorder,
    )?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        engine,
        changes,
        stopping,
        change_streams: Arc::new(tokio::sync::Semaphore::new(changes::MAX_STREAMS)),
        log,
        writer,
        config: config.clone(),
        metrics,
        storage,
    });
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!("serving on http://{}", listener.local_addr()?);
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    conn::run(listener, app, config.connections.clone(), shutdown).await?;
    drop(writer_thread);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

fn router(state: Arc<AppState>) -> Router {
    let mut api = Router::new()
        .route("/v1/jobs", post(submit_job).get(list_jobs))
        .route("/v1/jobs/{job}", get(show_job).delete(delete_job))
        .route("/v1/jobs/{job}/keys", get(job_keys))
        .route("/v1/jobs/{job}/changes", get(job_changes))
        .route("/v1/jobs/{job}/results", get(job_results))
        .route("/v1/jobs/{job}/keys/{key}/result", get(job_result))
        .route("/v1/jobs/{job}/keys/{key}/timeline", get(job_timeline))
        .route("/v1/jobs/{job}/metrics", get(job_metrics))
        .route("/v1/jobs/{job}/metrics/{name}", get(job_metric))
        .route("/v1/jobs/{job}/stats", get(job_stats))
        .route("/v1/jobs/{job}/series", get(job_series))
        .route("/v1/aggregators/{node}", get(aggregator_read))
        .route("/v1/metrics/{node}", get(metric_read))
        .route("/v1/workers", get(worker_counts))
        .route("/v1/aggregate-feed/{node}/{key}/refresh", post(refresh_contributor))
        .route("/v1/changes-feed/{job}/{key}/refresh", post(refresh_key_watch))
        .route("/v1/changes-feed/{job}/refresh", post(refresh_job_watch))
        .route("/v1/events", post(post_events))
        .route("/v1/keys/{key}/events", post(post_key_events).get(key_events))
        .route("/v1/streams", get(list_streams))
        .route("/v1/streams/{stream}", get(show_stream).put(declare_stream))
        .route("/v1/streams/{stream}/events", post(post_stream_events))
        .route(
            "/v1/streams/{stream}/keys/{key}/events",
            post(post_stream_key_events).get(stream_key_events),
        )
        .route("/v1/event-processor/{node}/{key}/events", post(post_worker_events))
        .route("/metrics", get(metrics_text));
    for kind in ["event-processor", "timeline-processor", "workers"] {
        api = api
            .route(&format!("/v1/{kind}/{{node}}/{{key}}"), get(worker_describe))
            .route(&format!("/v1/{kind}/{{node}}/{{key}}/result"), get(worker_result))
            .route(&format!("/v1/{kind}/{{node}}/{{key}}/timeline"), get(worker_timeline));
    }
    let limit = state.config.max_body_bytes;
    api.route_layer(middleware::from_fn_with_state(state.clone(), conn::read_body))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route("/v1/health", get(health))
        .merge(crate::dashboard::routes())
        .route(
            "/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .with_state(state)
}

async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Constant time: how long the comparison takes says nothing of how
        // much of the token was right.
        let matches = given.is_some_and(|g| bool::from(subtle::ConstantTimeEq::ct_eq(g.as_bytes(), token.as_bytes())));
        if !matches {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Health: 503 and `degraded` with the storage error while writes fail.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let storage = state.storage.error();
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let status = match storage {
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::OK,
    };
    let mut body = json!({
        "status": if storage.is_some() { "degraded" } else { "ok" },
        "runtime": "local",
        "key_field": state.config.key_field,
        "jobs": engine.registry().jobs().count(),
        "keys": engine.key_count(),
        "events": engine.event_count(),
        "leaf_workers_per_key": engine.leaf_count(),
    });
    if let Some(error) = storage {
        body["storage"] = json!(error);
    }
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    {
        let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
        state.metrics.jobs.set(engine.registry().jobs().count() as i64);
        state.metrics.keys.set(engine.key_count() as i64);
        state.metrics.state_bytes.set(engine.state_bytes() as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

fn body_json<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(body_error)?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid JSON body: {e}"),
        )
    })
}

fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "bad_request"
    };
    ApiError::new(status, code, rejection.body_text())
}

async fn send(state: &AppState, command: Command) -> Result<(), ApiError> {
    state.writer.send(command).await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is stopping",
        )
    })
}

#[derive(Debug, Deserialize)]
struct AtQuery {
    t: Option<String>,
    /// A per-key output of the job, by name.
    output: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GroupQuery {
    t: Option<String>,
    group: Option<String>,
    /// Aggregate functions, comma-separated (direct aggregator reads).
    #[serde(rename = "fn")]
    functions: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    /// A per-key output of the job, by name.
    output: Option<String>,
}

/// Reads a time parameter: milliseconds or RFC 3339.
fn parse_time(name: &str, text: &str) -> Result<Time, ApiError> {
    timeline_api::views::parse_time(text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("`{name}`: {e}")))
}

fn node_id(text: &str) -> Result<NodeId, ApiError> {
    NodeId::parse(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_worker",
            format!("`{text}` is not a node id (like has_existed-0123456789abcdef)"),
        )
    })
}

fn at(q: &GroupQuery) -> Result<Option<Time>, ApiError> {
    match q.t.as_deref() {
        None | Some("end") => Ok(None),
        Some(text) => parse_time("t", text).map(Some),
    }
}

/// The functions `fn` asks for, each with the name it was asked by (`median`
/// is answered as `median`, not `p50`); none: [`AggFn::DEFAULTS`].
fn aggregate_functions(text: Option<&str>) -> Result<Vec<(String, AggFn)>, ApiError> {
    let text = text.unwrap_or("");
    let functions = AggFn::parse_list(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{e}; `fn` takes count, count_true, sum, avg (or mean), min, max, median, p1 ... p99"),
        )
    })?;
    let names: Vec<String> = if text.trim().is_empty() {
        functions.iter().map(AggFn::to_string).collect()
    } else {
        text.split(',').map(|f| f.trim().to_string()).collect()
    };
    Ok(names.into_iter().zip(functions).collect())
}

#[cfg(test)]
mod tests {
    /// Every route the router serves is in the OpenAPI document.
    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let source = concat!(
            include_str!("mod.rs"),
            include_str!("jobs.rs"),
            include_str!("reads.rs"),
            include_str!("ingest.rs")
        );
        let mut routes: Vec<String> = source
            .split(".route(\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().to_string())
            .filter(|r| r.starts_with('/'))
            .collect();
        for kind in ["event-processor", "timeline-processor", "workers"] {
            for suffix in ["", "/result", "/timeline"] {
                routes.push(format!("/v1/{kind}/{{node}}/{{key}}{suffix}"));
            }
        }
        assert!(routes.len() > 20, "{routes:?}");
        for route in routes {
            assert!(doc["paths"][&route].is_object(), "{route} is not in openapi.json");
        }
    }

    /// The OpenAPI document's schemas have exactly the fields of the API
    /// views both runtimes serve (`timeline-api`): a field added to a view
    /// and not documented, or documented and gone, fails here.
    #[test]
    fn openapi_schemas_match_the_api_views() {
        use timeline_api::views::{
            DescriptionView, JobSummary, JobsView, OutputView, ResultView, SpanView, StreamView, TimelineView,
        };
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let span = SpanView {
            start: 0,
            end: Some(5),
            value: None,
            rising: false,
            falling: true,
        };
        let output = OutputView {
            name: "rate".into(),
            node: "metric-0000000000000000".into(),
            worker: "metric".into(),
            functions: vec!["sum".into()],
            group_by: Some("cdn".into()),
        };
        let summary = JobSummary {
            name: "j".into(),
            query: "q".into(),
            result: "r".into(),
            outputs: vec![output.clone()],
            leaves: vec![],
            aggregates: vec![],
            nodes: 1,
            stream: StreamView::default(),
            changes: true,
        };
        let change = timeline_api::views::ChangeView {
            id: 1,
            output: "alert".into(),
            key: Some("k".into()),
            group: Some("g".into()),
            function: Some("count".into()),
            from: 1,
            until: Some(2),
            old: None,
            new: None,
            old_trend: Some("rising".into()),
            new_trend: Some("falling".into()),
            records: Some(vec![1, 1]),
        };
        let views: Vec<(&str, serde_json::Value)> = vec![
            ("Change", serde_json::to_value(&change).unwrap()),
            (
                "Changes",
                serde_json::to_value(timeline_api::views::ChangesView {
                    job: "j".into(),
                    changes: vec![change.clone()],
                    next: 1,
                    last: 1,
                })
                .unwrap(),
            ),
            (
                "Result",
                serde_json::to_value(ResultView {
                    node: "n".into(),
                    key: "k".into(),
                    t: Some(1),
                    value: None,
                    latest: Some(1),
                })
                .unwrap(),
            ),
            ("Span", serde_json::to_value(&span).unwrap()),
            (
                "TimelineResponse",
                serde_json::to_value(TimelineView {
                    node: "n".into(),
                    key: "k".into(),
                    origin: Some(0),
                    latest: Some(1),
                    spans: vec![span.clone()],
                })
                .unwrap(),
            ),
            (
                "WorkerDescription",
                serde_json::to_value(DescriptionView {
                    node: "n".into(),
                    kind: "event-processor".into(),
                    operator: "has_existed".into(),
                    expression: "has_existed(a == 1)".into(),
                    children: vec![],
                    events: Some(1),
                    origin: Some(0),
                    latest: Some(1),
                    spans: 1,
                })
                .unwrap(),
            ),
            ("JobOutput", serde_json::to_value(&output).unwrap()),
            ("JobSummary", serde_json::to_value(&summary).unwrap()),
            ("StreamFields", serde_json::to_value(StreamView::default()).unwrap()),
            ("Jobs", serde_json::to_value(JobsView { jobs: vec![summary] }).unwrap()),
        ];
        for (schema, value) in views {
            let documented: std::collections::BTreeSet<&str> = doc["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("no schema {schema}"))
                .keys()
                .map(String::as_str)
                .collect();
            let served: std::collections::BTreeSet<&str> =
                value.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(documented, served, "schema {schema}");
        }
    }
}
