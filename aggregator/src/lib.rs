//! The aggregator component: aggregates across keys on Golem.
//!
//! Four agents, each a thin shell over `timeline::aggregate` and
//! `timeline::metric`, the code the local runtime runs:
//!
//! - `Contributor(node, key)`: pushes one key's contributions to an aggregate.
//!   On `refresh` it reads the key's source timeline and group column (one
//!   evaluation over the key's leaves), cuts the source by group and sends the
//!   changes ([`timeline::aggregate::Contributor`]) to the aggregators,
//!   retracting it from groups the key left. The feeder calls `refresh` after
//!   delivering a key's events.
//! - `Aggregator(node, group, shard)`: one group's (one shard's) members
//!   ([`timeline::GroupAggregator`]), folded into a `Partial` when read.
//! - `Aggregate(node)`: the groups of an aggregate node
//!   ([`timeline::aggregate::GroupDirectory`]); reads fan out to every
//!   group's shards at once and merge their partials.
//! - `Metric(node)`: arithmetic over aggregates, group by group (ephemeral).
//!
//! Calls go one way (contributor → aggregator, metric → aggregate →
//! aggregator), so awaited calls never form a cycle.

#![deny(missing_docs)]

#[cfg(target_family = "wasm")]
mod agent;
