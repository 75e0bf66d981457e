//! The `timeline` command and the embedded local runtime.
//!
//! - [`batch`]: `timeline eval`, a whole JSONL file through the same workers the
//!   runtimes use, results per key.
//! - [`csv_input`]: CSV events for `timeline eval`, read as the JSONL they mean.
//! - [`generate`]: `timeline gen cirr`, synthetic playback sessions for examples,
//!   tests and benchmarks.
//! - [`engine`]: the in-memory engine: every job's workers for every key.
//! - [`store`]: durability: jobs and the event log in redb.
//! - [`durable`]: recovery and the single writer: durable before applied.
//! - [`snapshot`]: snapshots of worker state, so recovery replays only the log's tail.
//! - [`body`]: event batches as HTTP bodies carry them.
//! - [`http`]: `timeline serve`, the HTTP API over the engine and the writer.
//! - [`dashboard`]: the web page `timeline serve` shows at `/`.
//! - [`metrics`]: the server's Prometheus metrics.
//! - [`output`]: result formats of `timeline eval`.
//! - [`plan_tree`]: `timeline plan --tree`, a plan drawn to read.
//! - [`cli`]: the command line.

#![deny(missing_docs)]

pub mod batch;
pub mod body;
pub mod cli;
pub mod columnar;
pub mod csv_input;
pub mod dashboard;
pub mod durable;
pub mod engine;
pub mod generate;
pub mod http;
pub mod metrics;
pub mod output;
pub mod plan_tree;
pub mod snapshot;
pub mod store;
