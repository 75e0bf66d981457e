//! The timeline server's changes stream of one job:
//! `GET {base}/v1/jobs/{job}/changes?after=ID&limit=N&wait=SECS[&where=COND]`.
//!
//! A change is a JSON object with an `id` (strictly increasing per job);
//! everything else is forwarded as the server wrote it, byte for byte.

use std::time::Duration;

use anyhow::Context;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One change, as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its id.
    pub id: u64,
    /// Its key (`key`, or `group` for an aggregate), as text: a string as
    /// it is, another JSON value as JSON.
    pub key: Option<String>,
    /// The whole change, exactly as the server wrote it.
    pub json: String,
}

/// One answer of the changes stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The changes after the `after` asked for, in id order.
    pub changes: Vec<Change>,
    /// The `after` of the next request: the last id the server looked at.
    pub next: u64,
    /// The newest change id of the job (0: none yet).
    pub last: u64,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Worth trying again: no answer, a lost connection, 5xx, 408, 429.
    #[error("{0}")]
    Transient(String),
    /// Not worth trying again: no such job, a bad `where`, a refused token,
    /// an answer that is not the changes stream.
    #[error("{0}")]
    Fatal(String),
}

/// A client of one job's changes stream.
#[derive(Clone)]
pub struct ChangesClient {
    http: reqwest::Client,
    url: Url,
    token: Option<String>,
    job: String,
    filter: Option<String>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    changes: Vec<&'a RawValue>,
    next: u64,
    last: u64,
}

#[derive(Deserialize)]
struct Head {
    id: u64,
    key: Option<serde_json::Value>,
    group: Option<serde_json::Value>,
}

/// The changes URL of `job` on the server at `base` (any path of `base` is
/// kept as a prefix).
pub fn changes_url(base: &str, job: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(base).map_err(|e| anyhow::anyhow!("`{base}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("`{base}` is not an http:// or https:// URL");
    }
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|_| anyhow::anyhow!("`{base}` cannot be a base URL"))?
        .pop_if_empty()
        .extend(["v1", "jobs", job, "changes"]);
    Ok(url)
}

impl ChangesClient {
    /// A client of `job`'s changes on the server at `base`, with the
    /// bearer `token` and the `filter` (`where`), if any.
    pub fn new(base: &str, job: &str, token: Option<String>, filter: Option<String>) -> anyhow::Result<ChangesClient> {
        let url = changes_url(base, job)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("an HTTP client")?;
        Ok(ChangesClient {
            http,
            url,
            token,
            job: job.to_string(),
            filter,
        })
    }

    /// The job.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The `where` filter, if any.
    pub fn filter(&self) -> Option<&str> {
        self.filter.as_deref()
    }

    /// The URL it reads.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The changes after `after`, at most `limit`; when there are none yet,
    /// waits up to `wait` seconds for one (long poll). `filter` overrides
    /// the client's `where` (a batch in flight is read again with the filter
    /// it was read with).
    pub async fn fetch(&self, after: u64, limit: u32, wait: u32, filter: Option<&str>) -> Result<Page, FetchError> {
        let mut url = self.url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("after", &after.to_string())
                .append_pair("limit", &limit.to_string())
                .append_pair("wait", &wait.to_string());
            if let Some(filter) = filter {
                q.append_pair("where", filter);
            }
        }
        let mut request = self
            .http
            .get(url.clone())
            .timeout(Duration::from_secs(u64::from(wait) + 30));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            FetchError::Transient(format!(
                "the timeline server at {} does not answer: {}",
                self.url,
                chain(&e)
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            FetchError::Transient(format!(
                "the answer of the timeline server at {} broke off: {}",
                self.url,
                chain(&e)
            ))
        })?;
        if !status.is_success() {
            return Err(self.refusal(status, &body));
        }
        parse_page(&body, after).map_err(|e| {
            FetchError::Fatal(format!(
                "{} did not answer with a changes stream: {e} (is --from a timeline server?)",
                self.url
            ))
        })
    }

    fn refusal(&self, status: StatusCode, body: &[u8]) -> FetchError {
        let (code, message) = error_of(body);
        let job = &self.job;
        match status.as_u16() {
            408 | 429 | 500..=599 => FetchError::Transient(format!(
                "the timeline server at {} answered {status}{}",
                self.url,
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )),
            404 if code.as_deref() == Some("unknown_job") => FetchError::Fatal(format!(
                "the timeline server has no job `{job}`: {}",
                message.unwrap_or_else(|| "unknown_job".into())
            )),
            404 => FetchError::Fatal(format!(
                "{} answered 404 Not Found{}: is --from a timeline server with a changes stream?",
                self.url,
                message.map(|m| format!(" ({m})")).unwrap_or_default()
            )),
            409 if code.as_deref() == Some("changes_not_recorded") => FetchError::Fatal(format!(
                "job `{job}` does not record its changes (submit it with \"changes\": true): {}",
                message.unwrap_or_else(|| "changes_not_recorded".into())
            )),
            400 => FetchError::Fatal(format!(
                "the timeline server refused the request for job `{job}`{}: {}",
                self.filter
                    .as_ref()
                    .map(|w| format!(" with --where `{w}`"))
                    .unwrap_or_default(),
                message.unwrap_or_else(|| "400 Bad Request".into())
            )),
            401 | 403 => FetchError::Fatal(format!(
                "the timeline server refused the token ({status}{}): check --token",
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )),
            _ => FetchError::Fatal(format!(
                "{} answered {status}{}",
                self.url,
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )),
        }
    }
}

