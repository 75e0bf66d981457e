//! The webhook target: one `POST` per batch, `{"job": ..., "changes": [...]}`
//! with an `Idempotency-Key`, tried again until the receiver accepts it.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::SinkMetrics;
use super::changes::{Change, chain};

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// A webhook receiver.
pub struct Webhook {
    http: reqwest::Client,
    url: Url,
    job: String,
    max_backoff: Duration,
    metrics: std::sync::Arc<SinkMetrics>,
}

/// The body of a batch: the changes exactly as the server wrote them.
pub fn body(job: &str, changes: &[Change]) -> String {
    let mut out = String::with_capacity(32 + changes.iter().map(|c| c.json.len() + 1).sum::<usize>());
    out.push_str("{\"job\":");
    out.push_str(&serde_json::Value::from(job).to_string());
    out.push_str(",\"changes\":[");
    for (i, c) in changes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&c.json);
    }
    out.push_str("]}");
    out
}

/// How long a `Retry-After` header asks to wait (seconds, or an HTTP
/// date), at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Whether a status is worth trying again.
fn transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
}

impl Webhook {
    /// A client of the receiver at `url` (http or https).
    pub fn new(
        url: &str,
        job: &str,
        timeout: Duration,
        max_backoff: Duration,
        metrics: std::sync::Arc<SinkMetrics>,
    ) -> anyhow::Result<Webhook> {
        let url = parse_url(url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("an HTTP client")?;
        Ok(Webhook {
            http,
            url,
            job: job.to_string(),
            max_backoff,
            metrics,
        })
    }

    /// The receiver's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Posts `changes` with idempotency key `key` until the receiver
    /// answers 2xx. A connection error, 5xx, 408 or 429 is tried again after
    /// a backoff (or the `Retry-After` asked for); any other answer is an
    /// error, with the receiver's reason.
    pub async fn deliver(&self, key: &str, changes: &[Change]) -> anyhow::Result<()> {
        let body = body(&self.job, changes);
        let mut backoff = Duration::from_millis(100);
        loop {
            let sent = self
                .http
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", key)
                .body(body.clone())
                .send()
                .await;
            let wait = match sent {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return Ok(());
                    }
                    let after = retry_after(response.headers());
                    let text = response.text().await.unwrap_or_default();
                    let text: String = text.trim().chars().take(500).collect();
                    let reason = if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    };
                    if !transient(status) {
                        anyhow::bail!("the webhook {} refused batch {key} with {status}{reason}", self.url);
                    }
                    tracing::warn!(url = %self.url, %status, key, "the webhook failed{reason}; retrying");
                    after.unwrap_or(backoff)
                }
                Err(e) if e.is_builder() => anyhow::bail!("cannot make a request to {}: {}", self.url, chain(&e)),
                Err(e) => {
                    tracing::warn!(url = %self.url, key, error = %chain(&e), "cannot post to the webhook; retrying");
                    backoff
                }
            };
            self.metrics.retries.inc();
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

/// Parses a webhook URL: http or https.
pub fn parse_url(url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).map_err(|e| anyhow::anyhow!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        anyhow::bail!("`{url}` is not an http:// or https:// URL");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_keeps_changes_as_written() {
        let changes = [
            Change {
                id: 1,
                key: None,
                json: r#"{"id":1, "a":[1,2]}"#.into(),
            },
            Change {
                id: 4,
                key: None,
                json: r#"{"id":4}"#.into(),
            },
        ];
        let b = body("al\"erts", &changes);
        assert_eq!(b, r#"{"job":"al\"erts","changes":[{"id":1, "a":[1,2]},{"id":4}]}"#);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["changes"][1]["id"], 4);
        assert_eq!(body("a", &[]), r#"{"job":"a","changes":[]}"#);
    }

    #[test]
    fn retry_after_in_seconds_or_a_date() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
        h.insert(RETRY_AFTER, soon.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(17) && d <= Duration::from_secs(20), "{d:?}");
        h.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date past");
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        assert!(transient(StatusCode::SERVICE_UNAVAILABLE) && transient(StatusCode::TOO_MANY_REQUESTS));
        assert!(transient(StatusCode::REQUEST_TIMEOUT) && !transient(StatusCode::BAD_REQUEST));
        assert!(!transient(StatusCode::CONFLICT) && !transient(StatusCode::MOVED_PERMANENTLY));
    }
}
