//! The HTTP gateway: the agents' endpoints, routed and bound as Golem's
//! gateway does, plus the host's own control routes under `/_golem-host/`.
//!
//! Constructor parameters come from the mount's path variables; a method's
//! parameters from the endpoint's path, query and header variables, and the
//! rest from the body, a JSON object keyed by parameter name. Values are
//! read and written with Golem's JSON mapping (golem-schema). Unit results
//! are 204, `None` 404, `Err(e)` 500 with `e`, others 200.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Result, bail};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use golem_schema::SchemaValue;
use golem_schema::wit::{decode_value, encode_value};
use serde_json::{Value as Json, json};

use crate::agent_type::AgentTypeInfo;
use crate::manifest::Deployment;
use crate::routes::{Router, Segment};
use crate::runtime::{CallError, Caller, Runtime};
use crate::values::{self, Typed};

/// Where a route leads: a method of an agent type, by one of its endpoints.
#[derive(Debug, Clone)]
pub struct Target {
    agent_type: Arc<AgentTypeInfo>,
    method: String,
    endpoint: usize,
}

/// The routes of every deployment, and the runtime they call.
pub struct Gateway {
    runtime: Arc<Runtime>,
    domains: Vec<Router<Target>>,
    /// The port the host listens on: a deployment's domain is served there.
    listen_port: Option<u16>,
    /// Serve every deployment whatever the `Host` header says.
    any_host: bool,
    /// Largest request body.
    body_limit: usize,
}

/// An error answered in Golem's shape: `{"code", "errors": [...]}`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "code": code, "errors": [message.into()] });
    (status, axum::Json(body)).into_response()
}

impl Gateway {
    /// Routes for `deployments`; refuses them as `golem deploy` would: an
    /// agent type that is not deployed or has no mount, a constructor
    /// parameter that no path variable binds, ambiguous routes.
    pub fn new(runtime: Arc<Runtime>, deployments: &[Deployment]) -> Result<Self> {
        let mut domains: Vec<Router<Target>> = Vec::new();
        for d in deployments {
            // Every route of a domain is in one router, whichever entry lists it.
            let at = match domains.iter().position(|r| r.domain() == d.domain) {
                Some(i) => i,
                None => {
                    domains.push(Router::new(&d.domain));
                    domains.len() - 1
                }
            };
            for name in &d.agents {
                let Some(ty) = runtime.agent_type(name) else {
                    bail!(
                        "the deployment of {} lists `{name}`, which no component defines",
                        d.domain
                    );
                };
                add_routes(&mut domains[at], ty)?;
            }
        }
        Ok(Gateway {
            runtime,
            domains,
            listen_port: None,
            any_host: false,
            body_limit: 64 << 20,
        })
    }

    /// Serves the deployments' domains on `port` (in place of their own).
    pub fn listening_on(mut self, port: u16) -> Self {
        self.listen_port = Some(port);
        self
    }

    /// Serves every deployment to any `Host` (when there is one deployment,
    /// or routes do not overlap).
    pub fn any_host(mut self, yes: bool) -> Self {
        self.any_host = yes;
        self
    }

    /// The axum router of the gateway.
    pub fn into_router(self) -> axum::Router {
        axum::Router::new().fallback(handle).with_state(Arc::new(self))
    }

    /// Every route: domain, method, pattern, what it calls.
    pub fn routes(&self) -> Vec<(String, String, String, String)> {
        self.domains
            .iter()
            .flat_map(|r| {
                r.routes()
                    .into_iter()
                    .map(|(m, p, l)| (r.domain().to_string(), m, p, l))
            })
            .collect()
    }

    fn domain_for(&self, headers: &HeaderMap) -> Option<&Router<Target>> {
        if self.any_host {
            return self.domains.first();
        }
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get(header::HOST))
            .and_then(|h| h.to_str().ok())?;
        let host = host.split(',').next().unwrap_or(host).trim();
        self.domains
            .iter()
            .find(|r| domain_matches(r.domain(), host, self.listen_port))
    }
}

/// Adds the routes of agent type `ty` to `router`, refusing what `golem
/// deploy` refuses: no mount, a constructor parameter no path variable binds,
/// a route whose method and path shape another route has.
pub fn add_routes(router: &mut Router<Target>, ty: &Arc<AgentTypeInfo>) -> Result<()> {
    let name = &ty.name;
    let Some(mount) = &ty.mount else {
        bail!("`{name}` is deployed on {} but has no HTTP mount", router.domain());
    };
    for p in &ty.constructor {
        if !mount
            .iter()
            .any(|s| matches!(s, Segment::Var(v) | Segment::Rest(v) if *v == p.name))
        {
            bail!(
                "constructor parameter `{}` of `{name}` must bind to a path variable of its mount",
                p.name
            );
        }
    }
    for m in &ty.methods {
        for (i, e) in m.endpoints.iter().enumerate() {
            let target = Target {
                agent_type: ty.clone(),
                method: m.name.clone(),
                endpoint: i,
            };
            router.insert(&e.method, ty.pattern(e), format!("{name}.{}", m.name), target)?;
        }
    }
    Ok(())
}

