//! The feeder: events from Apache Pulsar (or a JSONL file) into the leaf
//! workers of every running job, without loss.
//!
//! The contract it keeps: **a source message is acknowledged only after the
//! runtime has durably acknowledged every delivery made from it**, and a message
//! that can never be delivered (not JSON, no time, no key, wrong types) goes to
//! the dead-letter topic with its reason, and is then acknowledged. So a
//! crash, a restart, or a runtime that is down can only cause a message to be
//! delivered again, never to be lost; and because an event without `event_id`
//! gets its Pulsar message id as id, a repeated delivery is recognised by the
//! workers and counted once.
//!
//! Layout: [`prepare`] (pure: messages to validated events and dead letters),
//! [`routes`] (which leaf workers run, read from the runtime's job plans),
//! [`target`] (the runtime's HTTP API: per-worker delivery as on Golem, or one
//! bulk request per batch on the local runtime; retry with backoff),
//! [`pipeline`] (batching, delivery, dead letters, acknowledgement),
//! [`source`] (Pulsar consumer, file), [`dead_letters`] (the dead-letter
//! topic), [`client`] (Pulsar TLS and
//! authentication from the options), [`wire`] (the feeder's own Pulsar
//! client on the binary protocol) and [`metrics`]. [`sink`] is `feeder
//! sink`, the other way: a job's changes out to Pulsar or a webhook.
#![deny(missing_docs)]

pub mod cli;
pub mod client;
pub mod dead_letters;
pub mod metrics;
pub mod options;
pub mod pipeline;
pub mod prepare;
pub mod routes;
pub mod sink;
pub mod source;
pub mod target;
pub mod wire;

pub use options::Options;
