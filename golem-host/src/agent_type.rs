//! An agent type as a component declares it (`discover-agent-types`), in the
//! form the host works with: typed parameters, methods and HTTP endpoints.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use golem_schema::wit::GraphDecoder;
use golem_schema::{SchemaGraph, SchemaType};

use crate::bindings::golem::agent::common::{
    AgentMode, AgentType, CachePolicy, FieldSource, HttpMethod, InputSchema, OutputSchema, PathSegment, Snapshotting,
    SystemVariable,
};
use crate::routes::{Pattern, Segment};
use crate::values::Typed;

/// A parameter of a constructor or a method.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name, as the HTTP body and path variables name it.
    pub name: String,
    /// Its type.
    pub ty: SchemaType,
}

/// How long a read-only method's answer may be served again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Never.
    None,
    /// Until the agent runs a method that is not read-only.
    UntilWrite,
    /// For a while, and until a write.
    Ttl(Duration),
}

/// One HTTP endpoint of a method.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `GET`, `POST`, ... (`ANY` for any method).
    pub method: String,
    /// The path after the agent's mount.
    pub suffix: Vec<Segment>,
    /// Query parameter name -> variable (parameter) name.
    pub query: Vec<(String, String)>,
    /// Header name -> variable name.
    pub headers: Vec<(String, String)>,
}

/// A method of an agent type.
#[derive(Debug, Clone)]
pub struct Method {
    /// Its name (`get-timeline-result`).
    pub name: String,
    /// Parameters given by the caller, in order.
    pub params: Vec<Param>,
    /// The return type; `None` for unit.
    pub output: Option<SchemaType>,
    /// `Some` for read-only methods: they may not change the agent or make
    /// calls, and their answers may be served from a cache.
    pub read_only: Option<Cache>,
    /// HTTP endpoints that call it.
    pub endpoints: Vec<Endpoint>,
}

/// An agent type, typed for the host.
#[derive(Debug, Clone)]
pub struct AgentTypeInfo {
    /// The type name (`EventProcessor`).
    pub name: String,
    /// Whether every invocation gets a fresh, one-shot agent.
    pub ephemeral: bool,
    /// Whether the agent can be snapshotted (and so restored).
    pub snapshotting: bool,
    /// Named type definitions every parameter type refers into.
    pub graph: SchemaGraph,
    /// Constructor parameters: the agent's identity.
    pub constructor: Vec<Param>,
    /// The methods.
    pub methods: Vec<Method>,
    /// The HTTP mount, if the type is reachable over HTTP.
    pub mount: Option<Vec<Segment>>,
}

impl AgentTypeInfo {
    /// Reads a declaration.
    pub fn new(declared: AgentType) -> Result<Self> {
        let decoder =
            GraphDecoder::new(&declared.schema).map_err(|e| anyhow!("schema of {}: {e}", declared.type_name))?;
        let graph = SchemaGraph {
            defs: decoder
                .decode_defs()
                .map_err(|e| anyhow!("schema of {}: {e}", declared.type_name))?,
            root: SchemaGraph::empty().root,
        };
        let params = |input: &InputSchema| -> Result<Vec<Param>> {
            let InputSchema::Parameters(fields) = input;
            fields
                .iter()
                .filter(|f| matches!(f.source, FieldSource::UserSupplied))
                .map(|f| {
                    Ok(Param {
                        name: f.name.clone(),
                        ty: decoder
                            .decode_type_at(f.schema)
                            .map_err(|e| anyhow!("type of parameter `{}`: {e}", f.name))?,
                    })
                })
                .collect()
        };
        let constructor = params(&declared.constructor.input_schema).context("constructor")?;
        let kebab = kebab_case(&declared.type_name);
        let mut methods = Vec::new();
        for m in &declared.methods {
            let output = match m.output_schema {
                OutputSchema::Unit => None,
                OutputSchema::Single(i) => Some(
                    decoder
                        .decode_type_at(i)
                        .map_err(|e| anyhow!("output of `{}`: {e}", m.name))?,
                ),
            };
            let read_only = m.read_only.as_ref().map(|r| match r.cache_policy {
                CachePolicy::NoCache => Cache::None,
                CachePolicy::UntilWrite => Cache::UntilWrite,
                CachePolicy::Ttl(ns) => Cache::Ttl(Duration::from_nanos(ns)),
            });
            let endpoints = m
                .http_endpoint
                .iter()
                .map(|e| Endpoint {
                    method: match &e.http_method {
                        HttpMethod::Get => "GET".to_string(),
                        HttpMethod::Head => "HEAD".to_string(),
                        HttpMethod::Post => "POST".to_string(),
                        HttpMethod::Put => "PUT".to_string(),
                        HttpMethod::Delete => "DELETE".to_string(),
                        HttpMethod::Connect => "CONNECT".to_string(),
                        HttpMethod::Options => "OPTIONS".to_string(),
                        HttpMethod::Trace => "TRACE".to_string(),
                        HttpMethod::Patch => "PATCH".to_string(),
                        HttpMethod::Custom(c) => c.to_ascii_uppercase(),
                        HttpMethod::Any => "ANY".to_string(),
                    },
                    suffix: segments(&e.path_suffix, &kebab),
                    query: e
                        .query_vars
                        .iter()
                        .map(|q| (q.query_param_name.clone(), q.variable_name.clone()))
                        .collect(),
                    headers: e
                        .header_vars
                        .iter()
                        .map(|h| (h.header_name.clone(), h.variable_name.clone()))
                        .collect(),
                })
                .collect();
            methods.push(Method {
                name: m.name.clone(),
                params: params(&m.input_schema).with_context(|| format!("method `{}`", m.name))?,
                output,
                read_only,
                endpoints,
            });
        }
        Ok(AgentTypeInfo {
            name: declared.type_name.clone(),
            ephemeral: matches!(declared.mode, AgentMode::Ephemeral),
            snapshotting: matches!(declared.snapshotting, Snapshotting::Enabled(_)),
            graph,
            constructor,
            methods,
            mount: declared.http_mount.as_ref().map(|m| segments(&m.path_prefix, &kebab)),
        })
    }

    /// The method named `name`.
    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// A parameter's type in this type's graph.
    pub fn typed<'a>(&'a self, param: &'a Param) -> Typed<'a> {
        Typed {
            graph: &self.graph,
            ty: &param.ty,
        }
    }

    /// The mount and an endpoint's suffix as one route pattern.
    pub fn pattern(&self, endpoint: &Endpoint) -> Pattern {
        let mut all = self.mount.clone().unwrap_or_default();
        all.extend(endpoint.suffix.iter().cloned());
        Pattern(all)
    }
}

fn segments(path: &[PathSegment], kebab_type_name: &str) -> Vec<Segment> {
    path.iter()
        .map(|s| match s {
            PathSegment::Literal(l) => Segment::Literal(l.clone()),
            PathSegment::SystemVariable(SystemVariable::AgentType) => Segment::Literal(kebab_type_name.to_string()),
            PathSegment::SystemVariable(SystemVariable::AgentVersion) => Segment::Literal("0".to_string()),
            PathSegment::PathVariable(v) => Segment::Var(v.variable_name.clone()),
            PathSegment::RemainingPathVariable(v) => Segment::Rest(v.variable_name.clone()),
        })
        .collect()
}

/// `EventProcessor` -> `event-processor`.
pub fn kebab_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
