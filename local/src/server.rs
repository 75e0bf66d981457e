//! `timeline serve`: the embedded local runtime over HTTP.
//!
//! One process runs every worker of every job in memory ([`Engine`]); a single
//! writer thread makes each change durable ([`Store`]) before it is applied and
//! acknowledged, batching concurrent writes into one fsync. Reads take a shared
//! lock and compute derived workers on demand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use timeline::registry::{SubmitError, Submitted};
use timeline::{AggFn, Event, EventError, EventParser, NodeId, Time, WorkerKind};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, ReadError, Target};
use crate::metrics::Metrics;
use crate::store::{LogHeader, LogReader, Store, StoredJob, decode_record, encode_record};

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
}

/// The OpenAPI document of the HTTP API.
pub const OPENAPI: &str = include_str!("openapi.json");

struct AppState {
    engine: Arc<RwLock<Engine>>,
    log: LogReader,
    writer: mpsc::Sender<Command>,
    config: ServeConfig,
    metrics: Arc<Metrics>,
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A batch waiting for its commit.
struct Ingest {
    record: Vec<u8>,
    events: Vec<Event>,
    target: Target,
    reply: Reply<()>,
}

enum Command {
    Ingest(Ingest),
    Submit {
        name: Option<String>,
        query: String,
        reply: Reply<(Submitted, usize)>,
    },
    Delete {
        name: String,
        reply: Reply<()>,
    },
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

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let code = match e {
            ReadError::UnknownJob(_) => "unknown_job",
            ReadError::UnknownNode(_) => "unknown_worker",
            ReadError::UnknownKey(_) => "unknown_key",
            ReadError::WrongKind(..) => {
                return ApiError::new(StatusCode::BAD_REQUEST, "wrong_kind", e.to_string());
            }
        };
        ApiError::new(StatusCode::NOT_FOUND, code, e.to_string())
    }
}

fn submit_error(query: &str, e: SubmitError) -> ApiError {
    match e {
        SubmitError::Query(dsl) => ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("invalid query: {dsl}"))
            .with(json!({
                "line": dsl.line,
                "column": dsl.column,
                "help": dsl.help,
                "diagnostic": dsl.render(query, "query"),
            })),
        SubmitError::Name(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_name", e.to_string()),
        SubmitError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
    }
}

