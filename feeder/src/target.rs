//! The runtime's HTTP API as the feeder uses it: health, job plans, and
//! event delivery that retries until the runtime acknowledges durably.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::routes::Routes;

/// How events reach the leaf workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// One request per leaf worker and batch, to
    /// `/v1/event-processor/{node}/{key}/events` (Golem, or any runtime).
    Worker,
    /// One request per batch to `/v1/events`; the local runtime gives each
    /// event to every leaf worker of its key itself (and logs it, so a job
    /// submitted later can be backfilled).
    Bulk,
    /// `bulk` when the target is the local runtime, else `worker`.
    Auto,
}

/// What `/v1/health` tells about the target.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// The target is the embedded local runtime.
    pub local: bool,
    /// The field the runtime reads an event's key from, if it says.
    pub key_field: Option<String>,
}

/// The outcome of one delivery, once the runtime answered for good.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Durably accepted, except the events listed: (position in the request, reason).
    Accepted(Vec<(usize, String)>),
    /// The worker does not exist (its job was removed).
    UnknownWorker,
}

/// An error no retry can fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// A client of one runtime.
#[derive(Clone)]
pub struct Target {
    client: reqwest::Client,
    base: Url,
    token: Option<String>,
    max_backoff: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

enum Attempt {
    Done(Outcome),
    TooLarge,
    Retry(String),
    Fatal(String),
}

impl Target {
    /// A client of the runtime at `base` (`http://127.0.0.1:8080`, or a Golem
    /// deployment's address), sending `token` as a bearer token if given.
    pub fn new(
        base: &str,
        token: Option<String>,
        max_backoff: Duration,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Target, Fatal> {
        let base = Url::parse(base).map_err(|e| Fatal(format!("the target `{base}` is not a URL: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(Fatal(format!("the target `{base}` cannot have paths")));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Fatal(e.to_string()))?;
        Ok(Target {
            client,
            base,
            token,
            max_backoff,
            metrics,
        })
    }

    /// The URL of `segments` under the base (each segment percent-encoded).
    pub fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Asks `/v1/health`; a target without it (Golem) is not the local runtime.
    pub async fn health(&self) -> Result<Health, String> {
        let response = self
            .request(reqwest::Method::GET, self.url(["v1", "health"]))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Health::default());
        }
        let body: Value = response.json().await.map_err(|e| describe(&e))?;
        Ok(Health {
            local: body.get("runtime").and_then(Value::as_str) == Some("local"),
            key_field: body.get("key_field").and_then(Value::as_str).map(str::to_string),
        })
    }

    /// Reads every job's leaves and stream from `GET /v1/jobs`; with
    /// `streams`, also the streams no job reads yet from `GET /v1/streams`
    /// (the local runtime's).
    pub async fn routes(&self, streams: bool) -> Result<Routes, String> {
        let routes = Routes::from_body(&self.get_text(["v1", "jobs"]).await?)?;
        if !streams {
            return Ok(routes);
        }
        #[derive(serde::Deserialize)]
        struct Streams {
            streams: Vec<timeline_api::views::StreamView>,
        }
        let list: Streams = serde_json::from_str(&self.get_text(["v1", "streams"]).await?)
            .map_err(|e| format!("the stream list is not one: {e}"))?;
        Ok(routes.with_streams(list.streams.iter().map(timeline::StreamSpec::from)))
    }

    async fn get_text(&self, segments: [&str; 2]) -> Result<String, String> {
        let response = self
            .request(reqwest::Method::GET, self.url(segments))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!(
                "GET /{} answered {status}: {}",
                segments.join("/"),
                text.trim()
            ));
        }
        response.text().await.map_err(|e| describe(&e))
    }

