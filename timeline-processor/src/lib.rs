//! The timeline-processor component: derived workers.
//!
//! A `TimelineProcessor(node, key)` agent runs one derived node of one key. It
//! keeps nothing, so it is ephemeral: each call asks `Core` how to evaluate
//! the node, reads every leaf below it from its `EventProcessor` at once, and
//! evaluates the node with `timeline::Evaluation`, the code the local
//! runtime runs (`timeline_api::reads`). A read costs one round of
//! concurrent calls to the leaves, however deep the expression, and grows no
//! oplog.

#![deny(missing_docs)]

#[cfg(target_family = "wasm")]
mod agent;