/// Whether a request for `host` is one for `domain`: the same, or the same
/// name at the port the host listens on.
fn domain_matches(domain: &str, host: &str, listen_port: Option<u16>) -> bool {
    if domain.eq_ignore_ascii_case(host) {
        return true;
    }
    let split = |s: &str| match s.rsplit_once(':') {
        Some((name, port)) => (name.to_ascii_lowercase(), port.parse::<u16>().ok()),
        None => (s.to_ascii_lowercase(), None),
    };
    let (name, _) = split(domain);
    let (asked, port) = split(host);
    name == asked && port.is_some() && port == listen_port
}

async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    if let Some(control) = path.strip_prefix("/_golem-host/") {
        return control_route(&gateway, parts.method.as_str(), control).await;
    }
    let Some(domain) = gateway.domain_for(&parts.headers) else {
        return not_found();
    };
    let method = parts.method.as_str();
    let found = domain.find(method, &path).or_else(|| domain.find("ANY", &path));
    let Some(matched) = found else {
        return not_found();
    };
    let target = matched.target.clone();
    let vars: HashMap<String, String> = matched.vars.into_iter().collect();
    let body = match to_bytes(body, gateway.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_BODY_TOO_LARGE",
                format!("the body is over {} bytes", gateway.body_limit),
            );
        }
    };
    let query: Vec<(String, String)> = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    match bind(&target, &vars, &query, &parts.headers, &body) {
        Ok((constructor, input)) => invoke(&gateway.runtime, &target, constructor, input).await,
        Err(response) => response,
    }
}

fn not_found() -> Response {
    let body = json!({ "code": "ROUTE_NOT_FOUND", "error": "Resolving route failed: No matching route for request" });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// The constructor and method parameter records of a request.
#[allow(clippy::result_large_err)]
fn bind(
    target: &Target,
    vars: &HashMap<String, String>,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(SchemaValue, SchemaValue), Response> {
    let ty = &target.agent_type;
    let method = ty.method(&target.method).expect("routes name methods of their type");
    let endpoint = &method.endpoints[target.endpoint];
    let bad_value = |e: String| error(StatusCode::BAD_REQUEST, "REQUEST_VALUE_PARSING_FAILED", e);
    let mut constructor = Vec::with_capacity(ty.constructor.len());
    for p in &ty.constructor {
        let text = vars.get(&p.name).map(String::as_str).unwrap_or("");
        constructor.push(ty.typed(p).from_text(text).map_err(bad_value)?);
    }
    let suffix_vars: Vec<&str> = endpoint
        .suffix
        .iter()
        .filter_map(|s| match s {
            Segment::Var(v) | Segment::Rest(v) => Some(v.as_str()),
            Segment::Literal(_) => None,
        })
        .collect();
    let mut fields: Vec<Option<SchemaValue>> = vec![None; method.params.len()];
    let mut in_body = Vec::new();
    for (i, p) in method.params.iter().enumerate() {
        let typed = ty.typed(p);
        let texts: Option<Vec<String>> = if suffix_vars.contains(&p.name.as_str()) {
            Some(vars.get(&p.name).cloned().into_iter().collect())
        } else if let Some((q, _)) = endpoint.query.iter().find(|(_, v)| *v == p.name) {
            Some(query.iter().filter(|(k, _)| k == q).map(|(_, v)| v.clone()).collect())
        } else if let Some((h, _)) = endpoint.headers.iter().find(|(_, v)| *v == p.name) {
            Some(
                headers
                    .get_all(h.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect(),
            )
        } else {
            None
        };
        match texts {
            None => in_body.push(i),
            Some(texts) => {
                fields[i] = Some(match texts.as_slice() {
                    [] if typed.is_option() => values::none(),
                    [] => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "REQUEST_MISSING_VALUE",
                            format!("Missing value for parameter `{}`", p.name),
                        ));
                    }
                    [one] => typed.from_text(one).map_err(bad_value)?,
                    _ => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "REQUEST_TOO_MANY_VALUES",
                            format!("More than one value for parameter `{}`", p.name),
                        ));
                    }
                });
            }
        }
    }
    if !in_body.is_empty() {
        let json: Json = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    "REQUEST_BODY_INVALID_JSON",
                    format!("the body is not JSON: {e}"),
                )
            })?
        };
        let parsing = |m: String| {
            error(
                StatusCode::BAD_REQUEST,
                "REQUEST_JSON_BODY_PARSING_FAILED",
                format!("Failed parsing json body: [{m}]"),
            )
        };
        let Json::Object(object) = json else {
            return Err(parsing(
                "the body must be a JSON object keyed by parameter name".to_string(),
            ));
        };
        for key in object.keys() {
            if !in_body.iter().any(|&i| method.params[i].name == *key) {
                return Err(parsing(format!("unexpected field `{key}`")));
            }
        }
        for i in in_body {
            let p = &method.params[i];
            let typed = ty.typed(p);
            fields[i] = Some(match object.get(&p.name) {
                Some(v) => typed.from_json(v).map_err(|e| parsing(format!("`{}`: {e}", p.name)))?,
                None if typed.is_option() => values::none(),
                None => return Err(parsing(format!("missing field `{}`", p.name))),
            });
        }
    }
    Ok((
        SchemaValue::Record { fields: constructor },
        SchemaValue::Record {
            fields: fields.into_iter().map(|f| f.expect("every parameter bound")).collect(),
        },
    ))
}