/// Opens the store, recovers every job and worker, and serves until Ctrl-C or
/// SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<()> {
    let started = Instant::now();
    let store = Store::open(&config.data_dir)?;
    let mut engine = Engine::new();
    for job in store.jobs()? {
        if let Err(e) = engine.submit(Some(&job.name), &job.query) {
            tracing::warn!(job = job.name, "stored job no longer valid, skipped: {e}");
        }
    }
    let mut replayed = 0u64;
    store.replay(|seq, record| {
        replayed += apply_record(&mut engine, seq, record, None)?;
        Ok(())
    })?;
    engine.refresh_aggregates();
    tracing::info!(
        jobs = engine.registry().jobs().count(),
        keys = engine.key_count(),
        events = replayed,
        records = store.records(),
        "recovered in {:.2?}",
        started.elapsed()
    );

    let metrics = Arc::new(Metrics::new());
    let log = store.reader();
    let engine = Arc::new(RwLock::new(engine));
    let (writer, commands) = mpsc::channel(1024);
    let writer_thread = {
        let engine = engine.clone();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("timeline-writer".into())
            .spawn(move || write_loop(store, engine, metrics, commands))?
    };
    let state = Arc::new(AppState {
        engine,
        log,
        writer,
        config: config.clone(),
        metrics,
    });
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!("serving on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
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

/// The events of a log record.
fn record_events(record: &[u8]) -> Result<(LogHeader, Vec<Event>)> {
    let (header, body) = decode_record(record)?;
    let mut parser = EventParser::new(&header.key_field);
    if let Some(key) = &header.key {
        parser = parser.with_default_key(key);
    }
    let (events, _) = parse_body(&parser, body, header.key.as_deref());
    Ok((header, events))
}

/// Applies log record `seq` to the engine (to the `only` leaves of a new job
/// if given); returns the number of events.
fn apply_record(engine: &mut Engine, seq: u64, record: &[u8], only: Option<&[NodeId]>) -> Result<u64> {
    let (header, events) = record_events(record)?;
    engine.apply(&events, &header.target()?, only);
    if only.is_none() {
        engine.note_record(seq, &events);
    }
    Ok(events.len() as u64)
}

/// The writer: group commit, then apply, then acknowledge.
fn write_loop(
    mut store: Store,
    engine: Arc<RwLock<Engine>>,
    metrics: Arc<Metrics>,
    mut commands: mpsc::Receiver<Command>,
) {
    const GROUP_EVENTS: usize = 200_000;
    while let Some(first) = commands.blocking_recv() {
        let mut ingests = Vec::new();
        let mut pending = Some(first);
        let mut events_in_group = 0;
        // Collect ingests that are already queued into one commit; anything else
        // runs on its own, in order.
        while let Some(command) = pending.take() {
            match command {
                Command::Ingest(ingest) => {
                    events_in_group += ingest.events.len();
                    ingests.push(ingest);
                    if events_in_group < GROUP_EVENTS {
                        pending = commands.try_recv().ok();
                    }
                }
                other => {
                    commit_ingests(&mut store, &engine, &metrics, std::mem::take(&mut ingests));
                    run_admin(&mut store, &engine, other);
                    pending = commands.try_recv().ok();
                }
            }
        }
        commit_ingests(&mut store, &engine, &metrics, ingests);
    }
}

fn commit_ingests(store: &mut Store, engine: &RwLock<Engine>, metrics: &Metrics, ingests: Vec<Ingest>) {
    if ingests.is_empty() {
        return;
    }
    let started = Instant::now();
    let records: Vec<&[u8]> = ingests.iter().map(|i| i.record.as_slice()).collect();
    let result = store.append(&records);
    metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
    metrics.commits.inc();
    match result {
        Ok(first) => {
            let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
            for (seq, ingest) in (first..).zip(&ingests) {
                engine.apply(&ingest.events, &ingest.target, None);
                engine.note_record(seq, &ingest.events);
            }
            engine.refresh_aggregates();
            metrics.keys.set(engine.key_count() as i64);
            drop(engine);
            for ingest in ingests {
                let _ = ingest.reply.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!("cannot write the event log: {e:#}");
            for ingest in ingests {
                let _ = ingest.reply.send(Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    format!("events not stored: {e:#}"),
                )));
            }
        }
    }
}

fn run_admin(store: &mut Store, engine: &RwLock<Engine>, command: Command) {
    let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
    match command {
        Command::Submit { name, query, reply } => {
            let result = match engine.submit(name.as_deref(), &query) {
                Err(e) => Err(submit_error(&query, e)),
                Ok((submitted, new_leaves)) => {
                    let Submitted::Created(job) = &submitted else {
                        let _ = reply.send(Ok((submitted, 0)));
                        return;
                    };
                    let stored = StoredJob {
                        name: job.name.clone(),
                        query: query.clone(),
                    };
                    match store.put_job(&stored) {
                        Err(e) => {
                            engine.delete(&job.name);
                            Err(ApiError::internal(format!("job not stored: {e:#}")))
                        }
                        Ok(()) => {
                            // Feed the new leaves every event seen so far.
                            let mut replayed = 0;
                            let backfill = store.replay(|seq, record| {
                                replayed += apply_record(&mut engine, seq, record, Some(&new_leaves))?;
                                Ok(())
                            });
                            engine.refresh_aggregates();
                            match backfill {
                                Ok(()) => {
                                    tracing::info!(
                                        job = job.name,
                                        new_leaves = new_leaves.len(),
                                        replayed,
                                        "job created"
                                    );
                                    Ok((submitted, new_leaves.len()))
                                }
                                Err(e) => Err(ApiError::internal(format!("backfill failed: {e:#}"))),
                            }
                        }
                    }
                }
            };
            let _ = reply.send(result);
        }
        Command::Delete { name, reply } => {
            let result = match engine.job(&name) {
                Err(e) => Err(e.into()),
                Ok(_) => match store.delete_job(&name) {
                    Ok(()) => {
                        engine.delete(&name);
                        tracing::info!(job = name, "job deleted");
                        Ok(())
                    }
                    Err(e) => Err(ApiError::internal(format!("job not deleted: {e:#}"))),
                },
            };
            let _ = reply.send(result);
        }
        Command::Ingest(_) => unreachable!("ingests are grouped"),
    }
}

