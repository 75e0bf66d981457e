//! The host functions agents call: agent ids, agent-to-agent calls and
//! logging. Anything else a component imports traps when called, naming the
//! import (see [`trap_unknown_imports`]).

use anyhow::anyhow;
use golem_schema::wit::{decode_value, encode_typed, encode_value, wire};
use golem_schema::{SchemaGraph, TypedSchemaValue};
use tokio::sync::oneshot;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Accessor, Component, HasData, Linker, Resource, ResourceType};

use crate::agent_id::{agent_id, constructor_type};
use crate::bindings::golem::agent::common::{AgentError, TypedAgentConfigValue};
use crate::bindings::golem::agent::host::{
    self, AsyncInvocationWithMetadata, InvocationMetadata, PermissionCard, RpcError,
};
use crate::bindings::wasi::logging::logging::{self, Level};
use crate::call::{CallError, Caller, PendingCall, RpcClient};
use crate::state::{AgentState, uuid_wire};

/// Selects the agent state as the data of the host functions.
pub struct AgentHost;

impl HasData for AgentHost {
    type Data<'a> = &'a mut AgentState;
}

/// Adds every host function the host implements to `linker`.
pub fn add_to_linker(linker: &mut Linker<AgentState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi::p3::add_to_linker(linker)?;
    // One by one: `wasi:clocks/types@0.3.0`, which the world also names, is
    // wasmtime-wasi's.
    use crate::bindings::golem;
    wire::add_to_linker::<AgentState, AgentHost>(linker, |s| s)?;
    golem::agent::common::add_to_linker::<AgentState, AgentHost>(linker, |s| s)?;
    golem::agent::host::add_to_linker::<AgentState, AgentHost>(linker, |s| s)?;
    golem::api::host::add_to_linker::<AgentState, AgentHost>(linker, |s| s)?;
    logging::add_to_linker::<AgentState, AgentHost>(linker, |s| s)?;
    Ok(())
}

impl AgentState {
    fn read_only_violation(&self, what: &str) -> wasmtime::Result<()> {
        match &self.read_only {
            Some(method) => Err(wasmtime::format_err!(
                "read-only method `{method}` of {} made {what}: Golem refuses side effects in read-only methods (ReadOnlyViolation)",
                self.agent_id
            )),
            None => Ok(()),
        }
    }
}

impl host::Host for AgentState {
    fn make_agent_id(
        &mut self,
        agent_type_name: String,
        input: wire::SchemaValueTree,
        phantom_id: Option<wire::Uuid>,
    ) -> wasmtime::Result<Result<String, AgentError>> {
        let Some(ty) = self.dispatch()?.agent_type(&agent_type_name) else {
            return Ok(Err(AgentError::InvalidType(agent_type_name)));
        };
        let value = match decode_value(&input) {
            Ok(v) => v,
            Err(e) => return Ok(Err(AgentError::InvalidInput(e.to_string()))),
        };
        let phantom = phantom_id.map(|u| uuid::Uuid::from_u64_pair(u.high_bits, u.low_bits));
        Ok(agent_id(&ty, &value, phantom).map_err(AgentError::InvalidInput))
    }

    fn parse_agent_id(
        &mut self,
        agent_id: String,
    ) -> wasmtime::Result<Result<(String, wire::TypedSchemaValue, Option<wire::Uuid>), AgentError>> {
        let (ty, value, phantom) =
            match crate::agent_id::parse_agent_id(&agent_id, |name| self.dispatch().ok()?.agent_type(name)) {
                Ok(parsed) => parsed,
                Err(e) => return Ok(Err(AgentError::InvalidAgentId(e))),
            };
        let graph = SchemaGraph {
            defs: ty.graph.defs.clone(),
            root: constructor_type(&ty),
        };
        let typed = encode_typed(&TypedSchemaValue::new(graph, value))
            .map_err(|e| wasmtime::format_err!("encoding the parameters of {agent_id}: {e}"))?;
        Ok(Ok((ty.name.clone(), typed, phantom.map(uuid_wire))))
    }
}

impl host::HostWasmRpc for AgentState {
    fn create(
        &mut self,
        agent_type_name: String,
        constructor: wire::SchemaValueTree,
        phantom_id: Option<wire::Uuid>,
        agent_config: Vec<TypedAgentConfigValue>,
    ) -> wasmtime::Result<Result<Resource<RpcClient>, RpcError>> {
        let Some(ty) = self.dispatch()?.agent_type(&agent_type_name) else {
            return Ok(Err(RpcError::NotFound(format!(
                "no agent type `{agent_type_name}` is deployed"
            ))));
        };
        if phantom_id.is_some() || !agent_config.is_empty() {
            return Ok(Err(RpcError::ProtocolError(
                "this host does not support phantom ids or agent config in agent-to-agent calls".to_string(),
            )));
        }
        let constructor = match decode_value(&constructor) {
            Ok(v) => v,
            Err(e) => return Ok(Err(RpcError::ProtocolError(e.to_string()))),
        };
        let agent_id = match agent_id(&ty, &constructor, None) {
            Ok(id) => id,
            Err(e) => return Ok(Err(RpcError::ProtocolError(e))),
        };
        let client = RpcClient {
            agent_type: agent_type_name,
            constructor,
            agent_id,
        };
        Ok(Ok(self.table.push(client)?))
    }