/// An error and its causes, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The `error.code` and `error.message` of a JSON error body, or the body
/// as text.
fn error_of(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body).trim().to_string();
            let text: String = text.chars().take(500).collect();
            (None, (!text.is_empty()).then_some(text))
        }
    }
}

/// Parses an answer of the changes stream to a request with `after`,
/// checking the contract: ids above `after`, strictly increasing, `next`
/// not behind `after` nor the last change.
pub fn parse_page(body: &[u8], after: u64) -> anyhow::Result<Page> {
    let wire: Wire = serde_json::from_slice(body).context("not a changes answer")?;
    let mut changes = Vec::with_capacity(wire.changes.len());
    let mut previous = after;
    for raw in wire.changes {
        let head: Head = serde_json::from_str(raw.get()).context("a change without a whole-number `id`")?;
        if head.id <= previous {
            anyhow::bail!(
                "change {} comes after {previous} (ids must increase, above after={after})",
                head.id
            );
        }
        previous = head.id;
        let key = head.key.or(head.group).and_then(|v| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s),
            other => Some(other.to_string()),
        });
        changes.push(Change {
            id: head.id,
            key,
            json: raw.get().to_string(),
        });
    }
    if wire.next < previous {
        anyhow::bail!("next={} is behind the last change, {previous}", wire.next);
    }
    Ok(Page {
        changes,
        next: wire.next,
        last: wire.last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            changes_url("http://h:8080", "alerts").unwrap().as_str(),
            "http://h:8080/v1/jobs/alerts/changes"
        );
        assert_eq!(
            changes_url("https://h/timeline/", "a.b").unwrap().as_str(),
            "https://h/timeline/v1/jobs/a.b/changes"
        );
        assert!(changes_url("h:8080", "a").is_err());
        assert!(changes_url("ftp://h", "a").unwrap_err().to_string().contains("http"));
        assert!(
            changes_url("not a url", "a")
                .unwrap_err()
                .to_string()
                .contains("not a URL")
        );
    }

    #[test]
    fn pages_keep_changes_as_written() {
        let body = br#"{"job":"alerts","changes":[
            {"id":3, "output":"alert","key":"card-1","from":1000,"until":null,"old":false,"new":true},
            {"id":9,"group":{"country":"fr"},"x":[1, 2]},
            {"id":10,"key":null}],"next":12,"last":40}"#;
        let page = parse_page(body, 2).unwrap();
        assert_eq!((page.next, page.last), (12, 40));
        let ids: Vec<u64> = page.changes.iter().map(|c| c.id).collect();
        assert_eq!(ids, [3, 9, 10]);
        assert_eq!(
            page.changes[0].json,
            r#"{"id":3, "output":"alert","key":"card-1","from":1000,"until":null,"old":false,"new":true}"#,
            "byte for byte"
        );
        assert_eq!(page.changes[0].key.as_deref(), Some("card-1"));
        assert_eq!(page.changes[1].key.as_deref(), Some(r#"{"country":"fr"}"#));
        assert_eq!(page.changes[2].key, None);
        let empty = parse_page(br#"{"job":"a","changes":[],"next":7,"last":7}"#, 7).unwrap();
        assert!(empty.changes.is_empty());
        for (bad, why) in [
            (&br#"{"changes":[{"id":2}],"next":2,"last":2}"#[..], "comes after 2"),
            (br#"{"changes":[{"id":4},{"id":3}],"next":4,"last":4}"#, "comes after 4"),
            (br#"{"changes":[{"id":4}],"next":3,"last":4}"#, "behind"),
            (br#"{"changes":[{"key":"a"}],"next":3,"last":4}"#, "`id`"),
            (br#"<html>"#, "not a changes answer"),
        ] {
            let e = format!("{:#}", parse_page(bad, 2).unwrap_err());
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_of(br#"{"error":{"code":"unknown_job","message":"no job `x`"}}"#),
            (Some("unknown_job".into()), Some("no job `x`".into()))
        );
        assert_eq!(error_of(b" gateway down \n"), (None, Some("gateway down".into())));
        assert_eq!(error_of(b""), (None, None));
    }
}