fn router(state: Arc<AppState>) -> Router {
    let mut api = Router::new()
        .route("/v1/jobs", post(submit_job).get(list_jobs))
        .route("/v1/jobs/{job}", get(show_job).delete(delete_job))
        .route("/v1/jobs/{job}/keys", get(job_keys))
        .route("/v1/jobs/{job}/results", get(job_results))
        .route("/v1/jobs/{job}/keys/{key}/result", get(job_result))
        .route("/v1/jobs/{job}/keys/{key}/timeline", get(job_timeline))
        .route("/v1/jobs/{job}/metrics", get(job_metrics))
        .route("/v1/jobs/{job}/metrics/{name}", get(job_metric))
        .route("/v1/aggregators/{node}", get(aggregator_read))
        .route("/v1/metrics/{node}", get(metric_read))
        .route("/v1/workers", get(worker_counts))
        .route("/v1/aggregate-feed/{node}/{key}/refresh", post(refresh_contributor))
        .route("/v1/events", post(post_events))
        .route("/v1/keys/{key}/events", post(post_key_events).get(key_events))
        .route("/v1/event-processor/{node}/{key}/events", post(post_worker_events))
        .route("/metrics", get(metrics_text));
    for kind in ["event-processor", "timeline-processor", "workers"] {
        api = api
            .route(&format!("/v1/{kind}/{{node}}/{{key}}"), get(worker_describe))
            .route(&format!("/v1/{kind}/{{node}}/{{key}}/result"), get(worker_result))
            .route(&format!("/v1/{kind}/{{node}}/{{key}}/timeline"), get(worker_timeline));
    }
    let limit = state.config.max_body_bytes;
    api.route_layer(middleware::from_fn_with_state(state.clone(), authorize))
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
        .with_state(state)
}

async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
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

async fn health(State(state): State<Arc<AppState>>) -> Json<Json_> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Json(json!({
        "status": "ok",
        "runtime": "local",
        "key_field": state.config.key_field,
        "jobs": engine.registry().jobs().count(),
        "keys": engine.key_count(),
        "events": engine.event_count(),
        "leaf_workers_per_key": engine.leaf_count(),
    }))
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

