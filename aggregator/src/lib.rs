//! The aggregator component: aggregates across keys on Golem.
//!
//! Four agents, each a thin shell over the plain logic here and in
//! `timeline::aggregate` / `timeline::metric` (the local runtime runs the same):
//!
//! - `Contributor(node, key)`: pushes one key's contributions to an aggregate.
//!   On `refresh` it reads the key's source timeline and group column from
//!   their workers, cuts the source by group ([`Contributor::pushes`]) and
//!   sends each changed contribution to its aggregator, retracting it from
//!   groups the key left. The feeder calls `refresh` after delivering a key's
//!   events.
//! - `Aggregator(node, group, shard)`: one group's (one shard's) members
//!   ([`timeline::Aggregator`]), folded into a `Partial` when read.
//! - `Aggregate(node)`: the groups of an aggregate node ([`GroupDirectory`]);
//!   reads fan out to every group's shards and merge their partials.
//! - `Metric(node)`: arithmetic over aggregates, group by group.
//!
//! Calls go one way (contributor → aggregator, metric → aggregate →
//! aggregator), so awaited calls never form a cycle.

#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use timeline::aggregate::contributions;
use timeline::{AggFn, AggregateSpec, Group, NodeId, Operator, Partial, PlanNode, Time, Timeline};

/// What `Contributor::refresh` must send: `contribution` for `group`'s
/// aggregator `shard`, or `None` to retract the key from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The group.
    pub group: Group,
    /// The aggregator of the group that holds the key.
    pub shard: u32,
    /// The key's new contribution, or none when it left the group.
    pub contribution: Option<Timeline>,
}

/// The state of a `Contributor(node, key)` agent: what it last sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contributor {
    /// Per group: the contribution last sent.
    sent: Vec<(Group, Timeline)>,
}

/// An aggregate node's definition as contributors and readers need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateDefinition {
    /// The node.
    pub id: NodeId,
    /// Grouping and sharding.
    pub spec: AggregateSpec,
    /// The per-key source node.
    pub source: NodeId,
    /// The group column's leaf, with `group_by`.
    pub group: Option<NodeId>,
}

impl AggregateDefinition {
    /// Reads a node definition (JSON of `timeline::PlanNode`, as `Core` gives it).
    pub fn from_definition(definition: &str) -> Result<Self, String> {
        Self::new(serde_json::from_str(definition).map_err(|e| format!("bad node definition: {e}"))?)
    }

    /// The definition of an aggregate node.
    pub fn new(node: PlanNode) -> Result<Self, String> {
        let Operator::Aggregate(spec) = node.operator else {
            return Err(format!("`{}` is not an aggregate node", node.id));
        };
        let source = node
            .children
            .first()
            .cloned()
            .ok_or_else(|| format!("aggregate `{}` has no source", node.id))?;
        Ok(AggregateDefinition {
            id: node.id,
            spec,
            source,
            group: node.children.get(1).cloned(),
        })
    }
}

impl Contributor {
    /// A contributor that has sent nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What to send for `key` whose source timeline is `source` and group
    /// column `group`: each group's contribution that changed since the last
    /// call, and a retraction from each group the key left. Remembers it.
    pub fn pushes(
        &mut self,
        spec: &AggregateSpec,
        key: &str,
        source: &Timeline,
        group: Option<&Timeline>,
    ) -> Vec<Push> {
        let unknown = Timeline::unknown();
        let group = match (&spec.group_by, group) {
            (None, _) => None,
            (Some(_), g) => Some(g.unwrap_or(&unknown)),
        };
        let now = contributions(source, group);
        let shard = spec.shard_of(key);
        let mut pushes = Vec::new();
        for (g, _) in &self.sent {
            if !now.iter().any(|(n, _)| n == g) {
                pushes.push(Push {
                    group: g.clone(),
                    shard,
                    contribution: None,
                });
            }
        }
        for (g, contribution) in &now {
            if !self.sent.iter().any(|(s, c)| s == g && c == contribution) {
                pushes.push(Push {
                    group: g.clone(),
                    shard,
                    contribution: Some(contribution.clone()),
                });
            }
        }
        self.sent = now;
        pushes
    }

    /// The groups the key is in now.
    pub fn groups(&self) -> Vec<Group> {
        self.sent.iter().map(|(g, _)| g.clone()).collect()
    }
}

/// The state of an `Aggregator(node, group, shard)` agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupAggregator {
    members: timeline::Aggregator,
    /// The latest event time of any member key.
    latest: Option<Time>,
}

impl GroupAggregator {
    /// An aggregator without members.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or, with none, retracts) `key`'s contribution; `latest` is the
    /// key's latest event time. Returns whether anything changed.
    pub fn replace(&mut self, key: &str, contribution: Option<Timeline>, latest: Option<Time>) -> bool {
        self.latest = self.latest.max(latest);
        self.members.replace(key, contribution)
    }

    /// The fold of the members' values at `t`, for `functions`.
    pub fn partial(&self, t: Time, functions: &[AggFn]) -> Partial {
        let mut partial = Partial::for_functions(functions);
        self.members.fold_at(t, &mut partial);
        partial
    }

    /// The latest event time of any member key.
    pub fn latest(&self) -> Option<Time> {
        self.latest
    }

