//! The event-processor component: leaf workers.
//!
//! An `EventProcessor(node, key)` agent runs one leaf node of one key: events
//! in, state timeline out. [`LeafWorker`] is all of its logic and is plain
//! Rust; the agent (built for `wasm32-wasip2` only) adds durability through
//! Golem and fetches its node's definition from the `Core` agent at its first
//! batch. Its reads are read-only: Golem serves them from a cache until the
//! next batch.

#![deny(missing_docs)]

mod logic;

pub use logic::LeafWorker;

#[cfg(target_family = "wasm")]
mod agent;
