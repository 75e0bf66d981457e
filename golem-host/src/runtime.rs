//! Agents: created on their first call, one task and one wasm instance each,
//! running one invocation at a time from their queue, as Golem runs them.
//!
//! An agent is named by its type and constructor parameters
//! (`EventProcessor("cirr-leaf","s1")`); the first call to a name creates it
//! (`initialize`), later calls queue behind each other. Agent-to-agent calls
//! go through the same queues, so an agent that awaits another does not block
//! anything but itself. An ephemeral type gets a fresh agent for every call.
//! A trap ends the agent: it answers every later call with the trap, as a
//! Golem agent that ran out of retries does.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use golem_schema::SchemaValue;
use golem_schema::wit::{decode_value, encode_value, wire};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wasmtime::Store;
use wasmtime_wasi::WasiCtx;

use crate::agent_id;
use crate::agent_type::{AgentTypeInfo, Cache};
use crate::bindings::AgentComponent;
use crate::bindings::exports::golem::api::load_snapshot::Snapshot as LoadSnapshot;
use crate::bindings::golem::agent::common::{AgentPrincipal, Principal};
use crate::call::Answer;
pub use crate::call::{CallError, Caller};
use crate::components::LoadedComponent;
use crate::state::{AgentState, Dispatch, describe_agent_error, uuid_wire};

struct Invocation {
    method: String,
    input: wire::SchemaValueTree,
    caller: Caller,
    reply: oneshot::Sender<Answer>,
}

enum Command {
    Invoke(Invocation),
    /// Save a snapshot (if the type snapshots), drop the instance and start a
    /// fresh one from it; answers whether a snapshot was used.
    Restart(oneshot::Sender<Result<bool, CallError>>),
}

/// Counts of what the agents did, for figures and tests.
#[derive(Debug, Default)]
struct Counters {
    /// (agent type, method) -> (calls over HTTP, calls from agents).
    calls: Mutex<BTreeMap<(String, String), (u64, u64)>>,
    instances: AtomicU64,
    restored: AtomicU64,
    cache_hits: AtomicU64,
}

/// What the host has done so far.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Agents alive now (durable ones).
    pub agents: usize,
    /// Wasm instances started (agents created, restarted or ephemeral).
    pub instances: u64,
    /// Instances started from a snapshot.
    pub restored: u64,
    /// Read-only calls answered from the cache.
    pub cache_hits: u64,
    /// Per agent type and method: calls over HTTP and from other agents.
    pub calls: Vec<MethodCalls>,
}

/// Calls of one method.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MethodCalls {
    /// Agent type.
    pub agent_type: String,
    /// Method.
    pub method: String,
    /// Calls over HTTP.
    pub http: u64,
    /// Calls from other agents.
    pub rpc: u64,
}

impl Stats {
    /// Calls of every method of every type, HTTP and agent calls together.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.http + c.rpc).sum()
    }

    /// Agent-to-agent calls.
    pub fn rpc_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.rpc).sum()
    }
}

/// Every component, every agent type, every live agent.
pub struct Runtime {
    components: Vec<LoadedComponent>,
    types: BTreeMap<String, (usize, Arc<AgentTypeInfo>)>,
    agents: Mutex<HashMap<String, Handle>>,
    counters: Counters,
    timeout: Duration,
}

#[derive(Clone)]
struct Handle {
    queue: mpsc::UnboundedSender<Command>,
}

impl Runtime {
    /// A runtime over `components`; a call that takes longer than `timeout`
    /// fails.
    pub fn new(components: Vec<LoadedComponent>, timeout: Duration) -> Result<Arc<Self>> {
        let mut types = BTreeMap::new();
        for (i, c) in components.iter().enumerate() {
            for t in &c.agent_types {
                if types.insert(t.name.clone(), (i, t.clone())).is_some() {
                    bail!("agent type `{}` is defined by two components", t.name);
                }
            }
        }
        Ok(Arc::new(Runtime {
            components,
            types,
            agents: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            timeout,
        }))
    }

