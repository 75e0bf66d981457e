//! The core component: the orchestrator on Golem.
//!
//! The `Core()` agent (compiled for `wasm32-wasip2` only) holds the job
//! registry, `timeline::registry::JobRegistry`, the one the local runtime
//! runs too; [`service`] turns its answers into the views that cross agent
//! boundaries.

#![deny(missing_docs)]

pub mod service;

#[cfg(target_family = "wasm")]
mod agent;
