//! What crosses the boundaries of the Golem agents.
//!
//! [`views`] are the values agent methods take and return (and their HTTP
//! bodies): flat, non-recursive types, each convertible from the `timeline`
//! type it shows. They derive Golem's `Schema` when built for wasm, and are
//! plain structs natively, so conversions are tested with `cargo test`.
//! Timelines themselves travel between agents as JSON of
//! [`timeline::Output`], which keeps rising spans exact.
//!
//! `agents` (wasm only) defines every agent type once: components implement
//! them and call each other through the clients the definitions generate.
//! `reads` (wasm only) is how agents read a key's nodes.

#![deny(missing_docs)]

pub mod views;

#[cfg(target_family = "wasm")]
#[allow(missing_docs)] // the items `agent_definition` generates carry no docs
pub mod agents;

#[cfg(target_family = "wasm")]
pub mod reads;
