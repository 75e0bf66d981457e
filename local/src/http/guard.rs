//! Who may talk to the server: the `Host` check (against DNS rebinding) and
//! the `Origin` check (against cross-site requests from web pages), with CORS
//! for the origins allowed by `--allow-origin`.
//!
//! A browser sends some cross-site requests without asking first (a `POST`
//! with `Content-Type: text/plain`, say): without a token, any page the user
//! visits could submit jobs or post events. Such requests carry an `Origin`
//! header (or `Sec-Fetch-Site: cross-site`), which is refused unless allowed.
//! A page whose own name resolves to 127.0.0.1 (DNS rebinding) is same-origin
//! to the browser, but sends its own name as `Host`, which is refused unless
//! allowed.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, Method};

use super::*;

/// Which hosts and origins may send requests.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Names accepted in `Host` besides `localhost` and IP addresses
    /// (`--allow-host`); `*` accepts any.
    pub hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) allowed cross-site requests, answered
    /// with CORS headers (`--allow-origin`); `*` allows any.
    pub origins: Vec<String>,
}

impl Access {
    fn any_host(&self) -> bool {
        self.hosts.iter().any(|h| h == "*")
    }

    /// Whether `host` (the `Host` header's value) is one this server answers
    /// to: an IP address (no rebinding goes through an address), `localhost`,
    /// or an allowed name (with or without its port). A request without a
    /// `Host` (HTTP/1.0) does not come from a browser and is served.
    fn host_allowed(&self, host: &str) -> bool {
        if self.any_host() || host.is_empty() {
            return true;
        }
        let name = host_name(host);
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(name))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// The name part of a `Host` value: without the port, IPv6 without brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn forbidden(code: &'static str, message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, code, message).into_response()
}

/// Refuses unknown hosts and cross-site requests not allowed; answers CORS
/// preflights of allowed origins and adds CORS headers to their responses.
pub(super) async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let access = &state.config.access;
    let headers = request.headers();
    let host = header(headers, "host").unwrap_or("");
    if !access.host_allowed(host) {
        return forbidden(
            "forbidden_host",
            format!(
                "requests for host `{host}` are refused (a defence against DNS rebinding); \
                 start the server with `--allow-host {}` to accept it, or `--allow-host '*'` behind a proxy",
                host_name(host)
            ),
        );
    }
    let origin = header(headers, "origin").map(str::to_owned);
    // A link followed from another site is a cross-site navigation: allowed,
    // as it cannot read the answer and GETs change nothing.
    let navigation = request.method() == Method::GET && header(headers, "sec-fetch-mode") == Some("navigate");
    let cross_site = header(headers, "sec-fetch-site") == Some("cross-site") && !navigation;
    // The server's own origin, behind a TLS proxy too: the page was served
    // by this host.
    let same_origin = origin.as_deref().is_some_and(|o| {
        let authority = o.strip_prefix("http://").or_else(|| o.strip_prefix("https://"));
        !host.is_empty() && authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
    });
    let allowed = origin.as_deref().filter(|o| access.origin_allowed(o));
    let method = request.method().clone();
    let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if allowed.is_none() && !same_origin && (cross_site || (origin.is_some() && !safe)) {
        let from = origin.as_deref().unwrap_or("another site");
        return forbidden(
            "cross_origin",
            format!(
                "cross-origin {method} from `{from}` refused: a web page may not call this server; \
                 start the server with `--allow-origin {from}` to allow that origin"
            ),
        );
    }
    let Some(allowed) = allowed.map(str::to_owned) else {
        return next.run(request).await;
    };
    if method == Method::OPTIONS && headers.contains_key("access-control-request-method") {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let requested = headers.get("access-control-request-headers").cloned();
        let h = response.headers_mut();
        cors_headers(h, &allowed);
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
        );
        h.insert(
            "access-control-allow-headers",
            requested.unwrap_or(HeaderValue::from_static("authorization, content-type")),
        );
        h.insert("access-control-max-age", HeaderValue::from_static("600"));
        return response;
    }
    let mut response = next.run(request).await;
    cors_headers(response.headers_mut(), &allowed);
    response
}

fn cors_headers(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert("access-control-allow-origin", value);
    }
    headers.append("vary", HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let access = Access {
            hosts: vec!["timeline.internal".into()],
            origins: vec![],
        };
        for ok in [
            "localhost:8080",
            "LOCALHOST",
            "127.0.0.1:8080",
            "[::1]:8080",
            "10.0.0.7",
            "timeline.internal:9000",
            "",
        ] {
            assert!(access.host_allowed(ok), "{ok}");
        }
        for refused in ["evil.example:8080", "localhost.evil.example", "timeline.internal.evil"] {
            assert!(!access.host_allowed(refused), "{refused}");
        }
        let any = Access {
            hosts: vec!["*".into()],
            origins: vec![],
        };
        assert!(any.host_allowed("evil.example"));
    }

    #[test]
    fn origins() {
        let access = Access {
            hosts: vec![],
            origins: vec!["https://app.example/".into()],
        };
        assert!(access.origin_allowed("https://app.example"));
        assert!(!access.origin_allowed("http://app.example"));
        assert!(!access.origin_allowed("null"));
    }
}
