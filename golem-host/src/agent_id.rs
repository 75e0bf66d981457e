//! Agent ids: `Type(param,...)` with each constructor parameter in Golem's
//! JSON (`EventProcessor("has_existed-...","s1")`), and `[uuid]` after it for
//! a phantom.

use std::sync::Arc;

use golem_schema::{SchemaType, SchemaValue};

use crate::agent_type::AgentTypeInfo;

/// The agent id of an agent of type `ty` with `constructor`:
/// `Type(param,...)`, each parameter in Golem's JSON, with `[uuid]` for
/// a phantom.
pub fn agent_id(ty: &AgentTypeInfo, constructor: &SchemaValue, phantom: Option<uuid::Uuid>) -> Result<String, String> {
    let SchemaValue::Record { fields } = constructor else {
        return Err("constructor parameters are not a record".to_string());
    };
    if fields.len() != ty.constructor.len() {
        return Err(format!(
            "{} takes {} constructor parameters, not {}",
            ty.name,
            ty.constructor.len(),
            fields.len()
        ));
    }
    let mut parts = Vec::with_capacity(fields.len());
    for (param, value) in ty.constructor.iter().zip(fields) {
        let json = ty.typed(param).to_json(value)?;
        parts.push(serde_json::to_string(&json).map_err(|e| e.to_string())?);
    }
    let mut id = format!("{}({})", ty.name, parts.join(","));
    if let Some(p) = phantom {
        id.push_str(&format!("[{p}]"));
    }
    Ok(id)
}

/// Reads an agent id (as [`agent_id`] writes it) back: the type,
/// its constructor parameters and the phantom id; `lookup` finds types.
pub fn parse_agent_id(
    id: &str,
    lookup: impl Fn(&str) -> Option<Arc<AgentTypeInfo>>,
) -> Result<(Arc<AgentTypeInfo>, SchemaValue, Option<uuid::Uuid>), String> {
    let bad = || format!("`{id}` is not an agent id (`Type(params)` or `Type(params)[uuid]`)");
    let open = id.find('(').ok_or_else(bad)?;
    let (name, rest) = id.split_at(open);
    let (params, phantom) = match rest.rfind(")[") {
        Some(i) if rest.ends_with(']') => (&rest[1..i], Some(&rest[i + 2..rest.len() - 1])),
        _ => (
            rest.strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(bad)?,
            None,
        ),
    };
    let ty = lookup(name.trim()).ok_or_else(|| format!("no agent type `{}`", name.trim()))?;
    let values: Vec<serde_json::Value> =
        serde_json::from_str(&format!("[{params}]")).map_err(|e| format!("{}: {e}", bad()))?;
    if values.len() != ty.constructor.len() {
        return Err(format!(
            "{}: {} takes {} parameters",
            bad(),
            ty.name,
            ty.constructor.len()
        ));
    }
    let fields = ty
        .constructor
        .iter()
        .zip(&values)
        .map(|(p, v)| ty.typed(p).from_json(v))
        .collect::<Result<Vec<_>, _>>()?;
    let phantom = phantom
        .map(|p| uuid::Uuid::parse_str(p).map_err(|e| format!("phantom id of `{id}`: {e}")))
        .transpose()?;
    Ok((ty, SchemaValue::Record { fields }, phantom))
}

/// The constructor parameters' record type of `ty`, for typed values.
pub fn constructor_type(ty: &AgentTypeInfo) -> SchemaType {
    SchemaType::Record {
        fields: ty
            .constructor
            .iter()
            .map(|p| golem_schema::NamedFieldType {
                name: p.name.clone(),
                body: p.ty.clone(),
                metadata: Default::default(),
            })
            .collect(),
        metadata: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_type::Param;

    fn aggregator() -> Arc<AgentTypeInfo> {
        Arc::new(AgentTypeInfo {
            name: "Aggregator".to_string(),
            ephemeral: false,
            snapshotting: true,
            graph: golem_schema::SchemaGraph::empty(),
            constructor: vec![
                Param {
                    name: "node".to_string(),
                    ty: SchemaType::string(),
                },
                Param {
                    name: "shard".to_string(),
                    ty: SchemaType::U32 {
                        restrictions: None,
                        metadata: Default::default(),
                    },
                },
            ],
            methods: Vec::new(),
            mount: None,
        })
    }

    #[test]
    fn agent_ids_name_the_type_and_its_parameters_and_read_back() {
        let ty = aggregator();
        let params = SchemaValue::Record {
            fields: vec![SchemaValue::String("a\"b(c)".to_string()), SchemaValue::U32(3)],
        };
        let id = agent_id(&ty, &params, None).unwrap();
        assert_eq!(id, r#"Aggregator("a\"b(c)",3)"#);
        let lookup = |name: &str| (name == "Aggregator").then(|| ty.clone());
        let (back, value, phantom) = parse_agent_id(&id, lookup).unwrap();
        assert_eq!((back.name.as_str(), &value, phantom), ("Aggregator", &params, None));
        let p = uuid::Uuid::new_v4();
        let with = agent_id(&ty, &params, Some(p)).unwrap();
        assert_eq!(parse_agent_id(&with, lookup).unwrap().2, Some(p));
        for bad in [
            "Aggregator",
            "Nope(\"x\",1)",
            "Aggregator(\"x\")",
            "Aggregator(\"x\",-1)",
        ] {
            assert!(parse_agent_id(bad, lookup).is_err(), "{bad}");
        }
        let short = SchemaValue::Record { fields: vec![] };
        assert!(agent_id(&ty, &short, None).unwrap_err().contains("takes 2"));
    }
}
