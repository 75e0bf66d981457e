//! Values at the host's edges: HTTP text and JSON in, JSON out, and agent ids,
//! all through golem-schema's own model and JSON mapping (the one Golem's
//! gateway uses), so what a request gets is what Golem would give it.

use golem_schema::render::{from_untrusted_json_value, to_json_value};
use golem_schema::{ResultValuePayload, SchemaGraph, SchemaType, SchemaValue};
use serde_json::Value as Json;

/// A type together with the graph its references resolve in.
#[derive(Debug, Clone)]
pub struct Typed<'a> {
    /// Named definitions.
    pub graph: &'a SchemaGraph,
    /// The type.
    pub ty: &'a SchemaType,
}

impl<'a> Typed<'a> {
    /// The type with references followed.
    pub fn resolved(&self) -> &'a SchemaType {
        self.graph.resolve_ref(self.ty).unwrap_or(self.ty)
    }

    /// Golem's name of the type in error messages.
    pub fn describe(&self) -> &'static str {
        match self.resolved() {
            SchemaType::Bool { .. } => "bool",
            SchemaType::S8 { .. } => "s8",
            SchemaType::S16 { .. } => "s16",
            SchemaType::S32 { .. } => "s32",
            SchemaType::S64 { .. } => "s64",
            SchemaType::U8 { .. } => "u8",
            SchemaType::U16 { .. } => "u16",
            SchemaType::U32 { .. } => "u32",
            SchemaType::U64 { .. } => "u64",
            SchemaType::F32 { .. } => "f32",
            SchemaType::F64 { .. } => "f64",
            SchemaType::Char { .. } => "char",
            SchemaType::String { .. } => "string",
            SchemaType::Enum { .. } => "enum",
            SchemaType::Option { .. } => "option",
            SchemaType::List { .. } => "list",
            _ => "value",
        }
    }

    /// Whether an absent value means `None`.
    pub fn is_option(&self) -> bool {
        matches!(self.resolved(), SchemaType::Option { .. })
    }

    /// The value from JSON (as a request body field).
    pub fn from_json(&self, json: &Json) -> Result<SchemaValue, String> {
        from_untrusted_json_value(self.graph, self.ty, json).map_err(|e| e.to_string())
    }

    /// The value as JSON.
    pub fn to_json(&self, value: &SchemaValue) -> Result<Json, String> {
        to_json_value(self.graph, self.ty, value).map_err(|e| e.to_string())
    }

    /// The value of a path, query or header variable: its text parsed as the
    /// type (strings as they are, numbers, booleans, enum cases by name);
    /// an option of such a type takes the text as its value.
    pub fn from_text(&self, text: &str) -> Result<SchemaValue, String> {
        let bad = || {
            format!(
                "Failed parsing value; Provided: {text}; Expected type: {}",
                self.describe()
            )
        };
        Ok(match self.resolved() {
            SchemaType::String { .. } => SchemaValue::String(text.to_string()),
            SchemaType::Bool { .. } => SchemaValue::Bool(text.parse().map_err(|_| bad())?),
            SchemaType::S8 { .. } => SchemaValue::S8(text.parse().map_err(|_| bad())?),
            SchemaType::S16 { .. } => SchemaValue::S16(text.parse().map_err(|_| bad())?),
            SchemaType::S32 { .. } => SchemaValue::S32(text.parse().map_err(|_| bad())?),
            SchemaType::S64 { .. } => SchemaValue::S64(text.parse().map_err(|_| bad())?),
            SchemaType::U8 { .. } => SchemaValue::U8(text.parse().map_err(|_| bad())?),
            SchemaType::U16 { .. } => SchemaValue::U16(text.parse().map_err(|_| bad())?),
            SchemaType::U32 { .. } => SchemaValue::U32(text.parse().map_err(|_| bad())?),
            SchemaType::U64 { .. } => SchemaValue::U64(text.parse().map_err(|_| bad())?),
            SchemaType::F32 { .. } => SchemaValue::F32(text.parse().map_err(|_| bad())?),
            SchemaType::F64 { .. } => SchemaValue::F64(text.parse().map_err(|_| bad())?),
            SchemaType::Char { .. } => {
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => SchemaValue::Char(c),
                    _ => return Err(bad()),
                }
            }
            SchemaType::Enum { cases, .. } => SchemaValue::Enum {
                case: cases.iter().position(|c| c == text).ok_or_else(bad)? as u32,
            },
            SchemaType::Option { inner, .. } => {
                let inner = Typed {
                    graph: self.graph,
                    ty: inner,
                };
                SchemaValue::Option {
                    inner: Some(Box::new(inner.from_text(text)?)),
                }
            }
            _ => return Err(bad()),
        })
    }
}

/// `None` as a value of an option type.
pub fn none() -> SchemaValue {
    SchemaValue::Option { inner: None }
}

/// How an agent method's return value becomes an HTTP response (Golem's
/// gateway mapping): unit is 204, `None` 404, `Ok(v)` and `Some(v)` 200 with
/// `v`, `Err(e)` 500 with `e`, anything else 200.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The JSON body, if any.
    pub body: Option<Json>,
}

/// The response for `value` of type `ty` (`None`: a unit method).
pub fn reply(ty: Option<Typed<'_>>, value: Option<&SchemaValue>) -> Result<Reply, String> {
    let (Some(ty), Some(value)) = (ty, value) else {
        return Ok(Reply {
            status: 204,
            body: None,
        });
    };
    match (ty.resolved(), value) {
        (SchemaType::Result { spec, .. }, SchemaValue::Result(payload)) => {
            let (status, inner_ty, inner) = match payload {
                ResultValuePayload::Ok { value } => (200, spec.ok.as_deref(), value.as_deref()),
                ResultValuePayload::Err { value } => (500, spec.err.as_deref(), value.as_deref()),
            };
            match (inner_ty, inner) {
                (Some(t), Some(v)) => Ok(Reply {
                    status,
                    body: Some(Typed { graph: ty.graph, ty: t }.to_json(v)?),
                }),
                _ => Ok(Reply {
                    status: if status == 200 { 204 } else { 500 },
                    body: None,
                }),
            }
        }
        (SchemaType::Option { inner, .. }, SchemaValue::Option { inner: v }) => match v {
            None => Ok(Reply {
                status: 404,
                body: None,
            }),
            Some(v) => Ok(Reply {
                status: 200,
                body: Some(
                    Typed {
                        graph: ty.graph,
                        ty: inner,
                    }
                    .to_json(v)?,
                ),
            }),
        },
        _ => Ok(Reply {
            status: 200,
            body: Some(ty.to_json(value)?),
        }),
    }
}