    /// The loaded components.
    pub fn components(&self) -> &[LoadedComponent] {
        &self.components
    }

    /// The agent type named `name`.
    pub fn agent_type(&self, name: &str) -> Option<&Arc<AgentTypeInfo>> {
        self.types.get(name).map(|(_, t)| t)
    }

    /// Every agent type, by name.
    pub fn agent_types(&self) -> impl Iterator<Item = &Arc<AgentTypeInfo>> {
        self.types.values().map(|(_, t)| t)
    }

    /// Reads an agent id back (see [`agent_id::parse_agent_id`]).
    pub fn parse_agent_id(&self, id: &str) -> Result<(Arc<AgentTypeInfo>, SchemaValue, Option<uuid::Uuid>), String> {
        agent_id::parse_agent_id(id, |name| self.agent_type(name).cloned())
    }

    /// Calls `method` of the agent of type `agent_type` with `constructor`,
    /// creating the agent if it does not exist. The answer arrives on the
    /// returned channel; the call is queued before this returns.
    pub fn call(
        self: &Arc<Self>,
        agent_type: &str,
        constructor: wire::SchemaValueTree,
        method: &str,
        input: wire::SchemaValueTree,
        caller: Caller,
    ) -> oneshot::Receiver<Answer> {
        let (reply, answer) = oneshot::channel();
        let started = self.start_call(agent_type, constructor, method, input, caller, reply);
        if let Err((reply, e)) = started {
            let _ = reply.send(Err(e));
        }
        answer
    }

    /// Queues the call, or gives `reply` back with why it cannot be made.
    fn start_call(
        self: &Arc<Self>,
        agent_type: &str,
        constructor: wire::SchemaValueTree,
        method: &str,
        input: wire::SchemaValueTree,
        caller: Caller,
        reply: oneshot::Sender<Answer>,
    ) -> Result<(), (oneshot::Sender<Answer>, CallError)> {
        let Some((component, ty)) = self.types.get(agent_type).cloned() else {
            return Err((
                reply,
                CallError::NotFound(format!("no agent type `{agent_type}` is deployed")),
            ));
        };
        if ty.method(method).is_none() {
            return Err((
                reply,
                CallError::NotFound(format!("agent type `{agent_type}` has no method `{method}`")),
            ));
        }
        let parameters = match decode_value(&constructor) {
            Ok(v) => v,
            Err(e) => return Err((reply, CallError::NotFound(format!("constructor of {agent_type}: {e}")))),
        };
        self.count(agent_type, method, &caller);
        let invocation = Invocation {
            method: method.to_string(),
            input,
            caller,
            reply,
        };
        if ty.ephemeral {
            let phantom = uuid::Uuid::new_v4();
            let id = match agent_id::agent_id(&ty, &parameters, Some(phantom)) {
                Ok(id) => id,
                Err(e) => return Err((invocation.reply, CallError::NotFound(e))),
            };
            let runtime = self.clone();
            tokio::spawn(async move {
                let result = match Agent::start(&runtime, component, &ty, &id, &parameters, None).await {
                    Ok(mut agent) => {
                        agent
                            .invoke(invocation.method, invocation.input, invocation.caller)
                            .await
                    }
                    Err(e) => Err(e),
                };
                let _ = invocation.reply.send(result);
            });
            return Ok(());
        }
        let id = match agent_id::agent_id(&ty, &parameters, None) {
            Ok(id) => id,
            Err(e) => return Err((invocation.reply, CallError::NotFound(e))),
        };
        let mut agents = self.agents.lock().expect("agents lock");
        let handle = agents.entry(id.clone()).or_insert_with(|| {
            let (queue, commands) = mpsc::unbounded_channel();
            tokio::spawn(run_agent(
                self.clone(),
                component,
                ty.clone(),
                id.clone(),
                parameters,
                commands,
            ));
            Handle { queue }
        });
        if let Err(mpsc::error::SendError(Command::Invoke(invocation))) = handle.queue.send(Command::Invoke(invocation))
        {
            agents.remove(&id);
            return Err((invocation.reply, CallError::Failed(format!("agent {id} has stopped"))));
        }
        Ok(())
    }