    /// Number of member keys.
    pub fn members(&self) -> usize {
        self.members.len()
    }
}

/// The state of an `Aggregate(node)` agent: the groups seen so far, so that
/// a read knows which aggregators to ask.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupDirectory {
    groups: Vec<Group>,
}

impl GroupDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a group; false if it was known.
    pub fn register(&mut self, group: Group) -> bool {
        match self.groups.binary_search(&group) {
            Ok(_) => false,
            Err(i) => {
                self.groups.insert(i, group);
                true
            }
        }
    }

    /// Every group, sorted; only the one labelled `only` if given.
    pub fn groups(&self, only: Option<&str>) -> Vec<Group> {
        self.groups
            .iter()
            .filter(|g| only.is_none_or(|label| g.is_named(label)))
            .cloned()
            .collect()
    }
}

/// Merges the partials of a group's shards; `None` when no key of the group
/// has a value (the group is left out of reads, as on the local runtime).
pub fn merge_shards(shards: &[Partial], functions: &[AggFn]) -> Option<Partial> {
    let mut merged = Partial::for_functions(functions);
    for shard in shards {
        merged.merge(shard);
    }
    (merged.keys > 0).then_some(merged)
}

/// Reads aggregate function names (`count`, `p90`, ...), comma-separated;
/// empty: count, sum, avg, min, max.
pub fn parse_functions(text: &str) -> Result<Vec<AggFn>, String> {
    if text.trim().is_empty() {
        return Ok(vec![AggFn::Count, AggFn::Sum, AggFn::Avg, AggFn::Min, AggFn::Max]);
    }
    text.split(',').map(|f| f.trim().parse::<AggFn>()).collect()
}

#[cfg(target_family = "wasm")]
mod agent;

#[cfg(test)]
mod tests {
    use super::*;
    use timeline::{Span, SpanValue, Value};

    fn tl(spans: &[(i64, SpanValue)]) -> Timeline {
        Timeline::from_spans(spans.iter().map(|(start, value)| Span {
            start: *start,
            value: value.clone(),
        }))
        .unwrap()
    }

    #[test]
    fn a_contributor_sends_changes_only_and_retracts_groups_it_left() {
        let spec = AggregateSpec {
            group_by: Some("cdn".into()),
            shards: 2,
        };
        let mut c = Contributor::new();
        let source = tl(&[(0, SpanValue::Known(Value::Bool(true)))]);
        let a = tl(&[(0, SpanValue::Known(Value::str("A")))]);
        let pushes = c.pushes(&spec, "k", &source, Some(&a));
        assert_eq!(pushes.len(), 1);
        assert_eq!(pushes[0].group.label(), "A");
        assert_eq!(pushes[0].shard, spec.shard_of("k"));
        assert!(c.pushes(&spec, "k", &source, Some(&a)).is_empty(), "nothing changed");
        // The key moved to B at 10: A's contribution shrinks, B's is new.
        let ab = tl(&[
            (0, SpanValue::Known(Value::str("A"))),
            (10, SpanValue::Known(Value::str("B"))),
        ]);
        let pushes = c.pushes(&spec, "k", &source, Some(&ab));
        assert_eq!(pushes.iter().map(|p| p.group.label()).collect::<Vec<_>>(), ["A", "B"]);
        // A late event says it was on B all along: A is retracted.
        let b = tl(&[(0, SpanValue::Known(Value::str("B")))]);
        let pushes = c.pushes(&spec, "k", &source, Some(&b));
        assert_eq!(pushes.len(), 2);
        assert_eq!(
            (pushes[0].group.label(), pushes[0].contribution.is_none()),
            ("A".to_string(), true)
        );
        assert_eq!(c.groups(), [Group(Some(Value::str("B")))]);
    }

    #[test]
    fn shards_merge_and_empty_groups_are_left_out() {
        let functions = [AggFn::Count, AggFn::Percentile(50)];
        let mut a = GroupAggregator::new();
        a.replace("k1", Some(tl(&[(0, SpanValue::Known(Value::Int(3)))])), Some(5));
        let mut b = GroupAggregator::new();
        b.replace("k2", Some(tl(&[(0, SpanValue::Known(Value::Int(1)))])), Some(9));
        let merged = merge_shards(&[a.partial(5, &functions), b.partial(5, &functions)], &functions).unwrap();
        assert_eq!(merged.finish(AggFn::Count), Some(Value::Int(2)));
        assert_eq!(merged.finish(AggFn::Percentile(50)), Some(Value::Int(1)));
        assert_eq!(merge_shards(&[a.partial(-1, &functions)], &functions), None);
        assert_eq!((a.latest(), b.latest()), (Some(5), Some(9)));
        let mut d = GroupDirectory::new();
        assert!(d.register(Group(Some(Value::str("B")))));
        assert!(d.register(Group::NULL));
        assert!(!d.register(Group::NULL));
        assert_eq!(
            d.groups(None).iter().map(Group::label).collect::<Vec<_>>(),
            ["null", "B"]
        );
        assert_eq!(d.groups(Some("B")).len(), 1);
        assert_eq!(
            parse_functions("sum, p90").unwrap(),
            [AggFn::Sum, AggFn::Percentile(90)]
        );
        assert!(parse_functions("total").is_err());
    }
}
