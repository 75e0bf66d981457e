//! The changes component: a job's changes on Golem, in the shape the local
//! runtime gives them (`timeline_api::views::ChangeView`).
//!
//! - `KeyWatch(job, key)`: on `refresh` (the feeder's, after it delivered the
//!   key's events to the leaves) reads the job's per-key outputs for the key,
//!   compares them with what it saw last ([`timeline::changes::diff`], the
//!   code the local runtime runs) and hands the differences to the job's
//!   `Changes`. A refresh that finds nothing new records nothing, so a
//!   repeated refresh is harmless; Golem makes the call to `Changes` happen
//!   once even when the watcher is replayed.
//! - `JobWatch(job)`: on `refresh` (the feeder's, once the contributors of a
//!   delivery took it in) reads the job's aggregate and metric outputs at the
//!   latest event time and records a change per group and function whose
//!   value changed (`timeline_api::views::group_changes`, as the local
//!   runtime does).
//! - `Changes(job)`: gives each change the next id and keeps them; reads are
//!   pages after an id, filtered by a condition in the DSL.
//!
//! Calls go one way (watchers → changes, watchers → the workers they read).
//! Long polls and Server-Sent Events are the local runtime's only.

#![deny(missing_docs)]

pub mod log;

#[cfg(target_family = "wasm")]
mod agent;