    fn count(&self, agent_type: &str, method: &str, caller: &Caller) {
        let mut calls = self.counters.calls.lock().expect("counters lock");
        let entry = calls.entry((agent_type.to_string(), method.to_string())).or_default();
        match caller {
            Caller::Http => entry.0 += 1,
            Caller::Agent { .. } => entry.1 += 1,
        }
    }

    /// Restarts every live agent: each saves a snapshot (if its type
    /// snapshots), drops its instance and starts a fresh one from it (or from
    /// its constructor). Returns how many agents restarted and how many of
    /// them from a snapshot.
    pub async fn restart_all(&self) -> Result<(usize, usize), CallError> {
        let handles: Vec<(String, Handle)> = {
            let agents = self.agents.lock().expect("agents lock");
            let mut all: Vec<_> = agents.iter().map(|(k, h)| (k.clone(), h.clone())).collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        let mut answers = Vec::with_capacity(handles.len());
        for (id, handle) in &handles {
            let (reply, answer) = oneshot::channel();
            if handle.queue.send(Command::Restart(reply)).is_ok() {
                answers.push((id.clone(), answer));
            }
        }
        let (mut restarted, mut from_snapshot) = (0, 0);
        for (id, answer) in answers {
            match answer.await {
                Ok(Ok(snapshot)) => {
                    restarted += 1;
                    from_snapshot += usize::from(snapshot);
                }
                Ok(Err(e)) => return Err(CallError::Failed(format!("restarting {id}: {e}"))),
                Err(_) => return Err(CallError::Failed(format!("restarting {id}: the agent stopped"))),
            }
        }
        Ok((restarted, from_snapshot))
    }

    /// The ids of the live agents, sorted.
    pub fn agent_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.agents.lock().expect("agents lock").keys().cloned().collect();
        ids.sort();
        ids
    }

    /// What the agents did so far.
    pub fn stats(&self) -> Stats {
        let calls = self.counters.calls.lock().expect("counters lock");
        Stats {
            agents: self.agents.lock().expect("agents lock").len(),
            instances: self.counters.instances.load(Ordering::Relaxed),
            restored: self.counters.restored.load(Ordering::Relaxed),
            cache_hits: self.counters.cache_hits.load(Ordering::Relaxed),
            calls: calls
                .iter()
                .map(|((t, m), (http, rpc))| MethodCalls {
                    agent_type: t.clone(),
                    method: m.clone(),
                    http: *http,
                    rpc: *rpc,
                })
                .collect(),
        }
    }

    fn forget(&self, id: &str) {
        self.agents.lock().expect("agents lock").remove(id);
    }
}

impl Dispatch for Runtime {
    fn agent_type(&self, name: &str) -> Option<Arc<AgentTypeInfo>> {
        Runtime::agent_type(self, name).cloned()
    }

    fn call(
        self: Arc<Self>,
        agent_type: &str,
        constructor: wire::SchemaValueTree,
        method: &str,
        input: wire::SchemaValueTree,
        caller: Caller,
    ) -> oneshot::Receiver<Answer> {
        Runtime::call(&self, agent_type, constructor, method, input, caller)
    }
}

/// A running instance of an agent.
struct Agent {
    store: Store<AgentState>,
    bindings: AgentComponent,
    ty: Arc<AgentTypeInfo>,
    timeout: Duration,
}

enum Start {
    Initialize(wire::SchemaValueTree),
    Restore(LoadSnapshot),
}