#[derive(Debug, Deserialize)]
struct JobRequest {
    name: Option<String>,
    query: String,
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

fn job_view(job: &timeline::registry::Job, created: bool) -> Json_ {
    json!({
        "name": job.name,
        "query": job.query,
        "created": created,
        "plan": job.plan,
        "routes": {
            "events": "/v1/events",
            "leaf_events": "/v1/event-processor/{node}/{key}/events",
            "result": format!("/v1/jobs/{}/keys/{{key}}/result", job.name),
            "metrics": format!("/v1/jobs/{}/metrics", job.name),
            "worker": "/v1/{worker}/{node}/{key}",
            "aggregator": "/v1/aggregators/{node}",
            "metric": "/v1/metrics/{node}",
        },
        "result_worker": {"kind": job.plan.result.worker_kind().as_str(), "node": job.plan.result},
    })
}

#[derive(Debug, Deserialize)]
struct JobName {
    name: Option<String>,
}

/// The body is `{"name", "query"}`, or the DSL itself (any body that is not a
/// JSON object) with the name in `?name=`.
async fn submit_job(
    State(state): State<Arc<AppState>>,
    Query(named): Query<JobName>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let is_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let request: JobRequest = if is_json {
        body_json(Ok(body))?
    } else {
        let query = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the query is not UTF-8"))?;
        JobRequest {
            name: named.name,
            query,
        }
    };
    // Check before queueing, so a bad query never waits behind ingestion.
    if let Err(e) = timeline::dsl::parse_query(&request.query) {
        return Err(submit_error(&request.query, SubmitError::Query(e)));
    }
    let (reply, response) = oneshot::channel();
    send(
        &state,
        Command::Submit {
            name: request.name,
            query: request.query,
            reply,
        },
    )
    .await?;
    let (submitted, _) = response.await.map_err(ApiError::internal)??;
    let created = matches!(submitted, Submitted::Created(_));
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(job_view(submitted.job(), created))).into_response())
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

async fn list_jobs(State(state): State<Arc<AppState>>) -> Json<Json_> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let jobs: Vec<Json_> = engine
        .registry()
        .jobs()
        .map(|j| {
            json!({
                "name": j.name,
                "query": j.query,
                "result": j.plan.result,
                "outputs": j.plan.outputs,
                "leaves": j.plan.leaves,
                "aggregates": j.plan.nodes.iter().filter(|n| n.worker == WorkerKind::Aggregator).map(|n| &n.id).collect::<Vec<_>>(),
                "nodes": j.plan.nodes.len(),
            })
        })
        .collect();
    Json(json!({ "jobs": jobs }))
}

async fn show_job(State(state): State<Arc<AppState>>, Path(job): Path<String>) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(job_view(engine.job(&job)?, false)))
}

async fn delete_job(State(state): State<Arc<AppState>>, Path(job): Path<String>) -> Result<StatusCode, ApiError> {
    let (reply, response) = oneshot::channel();
    send(&state, Command::Delete { name: job, reply }).await?;
    response.await.map_err(ApiError::internal)??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct KeysQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn job_keys(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(q): Query<KeysQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    engine.job(&job)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let keys = engine.keys(q.after.as_deref(), limit);
    let next = (keys.len() == limit).then(|| keys.last().cloned()).flatten();
    Ok(Json(json!({"job": job, "keys": keys, "next_after": next})))
}

#[derive(Debug, Deserialize)]
struct ResultsQuery {
    after: Option<String>,
    limit: Option<usize>,
    t: Option<String>,
    output: Option<String>,
}

/// The job's (per-key) result for many keys at once, sorted by key and paged
/// like `/keys`; `t` as for one key (`end`: each key's latest event time).
async fn job_results(
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
    let keys = engine.keys(q.after.as_deref(), limit);
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
    text.parse::<i64>()
        .or_else(|_| timeline::event::parse_rfc3339_ms(text))
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`{name}` must be milliseconds or an RFC 3339 time, found `{text}`"),
            )
        })
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

fn result_json(engine: &Engine, node: &NodeId, key: &str, t: Option<&str>) -> Result<Json_, ApiError> {
    let out = engine.output(node, key)?;
    let at = match t {
        None | Some("end") => out.latest,
        Some(text) => Some(parse_time("t", text)?),
    };
    let value = at.and_then(|t| out.value_at(t));
    Ok(json!({"node": node, "key": key, "t": at, "value": value, "latest": out.latest}))
}

fn timeline_json(engine: &Engine, node: &NodeId, key: &str, range: &RangeQuery) -> Result<Json_, ApiError> {
    let from = range.from.as_deref().map(|t| parse_time("from", t)).transpose()?;
    let to = range.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
    let out = engine.output(node, key)?;
    Ok(json!({
        "node": node,
        "key": key,
        "origin": out.timeline.origin(),
        "latest": out.latest,
        "spans": out.timeline.clip(from, to),
    }))
}

