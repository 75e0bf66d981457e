//! The dashboard: a web page served by `timeline serve` at `/` that shows
//! the jobs, their plans, every worker's timeline for a key, and aggregates.
//! Plain HTML, CSS and JavaScript compiled into the binary: no build step,
//! no CDN, nothing fetched but the runtime's own API.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("dashboard/index.html");
const APP: &str = include_str!("dashboard/app.js");
const KEYS: &str = include_str!("dashboard/keys.js");
const PLAN: &str = include_str!("dashboard/plan.js");
const AGGREGATES: &str = include_str!("dashboard/aggregates.js");
const STYLE: &str = include_str!("dashboard/style.css");

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
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/dashboard/keys.js",
            get(|| async { asset("text/javascript; charset=utf-8", KEYS) }),
        )
        .route(
            "/dashboard/plan.js",
            get(|| async { asset("text/javascript; charset=utf-8", PLAN) }),
        )
        .route(
            "/dashboard/aggregates.js",
            get(|| async { asset("text/javascript; charset=utf-8", AGGREGATES) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