impl Agent {
    /// A fresh instance: initialized with `constructor`, or loaded from
    /// `snapshot`.
    async fn start(
        runtime: &Arc<Runtime>,
        component: usize,
        ty: &Arc<AgentTypeInfo>,
        id: &str,
        constructor: &SchemaValue,
        snapshot: Option<LoadSnapshot>,
    ) -> Result<Agent, CallError> {
        let loaded = &runtime.components[component];
        let failed = |what: &str, e: wasmtime::Error| CallError::Failed(format!("{what} of {id}: {e:?}"));
        let wasi = WasiCtx::builder()
            .env("GOLEM_AGENT_ID", id)
            .env("GOLEM_COMPONENT_ID", loaded.id.to_string())
            .inherit_stderr()
            .build();
        let dispatch: Arc<dyn Dispatch> = runtime.clone();
        let state = AgentState::new(wasi, dispatch, id, loaded.id);
        let mut store = Store::new(loaded.pre.engine(), state);
        let bindings = loaded
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| failed("instantiation", e))?;
        runtime.counters.instances.fetch_add(1, Ordering::Relaxed);
        let mut agent = Agent {
            store,
            bindings,
            ty: ty.clone(),
            timeout: runtime.timeout,
        };
        let start = match snapshot {
            Some(s) => {
                runtime.counters.restored.fetch_add(1, Ordering::Relaxed);
                Start::Restore(s)
            }
            None => Start::Initialize(
                encode_value(constructor).map_err(|e| CallError::NotFound(format!("constructor of {id}: {e}")))?,
            ),
        };
        agent.begin(id, start).await?;
        Ok(agent)
    }

    async fn begin(&mut self, id: &str, start: Start) -> Result<(), CallError> {
        let guest = self.bindings.golem_agent_guest().clone();
        let snapshots = self.bindings.golem_api_load_snapshot().clone();
        let name = self.ty.name.clone();
        let restored = matches!(start, Start::Restore(_));
        let outcome = tokio::time::timeout(
            self.timeout,
            self.store.run_concurrent(async move |a| match start {
                Start::Initialize(input) => guest
                    .call_initialize(a, name, input, Principal::Anonymous)
                    .await
                    .map(|r| r.map_err(|e| describe_agent_error(&e))),
                Start::Restore(snapshot) => snapshots.call_load(a, snapshot).await,
            }),
        )
        .await
        .map_err(|_| CallError::Failed(format!("starting {id} took over {:?}", self.timeout)))?;
        let what = if restored {
            "loading the snapshot"
        } else {
            "initialization"
        };
        match outcome {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(CallError::Failed(format!("{what} of {id} failed: {e}"))),
            Ok(Err(e)) | Err(e) => Err(CallError::Failed(format!("{what} of {id} trapped: {e:?}"))),
        }
    }

    async fn invoke(&mut self, method: String, input: wire::SchemaValueTree, caller: Caller) -> Answer {
        let read_only = self.ty.method(&method).and_then(|m| m.read_only).is_some();
        self.store.data_mut().read_only = read_only.then(|| method.clone());
        let principal = match caller {
            Caller::Http => Principal::Anonymous,
            Caller::Agent { agent_id, component_id } => Principal::Agent(AgentPrincipal {
                agent_id: wire::AgentId {
                    component_id: wire::ComponentId {
                        uuid: uuid_wire(component_id),
                    },
                    agent_id,
                },
            }),
        };
        let guest = self.bindings.golem_agent_guest().clone();
        let name = method.clone();
        let outcome = tokio::time::timeout(
            self.timeout,
            self.store
                .run_concurrent(async move |a| guest.call_invoke(a, name, input, principal).await),
        )
        .await;
        self.store.data_mut().read_only = None;
        match outcome {
            Err(_) => Err(CallError::Failed(format!(
                "`{method}` of {} did not answer within {:?}",
                self.store.data().agent_id,
                self.timeout
            ))),
            Ok(Ok(Ok(Ok(value)))) => Ok(value),
            Ok(Ok(Ok(Err(e)))) => Err(CallError::Agent(describe_agent_error(&e))),
            Ok(Ok(Err(trap))) | Ok(Err(trap)) => Err(CallError::Failed(format!(
                "`{method}` of {} trapped: {trap:?}",
                self.store.data().agent_id
            ))),
        }
    }

    async fn save(&mut self) -> Result<LoadSnapshot, CallError> {
        let saver = self.bindings.golem_api_save_snapshot().clone();
        let outcome = tokio::time::timeout(
            self.timeout,
            self.store.run_concurrent(async move |a| saver.call_save(a).await),
        )
        .await
        .map_err(|_| CallError::Failed("saving a snapshot timed out".to_string()))?;
        match outcome {
            Ok(Ok(s)) => Ok(LoadSnapshot {
                payload: s.payload,
                mime_type: s.mime_type,
            }),
            Ok(Err(e)) | Err(e) => Err(CallError::Failed(format!(
                "saving a snapshot of {} trapped: {e:?}",
                self.store.data().agent_id
            ))),
        }
    }
}

