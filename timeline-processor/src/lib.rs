//! The timeline-processor component: derived workers.
//!
//! A `TimelineProcessor(key, node)` agent runs one derived node of one key. It
//! keeps no timeline: asked for a result, it reads its children's outputs
//! (event processors and other timeline processors, by awaited calls down the
//! plan's tree, which has no cycles) and computes its own with
//! [`DerivedWorker`], the same code the local runtime runs.

#![deny(missing_docs)]

mod logic;

pub use logic::DerivedWorker;

#[cfg(target_family = "wasm")]
mod agent;
