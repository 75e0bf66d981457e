//! Loading components: compile (or reuse a compiled copy), link, and ask each
//! for its agent types.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtx;

use crate::agent_type::AgentTypeInfo;
use crate::bindings::AgentComponentPre;
use crate::state::AgentState;

/// A component ready to instantiate, with its agent types.
pub struct LoadedComponent {
    /// Its name in the manifest.
    pub name: String,
    /// The id agents see in `GOLEM_COMPONENT_ID` (derived from the name).
    pub id: uuid::Uuid,
    /// Linked and ready to instantiate.
    pub pre: AgentComponentPre<AgentState>,
    /// What `discover-agent-types` answered.
    pub agent_types: Vec<Arc<AgentTypeInfo>>,
}

/// The engine the host runs components on: component model with async.
pub fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    Engine::new(&config).map_err(|e| anyhow!("{e}"))
}

/// Compiles `wasm` (or loads its compiled copy from `cache`, keyed by the
/// file's hash and the engine's settings).
pub fn compile(engine: &Engine, wasm: &Path, cache: Option<&Path>) -> Result<Component> {
    let bytes = std::fs::read(wasm).with_context(|| {
        format!(
            "reading {} (build the components first: scripts/build-components.sh)",
            wasm.display()
        )
    })?;
    let Some(cache) = cache else {
        return Component::new(engine, &bytes).map_err(|e| anyhow!("compiling {}: {e:?}", wasm.display()));
    };
    let mut hasher = Sha256::new();
    hasher.update(&bytes);
    hasher.update(format!("{:?}", engine_fingerprint(engine)).as_bytes());
    let digest = hasher.finalize();
    let stem = wasm.file_stem().and_then(|s| s.to_str()).unwrap_or("component");
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let compiled: PathBuf = cache.join(format!("{stem}-{hex}.cwasm"));
    if compiled.exists() {
        // SAFETY: the file was written by `serialize` below for this engine's
        // settings (they are part of its name), and nothing else writes there.
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &compiled) } {
            return Ok(c);
        }
    }
    let component = Component::new(engine, &bytes).map_err(|e| anyhow!("compiling {}: {e:?}", wasm.display()))?;
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let serialized = component.serialize().map_err(|e| anyhow!("{e}"))?;
    let partial = compiled.with_extension(format!("cwasm.{}", std::process::id()));
    std::fs::write(&partial, serialized).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &compiled)?;
    Ok(component)
}

fn engine_fingerprint(engine: &Engine) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// Links `component` and asks it for its agent types.
pub async fn load(engine: &Engine, name: &str, wasm: &Path, cache: Option<&Path>) -> Result<LoadedComponent> {
    let component = compile(engine, wasm, cache)?;
    let mut linker: Linker<AgentState> = Linker::new(engine);
    crate::imports::add_to_linker(&mut linker).map_err(|e| anyhow!("{e}"))?;
    crate::imports::trap_unknown_imports(&mut linker, &component).map_err(|e| anyhow!("{e}"))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| anyhow!("linking {name} ({}): {e:?}", wasm.display()))?;
    let pre = AgentComponentPre::new(pre).map_err(|e| anyhow!("{name} is not an agent component: {e}"))?;
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("golem-host:{name}").as_bytes());
    let agent_types = discover(&pre, id)
        .await
        .with_context(|| format!("discovering the agent types of {name}"))?;
    Ok(LoadedComponent {
        name: name.to_string(),
        id,
        pre,
        agent_types,
    })
}

/// Instantiates a component once, outside any agent, for its declarations.
async fn discover(pre: &AgentComponentPre<AgentState>, id: uuid::Uuid) -> Result<Vec<Arc<AgentTypeInfo>>> {
    let state = AgentState::detached(
        WasiCtx::builder()
            .env("GOLEM_AGENT_ID", "discovery()")
            .env("GOLEM_COMPONENT_ID", id.to_string())
            .inherit_stderr()
            .build(),
        ResourceTable::new(),
    );
    let mut store = Store::new(pre.engine(), state);
    let bindings = pre.instantiate_async(&mut store).await.map_err(|e| anyhow!("{e:?}"))?;
    let declared = bindings
        .golem_agent_guest()
        .call_discover_agent_types(&mut store)
        .await
        .map_err(|e| anyhow!("{e:?}"))?
        .map_err(|e| anyhow!("{}", crate::state::describe_agent_error(&e)))?;
    declared
        .into_iter()
        .map(|t| {
            let name = t.type_name.clone();
            AgentTypeInfo::new(t)
                .map(Arc::new)
                .with_context(|| format!("agent type {name}"))
        })
        .collect()
}