/// A read-only answer kept for later calls with the same input.
struct Cached {
    input: Vec<u8>,
    at: Instant,
    value: Option<SchemaValue>,
}

/// The task of one durable agent: starts its instance, then runs its queue.
async fn run_agent(
    runtime: Arc<Runtime>,
    component: usize,
    ty: Arc<AgentTypeInfo>,
    id: String,
    constructor: SchemaValue,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut agent = Agent::start(&runtime, component, &ty, &id, &constructor, None).await;
    let mut cache: HashMap<String, Vec<Cached>> = HashMap::new();
    while let Some(command) = commands.recv().await {
        let running = match &mut agent {
            Ok(a) => a,
            Err(e) => {
                let e = e.clone();
                match command {
                    Command::Invoke(i) => {
                        let _ = i.reply.send(Err(e));
                    }
                    Command::Restart(reply) => {
                        let _ = reply.send(Err(e));
                    }
                }
                continue;
            }
        };
        match command {
            Command::Invoke(i) => {
                let policy = ty.method(&i.method).and_then(|m| m.read_only);
                let key = serialize_tree(&i.input);
                if let (Some(policy), Some(hits)) = (policy, cache.get(&i.method))
                    && policy != Cache::None
                    && let Some(hit) = hits.iter().find(|c| {
                        c.input == key
                            && match policy {
                                Cache::Ttl(ttl) => c.at.elapsed() < ttl,
                                _ => true,
                            }
                    })
                {
                    runtime.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                    let value = hit.value.as_ref().map(encode_value).transpose();
                    let _ = i.reply.send(value.map_err(|e| CallError::Failed(e.to_string())));
                    continue;
                }
                let result = running.invoke(i.method.clone(), i.input, i.caller).await;
                match (&result, policy) {
                    (_, None) => cache.clear(),
                    (Ok(value), Some(p)) if p != Cache::None => {
                        if let Ok(value) = value.as_ref().map(decode_value).transpose() {
                            let entries = cache.entry(i.method.clone()).or_default();
                            entries.retain(|c| c.input != key);
                            entries.push(Cached {
                                input: key,
                                at: Instant::now(),
                                value,
                            });
                        }
                    }
                    _ => {}
                }
                if let Err(CallError::Failed(e)) = &result {
                    agent = Err(CallError::Failed(format!("agent {id} failed earlier: {e}")));
                }
                let _ = i.reply.send(result);
            }
            Command::Restart(reply) => {
                cache.clear();
                let snapshot = if ty.snapshotting {
                    match running.save().await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    }
                } else {
                    None
                };
                let used = snapshot.is_some();
                agent = Agent::start(&runtime, component, &ty, &id, &constructor, snapshot).await;
                let _ = reply.send(agent.as_ref().map(|_| used).map_err(Clone::clone));
            }
        }
    }
    runtime.forget(&id);
}

/// A byte form of a value tree, to compare inputs.
fn serialize_tree(tree: &wire::SchemaValueTree) -> Vec<u8> {
    format!("{tree:?}").into_bytes()
}