    fn async_invoke_and_await(
        &mut self,
        self_: Resource<RpcClient>,
        method_name: String,
        input: wire::SchemaValueTree,
        scope_card: Option<Resource<PermissionCard>>,
    ) -> wasmtime::Result<AsyncInvocationWithMetadata> {
        self.read_only_violation(&format!("an agent-to-agent call (`{method_name}`)"))?;
        if scope_card.is_some() {
            return Err(wasmtime::format_err!(
                "scope lending is not supported: `scope-card` must be `none`"
            ));
        }
        let client = self.table.get(&self_)?;
        let (agent_type, constructor, agent_id) = (
            client.agent_type.clone(),
            client.constructor.clone(),
            client.agent_id.clone(),
        );
        let constructor = encode_value(&constructor).map_err(|e| wasmtime::format_err!("{e}"))?;
        let answer = match decode_value(&input) {
            // Streams, secrets and quota tokens are handles of the caller's
            // store: they cannot cross to another agent here.
            Err(e) => {
                let (reply, answer) = oneshot::channel();
                let _ = reply.send(Err(CallError::NotFound(format!("input of `{method_name}`: {e}"))));
                answer
            }
            Ok(_) => self.dispatch()?.clone().call(
                &agent_type,
                constructor,
                &method_name,
                input,
                Caller::Agent {
                    agent_id: self.agent_id.clone(),
                    component_id: self.component_id,
                },
            ),
        };
        let future = self.table.push(PendingCall { answer: Some(answer) })?;
        Ok(AsyncInvocationWithMetadata {
            metadata: InvocationMetadata {
                agent_id,
                idempotency_key: uuid::Uuid::new_v4().to_string(),
            },
            future,
        })
    }

