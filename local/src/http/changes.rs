//! A job's changes: `GET /v1/jobs/{job}/changes` as pages of JSON (with an
//! optional long poll) or, with `Accept: text/event-stream`, as Server-Sent
//! Events that resume from `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use timeline::Predicate;
use timeline_api::views::{ChangeView, ChangesView};

use super::*;

/// Changes a page holds when `limit` is not given.
const DEFAULT_LIMIT: usize = 1000;
/// Most changes a page holds.
const MAX_LIMIT: usize = 10_000;
/// Longest long poll, in seconds.
const MAX_WAIT_SECS: u64 = 60;
/// Most stored changes one request looks at for a condition before it
/// answers (with `next` past them).
const SCAN_BUDGET: usize = 100_000;
/// Most event streams of changes open at once.
pub(super) const MAX_STREAMS: usize = 256;

#[derive(Debug, Deserialize)]
pub(super) struct ChangesQuery {
    after: Option<u64>,
    limit: Option<usize>,
    wait: Option<u64>,
    #[serde(rename = "where")]
    condition: Option<String>,
}

/// What a request asks for, checked.
struct Ask {
    job: String,
    condition: Option<Predicate>,
    limit: usize,
}

pub(super) async fn job_changes(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    Query(query): Query<ChangesQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let condition = match &query.condition {
        None => None,
        Some(text) => Some(timeline::dsl::parse_condition(text).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_condition",
                format!(
                    "bad `where` condition at line {}, column {}: {}",
                    e.line, e.column, e.message
                ),
            )
            .with(json!({ "line": e.line, "column": e.column, "diagnostic": e.render(text, "where") }))
            .with_help(e.help.clone())
        })?),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`limit` is 1 to {MAX_LIMIT}, not {limit}"),
        ));
    }
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`wait` is at most {MAX_WAIT_SECS} seconds, not {wait}"),
        ));
    }
    check_records(&state, &job).await?;
    let ask = Arc::new(Ask { job, condition, limit });
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if sse {
        let resume = match headers.get("last-event-id") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            "`Last-Event-ID` is not a change id (a whole number)",
                        )
                    })?,
            ),
        };
        let Ok(permit) = state.change_streams.clone().try_acquire_owned() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!("{MAX_STREAMS} streams of changes are open; poll the JSON pages instead, or retry later"),
            ));
        };
        let after = resume.or(query.after).unwrap_or(0);
        return Ok(event_stream(state, ask, after, permit).into_response());
    }
    let after = query.after.unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut feed = state.changes.clone();
    let mut next = after;
    loop {
        // Marks what is seen now: a change stored after the read below wakes
        // the wait.
        feed.borrow_and_update();
        let page = read_page(&state, &ask, next).await?;
        next = page.next;
        let more = page.next < page.last;
        if !page.changes.is_empty()
            || more
            || wait == 0
            || tokio::time::timeout_at(deadline, feed.changed()).await.is_err()
        {
            return Ok(Json(page).into_response());
        }
        check_records(&state, &ask.job).await?;
    }
}

/// 404 for no such job, 409 for a job that does not record changes.
async fn check_records(state: &Arc<AppState>, job: &str) -> Result<(), ApiError> {
    let log = state.log.clone();
    let name = job.to_string();
    let stored = tokio::task::spawn_blocking(move || log.job(&name))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    match stored {
        None => Err(ReadError::UnknownJob(job.to_string()).into()),
        Some(stored) if !stored.changes => Err(ApiError::new(
            StatusCode::CONFLICT,
            "changes_not_recorded",
            format!("job `{job}` does not record its changes"),
        )
        .with_help(Some(
            "submit the job with \"changes\": true (or ?changes=true); it records them from then on".into(),
        ))),
        Some(_) => Ok(()),
    }
}

/// Reads changes after `after` until `limit` match, or the budget is spent
/// (then `next` is short of `last`: there are more to look at now).
async fn read_page(state: &Arc<AppState>, ask: &Arc<Ask>, after: u64) -> Result<ChangesView, ApiError> {
    let log = state.log.clone();
    let ask = ask.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<ChangesView> {
        let last = log.last_change(&ask.job)?;
        let mut page = ChangesView::empty(&ask.job, after, last);
        let mut scanned = 0;
        loop {
            let batch = log.changes(&ask.job, page.next, ask.limit)?;
            let read_all = batch.len() < ask.limit;
            scanned += batch.len();
            let views = batch
                .iter()
                .map(|(_, bytes)| serde_json::from_slice::<ChangeView>(bytes))
                .collect::<Result<Vec<_>, _>>()?;
            let full = page.fill(views, ask.limit, ask.condition.as_ref());
            if full || read_all || scanned >= SCAN_BUDGET {
                return Ok(page);
            }
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// The changes after `after` as Server-Sent Events (`id` is the change id,
/// `event: change`, the change as JSON data), then each new one as it is
/// stored; ends when the job is deleted.
fn event_stream(
    state: Arc<AppState>,
    ask: Arc<Ask>,
    after: u64,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let feed = state.changes.clone();
    let start = (state, ask, after, feed, std::collections::VecDeque::new(), permit);
    let events = stream::unfold(
        start,
        |(state, ask, mut after, mut feed, mut queue, permit)| async move {
            loop {
                if let Some(view) = queue.pop_front() {
                    let view: ChangeView = view;
                    let event = SseEvent::default()
                        .id(view.id.to_string())
                        .event("change")
                        .json_data(&view)
                        .unwrap_or_else(|_| SseEvent::default().comment("a change could not be encoded"));
                    return Some((Ok(event), (state, ask, after, feed, queue, permit)));
                }
                feed.borrow_and_update();
                let Ok(page) = read_page(&state, &ask, after).await else {
                    return None;
                };
                let more = page.next < page.last;
                after = page.next;
                queue.extend(page.changes);
                if !queue.is_empty() || more {
                    continue;
                }
                // Until a change is stored, or the server begins to stop.
                let mut stopping = state.stopping.clone();
                tokio::select! {
                    changed = feed.changed() => if changed.is_err() {
                        return None;
                    },
                    _ = stopping.wait_for(|stop| *stop) => return None,
                }
                if check_records(&state, &ask.job).await.is_err() {
                    return None;
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
