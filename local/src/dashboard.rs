//! The dashboard: a web page served by `timeline serve` at `/` that shows
//! the jobs, their plans, every worker's timeline for a key, aggregates, and
//! a job's changes as they come.
//! Plain HTML, CSS and JavaScript compiled into the binary: no build step,
//! no CDN, nothing fetched but the runtime's own API.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const JS: &str = "text/javascript; charset=utf-8";

/// Every asset: its path, content type and body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("dashboard/index.html")),
    ("/dashboard/app.js", JS, include_str!("dashboard/app.js")),
    ("/dashboard/keys.js", JS, include_str!("dashboard/keys.js")),
    ("/dashboard/plan.js", JS, include_str!("dashboard/plan.js")),
    ("/dashboard/aggregates.js", JS, include_str!("dashboard/aggregates.js")),
    ("/dashboard/changes.js", JS, include_str!("dashboard/changes.js")),
    (
        "/dashboard/style.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    ),
];

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The dashboard's routes; they need no token (the page asks for one when
/// the API does).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(path, get(move || async move { asset(content_type, body) }))
        })
}