    fn drop(&mut self, rep: Resource<RpcClient>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl host::HostFutureInvokeResult for AgentState {
    fn drop(&mut self, rep: Resource<PendingCall>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl host::HostFutureInvokeResultWithStore<AgentState> for AgentHost {
    async fn get(
        accessor: &Accessor<AgentState, Self>,
        self_: Resource<PendingCall>,
    ) -> wasmtime::Result<Result<Option<wire::SchemaValueTree>, RpcError>> {
        let answer = accessor
            .with(|mut access| -> wasmtime::Result<_> { Ok(access.get().table.get_mut(&self_)?.answer.take()) })?;
        let Some(answer) = answer else {
            return Err(wasmtime::format_err!(
                "`future-invoke-result.get` called twice on one call"
            ));
        };
        Ok(match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(CallError::Agent(e))) => Err(RpcError::RemoteAgentError(AgentError::InvalidInput(e))),
            Ok(Err(CallError::NotFound(e))) => Err(RpcError::NotFound(e)),
            Ok(Err(CallError::Failed(e))) => Err(RpcError::RemoteInternalError(e)),
            Err(_) => Err(RpcError::RemoteInternalError("the called agent stopped".to_string())),
        })
    }
}

impl logging::Host for AgentState {
    fn log(&mut self, level: Level, context: String, message: String) -> wasmtime::Result<()> {
        let agent = &self.agent_id;
        match level {
            Level::Trace => tracing::trace!(%agent, %context, "{message}"),
            Level::Debug => tracing::debug!(%agent, %context, "{message}"),
            Level::Info => tracing::info!(%agent, %context, "{message}"),
            Level::Warn => tracing::warn!(%agent, %context, "{message}"),
            Level::Error | Level::Critical => tracing::error!(%agent, %context, "{message}"),
        }
        Ok(())
    }
}

impl crate::bindings::golem::agent::common::Host for AgentState {}
impl wire::Host for AgentState {}
impl wire::HostQuotaToken for AgentState {}
impl wire::HostSecret for AgentState {}
impl wire::HostSchemaValueStream for AgentState {}
impl wire::HostPermissionCard for AgentState {}

/// Streams, secrets, quota tokens and permission cards: no agent of this
/// project uses them, and the host makes none.
fn unsupported(what: &str) -> anyhow::Error {
    anyhow!("the host does not support {what}")
}

impl wire::HostQuotaTokenWithStore<AgentState> for AgentHost {
    async fn drop(_: &Accessor<AgentState, Self>, _: Resource<wire::QuotaToken>) -> anyhow::Result<()> {
        Ok(())
    }
}

impl wire::HostSecretWithStore<AgentState> for AgentHost {
    async fn drop(_: &Accessor<AgentState, Self>, _: Resource<wire::Secret>) -> anyhow::Result<()> {
        Ok(())
    }
}

impl wire::HostPermissionCardWithStore<AgentState> for AgentHost {
    async fn drop(_: &Accessor<AgentState, Self>, _: Resource<wire::PermissionCard>) -> anyhow::Result<()> {
        Ok(())
    }
}

impl wire::HostSchemaValueStreamWithStore<AgentState> for AgentHost {
    async fn drop(_: &Accessor<AgentState, Self>, _: Resource<wire::SchemaValueStream>) -> anyhow::Result<()> {
        Ok(())
    }

    async fn wrap(
        _: &Accessor<AgentState, Self>,
        _: wasmtime::component::StreamReader<wire::SchemaValueTree>,
    ) -> anyhow::Result<Resource<wire::SchemaValueStream>> {
        Err(unsupported("schema value streams"))
    }

    async fn unwrap(
        _: &Accessor<AgentState, Self>,
        _: Resource<wire::SchemaValueStream>,
    ) -> anyhow::Result<wasmtime::component::StreamReader<wire::SchemaValueTree>> {
        Err(unsupported("schema value streams"))
    }
}

impl wire::HostWithStore<AgentState> for AgentHost {
    async fn parse_uuid(_: &Accessor<AgentState, Self>, text: String) -> anyhow::Result<Result<wire::Uuid, String>> {
        Ok(uuid::Uuid::parse_str(&text).map(uuid_wire).map_err(|e| e.to_string()))
    }

    async fn uuid_to_string(_: &Accessor<AgentState, Self>, id: wire::Uuid) -> anyhow::Result<String> {
        Ok(uuid::Uuid::from_u64_pair(id.high_bits, id.low_bits).to_string())
    }
}
impl crate::bindings::golem::api::host::Host for AgentState {}

/// Defines every import of `component` that the linker lacks as a function
/// that traps, naming the import, when called (and a placeholder resource
/// type for each imported resource), so that a component that merely
/// *imports* something the host does not implement still runs.
pub fn trap_unknown_imports(linker: &mut Linker<AgentState>, component: &Component) -> wasmtime::Result<()> {
    let engine = component.engine().clone();
    let ty = component.component_type();
    for (name, item) in ty.imports(&engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let unversioned = name.split('@').next().unwrap_or(name);
        if unversioned.starts_with("wasi:") || PROVIDED.contains(&unversioned) {
            continue;
        }
        let exports: Vec<(String, ComponentItem)> =
            instance.exports(&engine).map(|(n, i)| (n.to_string(), i.ty)).collect();
        let mut at = linker.instance(name)?;
        for (item_name, item) in exports {
            let full = format!("{name}#{item_name}");
            match item {
                ComponentItem::ComponentFunc(f) if f.async_() => {
                    at.func_new_concurrent(&item_name, move |_, _, _, _| {
                        let full = full.clone();
                        Box::pin(async move { Err(wasmtime::format_err!("the host does not implement `{full}`")) })
                    })
                }
                ComponentItem::ComponentFunc(_) => at.func_new(&item_name, move |_, _, _, _| {
                    Err(wasmtime::format_err!("the host does not implement `{full}`"))
                }),
                ComponentItem::Resource(_) => {
                    at.resource(&item_name, ResourceType::host::<Unimplemented>(), |_, _| Ok(()))
                }
                _ => Ok(()),
            }?;
        }
    }
    Ok(())
}

/// The Golem interfaces [`add_to_linker`] defines (every `wasi:` one too).
const PROVIDED: &[&str] = &[
    "golem:agent/host",
    "golem:agent/common",
    "golem:core/types",
    "golem:api/host",
];

/// The placeholder type of resources the host does not implement.
struct Unimplemented;

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Store;
    use wasmtime_wasi::WasiCtx;

    /// A component that imports a function no host provides and calls it.
    const CALLS_AN_UNKNOWN_IMPORT: &str = r#"
        (component
          (import "golem:tool/host@0.1.0" (instance $tool (export "ping" (func))))
          (core func $ping (canon lower (func $tool "ping")))
          (core module $m
            (import "host" "ping" (func $ping))
            (func (export "run") call $ping))
          (core instance $i (instantiate $m (with "host" (instance (export "ping" (func $ping))))))
          (func (export "run") (canon lift (core func $i "run"))))
    "#;

    #[tokio::test]
    async fn an_unknown_import_traps_when_called_naming_it() {
        let engine = crate::components::engine().unwrap();
        let component = Component::new(&engine, CALLS_AN_UNKNOWN_IMPORT).unwrap();
        let mut linker: Linker<AgentState> = Linker::new(&engine);
        add_to_linker(&mut linker).unwrap();
        assert!(
            linker.instantiate_pre(&component).is_err(),
            "without stubs the import is missing"
        );
        trap_unknown_imports(&mut linker, &component).unwrap();
        let mut store = Store::new(
            &engine,
            AgentState::detached(WasiCtx::builder().build(), wasmtime::component::ResourceTable::new()),
        );
        let instance = linker.instantiate_async(&mut store, &component).await.unwrap();
        let run = instance.get_typed_func::<(), ()>(&mut store, "run").unwrap();
        let err = run.call_async(&mut store, ()).await.unwrap_err();
        assert!(
            format!("{err:?}").contains("the host does not implement `golem:tool/host@0.1.0#ping`"),
            "{err:?}"
        );
    }
}