/// The node of a job's per-key output: the one named `output`, else the
/// job's result if it is per key, else its last per-key output.
fn per_key_node(engine: &Engine, job: &str, output: Option<&str>) -> Result<NodeId, ApiError> {
    let plan = &engine.job(job)?.plan;
    let per_key = |o: &&timeline::plan::PlanOutput| o.worker == WorkerKind::TimelineProcessor;
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

async fn job_result(
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

async fn job_timeline(
    State(state): State<Arc<AppState>>,
    Path((job, key)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let node = per_key_node(&engine, &job, q.output.as_deref())?;
    Ok(Json(timeline_json(&engine, &node, &key, &q)?))
}

fn group_rows(values: &crate::engine::GroupValues, metric: bool) -> Vec<Json_> {
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

fn at(q: &GroupQuery) -> Result<Option<Time>, ApiError> {
    match q.t.as_deref() {
        None | Some("end") => Ok(None),
        Some(text) => parse_time("t", text).map(Some),
    }
}

/// One output of a job at `t`: an aggregate's functions or a metric's value
/// per group; a per-key output points at its route.
fn output_json(
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

async fn job_metrics(
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
        json!({"job": job, "t": t.or(engine.latest()), "outputs": outputs}),
    ))
}

async fn job_metric(
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

fn aggregate_functions(text: Option<&str>) -> Result<Vec<AggFn>, ApiError> {
    AggFn::parse_list(text.unwrap_or("")).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{e}; `fn` takes count, count_true, sum, avg, min, max, p1 ... p99"),
        )
    })
}

async fn aggregator_read(
    State(state): State<Arc<AppState>>,
    Path(node): Path<String>,
    Query(q): Query<GroupQuery>,
) -> Result<Json<Json_>, ApiError> {
    let t = at(&q)?;
    let functions = aggregate_functions(q.functions.as_deref())?;
    let node = node_id(&node)?;
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let read = engine.aggregate(&node, t, &functions, q.group.as_deref())?;
    let definition = engine.registry().node(&node).map(|n| n.expression.clone());
    Ok(Json(json!({
        "node": node,
        "expression": definition,
        "t": read.t,
        "groups": group_rows(&read, false),
    })))
}

async fn metric_read(
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
struct EventsQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// A key's events as stored, in `[from, to)`, by time (a repeated event, or
/// one delivered to several leaves, once), at most `limit` (default 10000).
async fn key_events(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Json_>, ApiError> {
    let from = q.from.as_deref().map(|t| parse_time("from", t)).transpose()?;
    let to = q.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    let records = {
        let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
        engine.key_records(&key)?.to_vec()
    };
    let log = state.log.clone();
    let key_field = state.config.key_field.clone();
    let wanted = key.clone();
    let (events, truncated) = tokio::task::spawn_blocking(move || -> Result<(Vec<Json_>, bool)> {
        let mut events: Vec<Event> = Vec::new();
        for seq in records {
            let Some(record) = log.get(seq)? else { continue };
            let (_, batch) = record_events(&record)?;
            for event in batch {
                let in_range = from.is_none_or(|f| event.time >= f) && to.is_none_or(|t| event.time < t);
                if event.key == wanted && in_range {
                    events.push(event);
                }
            }
        }
        // By time, repeats side by side, then once each.
        let mut events: Vec<(Event, String)> = events
            .into_iter()
            .map(|e| {
                let text = e.to_json(&key_field).to_string();
                (e, text)
            })
            .collect();
        events.sort_by(|a, b| (a.0.time, &a.1).cmp(&(b.0.time, &b.1)));
        events.dedup_by(|a, b| a.1 == b.1);
        let mut events: Vec<Event> = events.into_iter().map(|(e, _)| e).collect();
        let truncated = events.len() > limit;
        events.truncate(limit);
        Ok((events.iter().map(|e| e.to_json(&key_field)).collect(), truncated))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(json!({"key": key, "events": events, "truncated": truncated})))
}

/// Golem's contributors push a key's contributions when the feeder calls
/// this; the local runtime keeps its aggregators current on every commit, so
/// it only answers which groups the key is in.
async fn refresh_contributor(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    let node = node_id(&node)?;
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let groups = engine.key_groups(&node, &key)?;
    Ok(Json(json!({"node": node, "key": key, "sent": 0, "groups": groups})))
}

async fn worker_counts(State(state): State<Arc<AppState>>) -> Json<Json_> {
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

async fn worker_describe(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    let d = engine.describe(&node_id(&node)?, &key)?;
    Ok(Json(serde_json::to_value(d).map_err(ApiError::internal)?))
}

async fn worker_result(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
    Query(q): Query<AtQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(result_json(&engine, &node_id(&node)?, &key, q.t.as_deref())?))
}

async fn worker_timeline(
    State(state): State<Arc<AppState>>,
    Path((node, key)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Json_>, ApiError> {
    let engine = state.engine.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(timeline_json(&engine, &node_id(&node)?, &key, &q)?))
}

/// A rejected event of a batch: its position (0-based index; 1-based line for
/// JSONL) and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected {
    /// 0-based position in the batch.
    pub index: usize,
    /// 1-based line, for JSON lines bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The reason.
    pub error: String,
}

/// The body Golem's `EventProcessor.add_events` takes: `{"events": [...]}`,
/// each element an event object or its JSON text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    events: Vec<&'a serde_json::value::RawValue>,
}

/// Parses a batch: a JSON array of events, JSON lines, or the envelope
/// `{"events": [...]}`. Good events are kept whatever their neighbours;
/// `url_key` must match every event's key.
pub fn parse_body(parser: &EventParser, body: &[u8], url_key: Option<&str>) -> (Vec<Event>, Vec<Rejected>) {
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    let mut accept = |index: usize, line: Option<usize>, result: Result<Event, EventError>| match result {
        Ok(event) if url_key.is_some_and(|k| k != event.key) => rejected.push(Rejected {
            index,
            line,
            error: format!(
                "event key `{}` does not match the key `{}` in the URL",
                event.key,
                url_key.unwrap_or_default()
            ),
        }),
        Ok(event) => events.push(event),
        Err(e) => rejected.push(Rejected {
            index,
            line,
            error: e.to_string(),
        }),
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let envelope = match first {
        Some(b'{') => serde_json::from_slice::<Envelope>(body).ok(),
        _ => None,
    };
    if let Some(envelope) = envelope {
        for (i, item) in envelope.events.iter().enumerate() {
            let text = match serde_json::from_str::<String>(item.get()) {
                Ok(inner) => inner,
                Err(_) => item.get().to_string(),
            };
            accept(i, None, parser.parse(&text));
        }
    } else if first == Some(&b'[') {
        match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body) {
            Ok(items) => {
                for (i, item) in items.iter().enumerate() {
                    accept(i, None, parser.parse(item.get()));
                }
            }
            Err(e) => rejected.push(Rejected {
                index: 0,
                line: Some(e.line()),
                error: format!("invalid JSON array: {e}"),
            }),
        }
    } else {
        let mut index = 0;
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            accept(index, Some(n + 1), parser.parse_bytes(line));
            index += 1;
        }
    }
    (events, rejected)
}

async fn ingest(
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

async fn post_events(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(state, body, None, None).await
}

async fn post_key_events(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ingest(state, body, Some(key), None).await
}

async fn post_worker_events(
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

#[cfg(test)]
mod tests {
    /// Every route the router serves is in the OpenAPI document.
    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let source = include_str!("server.rs");
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
}
