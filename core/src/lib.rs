//! The orchestrator of Golem Timeline.
//!
//! [`JobRegistry`] is the whole of its logic: it takes a job (a name and DSL
//! text), checks and plans it, names every worker by its node's content hash,
//! marks the nodes another job already runs (computation reuse), and keeps the
//! jobs and the set of live nodes that feeders and runtimes read. It is plain
//! Rust: the local runtime calls it directly, and the Golem `Core` agent
//! (compiled for `wasm32-wasip2` only) wraps it.

#![deny(missing_docs)]

pub mod registry;
pub mod service;

pub use registry::{Job, JobRegistry, SubmitError, Submitted};

#[cfg(target_family = "wasm")]
mod agent;
