//! The store data of an agent instance, and what its host functions need of
//! the runtime ([`Dispatch`]), so that the host functions sit below the
//! runtime that runs them.

use std::sync::Arc;

use golem_schema::wit::wire;
use tokio::sync::oneshot;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::agent_type::AgentTypeInfo;
use crate::bindings::golem::agent::common::AgentError;
use crate::call::{Answer, Caller};

/// What an agent's host functions ask of the runtime it lives in.
pub trait Dispatch: Send + Sync {
    /// The agent type named `name`.
    fn agent_type(&self, name: &str) -> Option<Arc<AgentTypeInfo>>;

    /// Queues a call of `method` on the agent `agent_type(constructor)`,
    /// creating it if it does not exist; the answer arrives on the channel.
    fn call(
        self: Arc<Self>,
        agent_type: &str,
        constructor: wire::SchemaValueTree,
        method: &str,
        input: wire::SchemaValueTree,
        caller: Caller,
    ) -> oneshot::Receiver<Answer>;
}

/// The store data of one agent instance.
pub struct AgentState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    dispatch: Option<Arc<dyn Dispatch>>,
    /// This agent's id and component id, as callers see them.
    pub(crate) agent_id: String,
    pub(crate) component_id: uuid::Uuid,
    /// The method running now, if it is read-only.
    pub(crate) read_only: Option<String>,
}

impl AgentState {
    /// The state of an instance that is no agent (to discover agent types).
    pub(crate) fn detached(wasi: WasiCtx, table: ResourceTable) -> Self {
        AgentState {
            wasi,
            table,
            dispatch: None,
            agent_id: String::new(),
            component_id: uuid::Uuid::nil(),
            read_only: None,
        }
    }

    /// The state of agent `agent_id` of component `component_id`, whose
    /// calls `dispatch` carries.
    pub(crate) fn new(wasi: WasiCtx, dispatch: Arc<dyn Dispatch>, agent_id: &str, component_id: uuid::Uuid) -> Self {
        AgentState {
            wasi,
            table: ResourceTable::new(),
            dispatch: Some(dispatch),
            agent_id: agent_id.to_string(),
            component_id,
            read_only: None,
        }
    }

    /// What carries the agent's calls.
    pub(crate) fn dispatch(&self) -> wasmtime::Result<&Arc<dyn Dispatch>> {
        self.dispatch
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("agent types are being discovered: no agent exists to call"))
    }
}

impl WasiView for AgentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// golem-schema's wire UUID of a uuid.
pub(crate) fn uuid_wire(id: uuid::Uuid) -> wire::Uuid {
    let (high_bits, low_bits) = id.as_u64_pair();
    wire::Uuid { high_bits, low_bits }
}

pub(crate) fn describe_agent_error(e: &AgentError) -> String {
    match e {
        AgentError::InvalidInput(m) => format!("invalid input: {m}"),
        AgentError::InvalidMethod(m) => format!("invalid method: {m}"),
        AgentError::InvalidType(m) => format!("invalid type: {m}"),
        AgentError::InvalidAgentId(m) => format!("invalid agent id: {m}"),
        AgentError::CustomError(typed) => match golem_schema::wit::decode_typed(typed) {
            Ok(t) => match golem_schema::render::to_json_value(t.graph(), t.root_type(), t.value()) {
                Ok(json) => json.to_string(),
                Err(_) => "a custom error".to_string(),
            },
            Err(_) => "a custom error".to_string(),
        },
    }
}
