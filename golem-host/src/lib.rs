//! A Golem 1.6 host for tests: runs this project's built agent components on
//! upstream wasmtime and serves their HTTP routes, the way
//! `pulsar-test-broker` stands in for Pulsar.
//!
//! What it does as Golem does: loads the components `golem.yaml` names (as
//! `scripts/build-components.sh` builds them), asks each for its agent types
//! (`discover-agent-types`), creates an agent on its first call
//! (`initialize` with the constructor parameters, which are its identity),
//! runs one invocation at a time per agent, routes agent-to-agent calls
//! (`golem:agent/host` wasm-rpc) between agents of any component, gives each
//! agent its `GOLEM_AGENT_ID` and `GOLEM_COMPONENT_ID`, enforces read-only
//! methods (no calls; answers cached per their policy), and serves the
//! agents' endpoints from their own annotations and the manifest's httpApi
//! deployment with Golem's route rules ([`routes`]) and JSON mapping
//! ([`values`]). An import it does not implement traps when called, naming it.
//!
//! What it does not: no oplog, so no replay. Recovery is shown by
//! [`runtime::Runtime::restart_all`]: every agent saves a snapshot, its
//! instance is dropped, and a fresh one loads the snapshot (agents whose type
//! does not snapshot start again from their constructor). No deploy API, no
//! worker executor limits, no authentication, no CORS, no webhooks.
//!
//! Layers, each importing only those below it: [`values`], [`routes`] and
//! [`manifest`] (pure); [`call`] (what a call is); [`bindings`] (the WIT);
//! [`agent_type`] and [`agent_id`] (declarations, identities); [`state`]
//! (an instance's store data, and [`state::Dispatch`], what its host
//! functions need of the runtime); [`imports`] (the host functions);
//! [`components`] (loading); [`runtime`] (agents and their queues);
//! [`gateway`] (HTTP); [`cli`].

pub mod agent_id;
pub mod agent_type;
pub mod bindings;
pub mod call;
pub mod cli;
pub mod components;
pub mod gateway;
pub mod imports;
pub mod manifest;
pub mod routes;
pub mod runtime;
pub mod state;
pub mod values;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

pub use gateway::Gateway;
pub use runtime::{Runtime, Stats};

/// Where the application is and how to run it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The application manifest (`golem.yaml`).
    pub manifest: PathBuf,
    /// The manifest environment whose presets and deployments to use.
    pub environment: String,
    /// Cargo's target directory (`{{ cargoTarget }}`).
    pub target_dir: PathBuf,
    /// Where compiled components are kept between runs (none: compile each time).
    pub cache_dir: Option<PathBuf>,
    /// A call that takes longer fails.
    pub call_timeout: Duration,
}

impl Options {
    /// The options for this repository's `golem.yaml` and target directory.
    pub fn for_workspace(root: &std::path::Path) -> Self {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Options {
            manifest: root.join("golem.yaml"),
            environment: "local".to_string(),
            cache_dir: Some(target_dir.join("golem-host")),
            target_dir,
            call_timeout: Duration::from_secs(120),
        }
    }
}

/// The loaded application: its runtime and its HTTP deployments.
pub struct Host {
    runtime: Arc<Runtime>,
    deployments: Vec<manifest::Deployment>,
}

impl Host {
    /// Loads every component of the manifest (compiling what is not cached).
    pub async fn load(options: &Options) -> Result<Host> {
        let app = manifest::Application::load(&options.manifest, &options.environment, &options.target_dir)?;
        let engine = components::engine()?;
        let mut loaded = Vec::new();
        for c in &app.components {
            let component = components::load(&engine, &c.name, &c.wasm, options.cache_dir.as_deref())
                .await
                .with_context(|| format!("loading component {}", c.name))?;
            loaded.push(component);
        }
        let runtime = Runtime::new(loaded, options.call_timeout)?;
        // Refuse what `golem deploy` would refuse before serving anything.
        Gateway::new(runtime.clone(), &app.deployments)?;
        Ok(Host {
            runtime,
            deployments: app.deployments,
        })
    }

    /// The runtime: agents, calls, restarts, counts.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The HTTP gateway for the manifest's deployments, serving their
    /// domains at `port`.
    pub fn gateway(&self, port: u16) -> Result<Gateway> {
        Ok(Gateway::new(self.runtime.clone(), &self.deployments)?.listening_on(port))
    }

    /// Serves the gateway on `listener` until the future is dropped.
    pub async fn serve(&self, listener: tokio::net::TcpListener, any_host: bool) -> Result<()> {
        let port = listener.local_addr()?.port();
        let router = self.gateway(port)?.any_host(any_host).into_router();
        axum::serve(listener, router).await?;
        Ok(())
    }
}