async fn invoke(runtime: &Arc<Runtime>, target: &Target, constructor: SchemaValue, input: SchemaValue) -> Response {
    let ty = &target.agent_type;
    let method = ty.method(&target.method).expect("routes name methods of their type");
    let encode = |v: &SchemaValue| encode_value(v).map_err(|e| e.to_string());
    let (constructor, input) = match (encode(&constructor), encode(&input)) {
        (Ok(c), Ok(i)) => (c, i),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, "REQUEST_VALUE_INVALID", e),
    };
    let answer = runtime
        .call(&ty.name, constructor, &target.method, input, Caller::Http)
        .await;
    let tree = match answer {
        Ok(Ok(tree)) => tree,
        Ok(Err(CallError::Agent(e))) => return error(StatusCode::BAD_REQUEST, "AGENT_ERROR", e),
        Ok(Err(CallError::NotFound(e))) => return error(StatusCode::NOT_FOUND, "AGENT_NOT_FOUND", e),
        Ok(Err(CallError::Failed(e))) => return error(StatusCode::INTERNAL_SERVER_ERROR, "INVOCATION_FAILED", e),
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INVOCATION_FAILED",
                "the agent stopped",
            );
        }
    };
    let value = match tree.as_ref().map(decode_value).transpose() {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "RESPONSE_INVALID", e.to_string()),
    };
    let typed = method.output.as_ref().map(|ty_| Typed {
        graph: &ty.graph,
        ty: ty_,
    });
    match values::reply(typed, value.as_ref()) {
        Ok(reply) => {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            match reply.body {
                Some(body) => (status, axum::Json(body)).into_response(),
                None => status.into_response(),
            }
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "RESPONSE_INVALID", e),
    }
}

async fn control_route(gateway: &Gateway, method: &str, path: &str) -> Response {
    let runtime = &gateway.runtime;
    let ok = |body: Json| {
        let mut r = (StatusCode::OK, axum::Json(body)).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    match (method, path.trim_end_matches('/')) {
        ("GET", "health") => ok(json!({ "status": "ok" })),
        ("GET", "stats") => ok(serde_json::to_value(runtime.stats()).unwrap_or(Json::Null)),
        ("GET", "agents") => ok(json!(runtime.agent_ids())),
        ("GET", "routes") => ok(json!(
            gateway
                .routes()
                .into_iter()
                .map(|(d, m, p, l)| json!({"domain": d, "method": m, "path": p, "calls": l}))
                .collect::<Vec<_>>()
        )),
        ("POST", "restart") => match runtime.restart_all().await {
            Ok((restarted, from_snapshot)) => ok(json!({ "restarted": restarted, "from_snapshot": from_snapshot })),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "RESTART_FAILED", e.to_string()),
        },
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from(
                "no such control route; try /_golem-host/{health,stats,agents,routes} or POST /_golem-host/restart\n",
            ))
            .unwrap_or_else(|_| StatusCode::NOT_FOUND.into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::domain_matches;

    #[test]
    fn domains_match_by_name_at_the_listening_port() {
        assert!(domain_matches("localhost:9006", "localhost:9006", Some(1234)));
        assert!(domain_matches("localhost:9006", "LOCALHOST:1234", Some(1234)));
        assert!(!domain_matches("localhost:9006", "localhost:4321", Some(1234)));
        assert!(!domain_matches("localhost:9006", "127.0.0.1:1234", Some(1234)));
        assert!(!domain_matches("localhost:9006", "localhost", Some(1234)));
    }
}