    /// Posts `events` to `url` until the runtime answers for good: retries
    /// connection failures, timeouts, 429 and 5xx with exponential backoff
    /// (forever: the source keeps the messages unacknowledged meanwhile), and
    /// splits a request the runtime finds too large. `bulk` sends JSON lines,
    /// else Golem's envelope `{"events": [...]}`.
    pub async fn deliver(&self, url: &Url, events: &[&str], bulk: bool) -> Result<Outcome, Fatal> {
        let mut backoff = Duration::from_millis(50);
        let mut failures = 0u32;
        loop {
            match self.attempt(url, events, bulk).await {
                Attempt::Done(outcome) => {
                    if failures > 0 {
                        tracing::info!(%url, failures, "delivered after retrying");
                    }
                    return Ok(outcome);
                }
                Attempt::TooLarge if events.len() > 1 => {
                    let (left, right) = events.split_at(events.len() / 2);
                    let mut rejected = Vec::new();
                    for (offset, half) in [(0, left), (left.len(), right)] {
                        match Box::pin(self.deliver(url, half, bulk)).await? {
                            Outcome::Accepted(r) => rejected.extend(r.into_iter().map(|(i, e)| (i + offset, e))),
                            Outcome::UnknownWorker => return Ok(Outcome::UnknownWorker),
                        }
                    }
                    return Ok(Outcome::Accepted(rejected));
                }
                Attempt::TooLarge => {
                    return Ok(Outcome::Accepted(vec![(
                        0,
                        "the runtime finds this event too large".into(),
                    )]));
                }
                Attempt::Fatal(reason) => return Err(Fatal(reason)),
                Attempt::Retry(reason) => {
                    failures += 1;
                    self.metrics.retried.inc();
                    tracing::warn!(%url, failures, retry_in_ms = backoff.as_millis() as u64, %reason, "delivery failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// Posts `{}` to `url` (a contributor's `refresh`) until the runtime
    /// answers for good, retrying as [`Target::deliver`] does. A 404 (the job
    /// is gone) is not an error.
    pub async fn trigger(&self, url: &Url) -> Result<(), Fatal> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let sent = self
                .request(reqwest::Method::POST, url.clone())
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await;
            let reason = match sent {
                Err(e) => describe(&e),
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    match status {
                        s if s.is_success() || s == StatusCode::NOT_FOUND => {
                            self.metrics.requests.inc();
                            return Ok(());
                        }
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            return Err(Fatal(format!(
                                "the runtime refused the feeder ({status}): check --target-token ({})",
                                message(&body, &text)
                            )));
                        }
                        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                            format!("{status}: {}", message(&body, &text))
                        }
                        _ => {
                            tracing::warn!(%url, %status, "the runtime refused a refresh: {}", message(&body, &text));
                            return Ok(());
                        }
                    }
                }
            };
            self.metrics.retried.inc();
            tracing::warn!(%url, retry_in_ms = backoff.as_millis() as u64, %reason, "refresh failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    async fn attempt(&self, url: &Url, events: &[&str], bulk: bool) -> Attempt {
        let body = if bulk { jsonl(events) } else { envelope(events) };
        let content_type = if bulk {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let sent = self
            .request(reqwest::Method::POST, url.clone())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(describe(&e)),
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => return Attempt::Retry(describe(&e)),
        };
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            s if s.is_success() => {
                self.metrics.requests.inc();
                Attempt::Done(Outcome::Accepted(rejected(&body)))
            }
            StatusCode::PAYLOAD_TOO_LARGE => Attempt::TooLarge,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Attempt::Fatal(format!(
                "the runtime refused the feeder ({status}): check --target-token ({})",
                message(&body, &text)
            )),
            StatusCode::NOT_FOUND if !bulk => Attempt::Done(Outcome::UnknownWorker),
            // The stream's last job was removed meanwhile, or the runtime
            // restarted without it: wait for it to be known again.
            StatusCode::NOT_FOUND if code(&body) == Some("unknown_stream") => Attempt::Retry(format!(
                "the runtime does not know the stream: {}",
                message(&body, &text)
            )),
            StatusCode::NOT_FOUND => Attempt::Fatal(format!("{url} does not exist: is --target right?")),
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Attempt::Retry(status.to_string()),
            s if s.is_server_error() => Attempt::Retry(format!("{status}: {}", message(&body, &text))),
            _ => {
                // The runtime refuses these events for good (400, 422, ...):
                // dead-letter them rather than block the stream.
                let listed = rejected(&body);
                if listed.is_empty() {
                    let reason = format!("the runtime refused the batch ({status}): {}", message(&body, &text));
                    Attempt::Done(Outcome::Accepted(
                        (0..events.len()).map(|i| (i, reason.clone())).collect(),
                    ))
                } else {
                    Attempt::Done(Outcome::Accepted(listed))
                }
            }
        }
    }
}

fn jsonl(events: &[&str]) -> String {
    let mut body = String::with_capacity(events.iter().map(|e| e.len() + 1).sum());
    for e in events {
        body.push_str(e);
        body.push('\n');
    }
    body
}

/// Golem's `EventProcessor.add_events(events: list<string>)` body: each
/// event as a JSON string (the local runtime takes the same body).
fn envelope(events: &[&str]) -> String {
    serde_json::json!({ "events": events }).to_string()
}

/// The `rejected` list of a runtime answer: `[{"index": 3, "error": "..."}]`,
/// at the top or inside Golem's `{"ok": ...}` result.
fn rejected(body: &Value) -> Vec<(usize, String)> {
    body.get("rejected")
        .or_else(|| body.get("ok").and_then(|ok| ok.get("rejected")))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|r| {
                    let index = r.get("index")?.as_u64()? as usize;
                    let error = r.get("error").and_then(Value::as_str).unwrap_or("rejected").to_string();
                    Some((index, error))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn code(body: &Value) -> Option<&str> {
    body.get("error")?.get("code")?.as_str()
}

fn message(body: &Value, text: &str) -> String {
    body.get("error")
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(300).collect())
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(
            envelope(&["{\"a\":1}", "{\"b\":2}"]),
            r#"{"events":["{\"a\":1}","{\"b\":2}"]}"#
        );
        assert_eq!(jsonl(&["{}", "{}"]), "{}\n{}\n");
        let answer = serde_json::json!({"accepted": 1, "rejected": [{"index": 2, "line": 3, "error": "no time"}]});
        assert_eq!(rejected(&answer), [(2, "no time".to_string())]);
        let golem = serde_json::json!({"ok": {"accepted": 0, "rejected": [{"index": 0, "error": "bad"}]}});
        assert_eq!(rejected(&golem), [(0, "bad".to_string())]);
    }

    #[test]
    fn worker_urls_are_percent_encoded_under_the_base() {
        let t = Target::new(
            "http://h:1/prefix/",
            None,
            Duration::from_secs(1),
            crate::metrics::Metrics::new(),
        )
        .unwrap();
        let url = t.url(["v1", "event-processor", "has_existed-1", "a b/c", "events"]);
        assert_eq!(
            url.as_str(),
            "http://h:1/prefix/v1/event-processor/has_existed-1/a%20b%2Fc/events"
        );
        assert!(
            Target::new(
                "not a url",
                None,
                Duration::from_secs(1),
                crate::metrics::Metrics::new()
            )
            .is_err()
        );
    }
}
