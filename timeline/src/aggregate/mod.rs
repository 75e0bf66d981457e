//! Aggregates across keys: groups, aggregate functions, and the aggregator's state.
//!
//! An aggregate node reads one per-key timeline, its *source*, and optionally a
//! group column. At an instant `t` the group of a key is its
//! `latest_event_to_state(column)` at `t`: a key that changes CDN moves to the
//! new group from that instant on. Keys whose column has no value yet are in
//! the group `null`, as is every key of an aggregate without `group_by`. An
//! [`AggFn`] folds the source's values at `t` of the keys of one group whose
//! value at `t` is known.
//!
//! # Key decisions
//!
//! - **A key contributes a timeline, not a number.** Its contribution to a
//!   group is its source timeline masked to the instants when it is in that
//!   group ([`contributions`]). An [`Aggregator`] keeps its members'
//!   contributions, so it answers at *any* `t`, durations still rising
//!   included, exactly as a group-by over the per-key results at `t` would.
//! - **Retraction is replacement.** When a late event changes a key's past,
//!   the key sends its new contribution and the aggregator replaces the old
//!   one: the aggregate is exact whatever the order of events.
//! - **Functions are chosen when reading.** The aggregator holds the members,
//!   not a running sum, so one aggregator answers every function and a job
//!   that asks for `p90` of a running aggregate reuses it.
//! - **Partials merge.** Reading folds members into a [`Partial`]; partials of
//!   the shards of a hot group, or of several agents, merge before the
//!   functions are finished.
//!
//! # The contract both runtimes apply
//!
//! As DataFusion's `Accumulator` has update, retract, merge and evaluate:
//!
//! - **update / retract**: a key's contributions now ([`key_contributions`])
//!   against what its aggregators hold for it give the [`Change`]s to apply
//!   ([`changes`]): a new contribution per group, a retraction per group left.
//!   The local engine applies them to its [`GroupAggregator`]s after each
//!   commit; on Golem a `Contributor(node, key)` ([`Contributor`]) sends them
//!   to `Aggregator(node, group, shard)` agents, which hold the same
//!   [`GroupAggregator`].
//! - **merge**: [`merge_shards`] merges a group's shards' [`Partial`]s, in
//!   one process or across agents.
//! - **evaluate**: [`Partial::finish`] gives each function's value, and
//!   `metric::MetricExpr::evaluate_groups` the metrics over them.
//!
//! [`functions`] holds the functions and partials, [`groups`] the groups and
//! contributions, [`store`] the aggregators' state.

pub mod functions;
pub mod groups;
pub mod store;

use std::fmt;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::id::NodeId;
use crate::op::TimeLineOp;

pub use functions::{AggFn, Number, Partial};
pub use groups::{Change, Contributor, Group, GroupDirectory, changes, contributions, key_contributions};
pub use store::{Aggregator, GroupAggregator, merge_shards};

/// What an aggregate node groups by and how its groups are spread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateSpec {
    /// The group column; none puts every key in one group.
    pub group_by: Option<SmolStr>,
    /// Aggregators per group (a hot group's keys are spread over them by a
    /// hash of the key). Not part of the node's identity.
    pub shards: u32,
}

impl AggregateSpec {
    /// The shard of a group that `key` belongs to: FNV-1a of the key, so that
    /// every runtime and every release agree.
    pub fn shard_of(&self, key: &str) -> u32 {
        if self.shards <= 1 {
            return 0;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(self.shards)) as u32
    }
}

/// An aggregate node: a per-key source, an optional group column, and the
/// identity derived from them (the shard count is not part of it).
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateNode {
    source: Box<TimeLineOp>,
    group: Option<Box<TimeLineOp>>,
    spec: AggregateSpec,
    id: NodeId,
}

impl AggregateNode {
    /// Aggregates `source` by `group_by` (none: one group) over `shards`
    /// aggregators per group (at least 1).
    pub fn new(source: TimeLineOp, group_by: Option<&str>, shards: u32) -> Self {
        let group = group_by.map(|c| Box::new(TimeLineOp::latest_event_to_state(c)));
        // The source by id, so that the key's size does not grow with it.
        let key = match group_by {
            Some(column) => format!(
                "aggregate({}, group_by({}))",
                source.id(),
                crate::id::identifier(column)
            ),
            None => format!("aggregate({})", source.id()),
        };
        let id = NodeId::derive("aggregate", &key);
        AggregateNode {
            source: Box::new(source),
            group,
            spec: AggregateSpec {
                group_by: group_by.map(SmolStr::new),
                shards: shards.max(1),
            },
            id,
        }
    }

    /// The per-key timeline aggregated.
    pub fn source(&self) -> &TimeLineOp {
        &self.source
    }

    /// The group column's leaf, `latest_event_to_state(column)`.
    pub fn group(&self) -> Option<&TimeLineOp> {
        self.group.as_deref()
    }

    /// Grouping and sharding.
    pub fn spec(&self) -> &AggregateSpec {
        &self.spec
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The canonical form in DSL (shards left out), the source in full.
    pub fn canonical(&self) -> String {
        match &self.spec.group_by {
            Some(column) => format!(
                "aggregate({}, group_by({}))",
                self.source.canonical(),
                crate::id::identifier(column)
            ),
            None => format!("aggregate({})", self.source.canonical()),
        }
    }

    /// The node read with `functions`, in DSL: `source | aggregate(...)`;
    /// `with_shards` writes its shard count too.
    pub fn dsl(&self, functions: &[AggFn], with_shards: bool) -> String {
        format!("{} | {}", self.source.canonical(), self.stage(functions, with_shards))
    }

    /// Like [`AggregateNode::dsl`], with the source's bounded
    /// [`TimeLineOp::description`].
    pub fn description(&self, functions: &[AggFn], with_shards: bool) -> String {
        format!("{} | {}", self.source.description(), self.stage(functions, with_shards))
    }

    /// `aggregate(group_by(c), functions..., shards(n))`
    fn stage(&self, functions: &[AggFn], with_shards: bool) -> String {
        let mut args = Vec::new();
        if let Some(column) = &self.spec.group_by {
            args.push(format!("group_by({})", crate::id::identifier(column)));
        }
        args.extend(functions.iter().map(AggFn::to_string));
        if with_shards && self.spec.shards > 1 {
            args.push(format!("shards({})", self.spec.shards));
        }
        format!("aggregate({})", args.join(", "))
    }
}

impl fmt::Display for AggregateNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::timeline::{Span, SpanValue, Timeline};
    use crate::value::Value;

    fn tl(spans: &[(i64, SpanValue)]) -> Timeline {
        Timeline::from_spans(spans.iter().map(|(start, value)| Span {
            start: *start,
            value: value.clone(),
        }))
        .unwrap()
    }

    fn known(v: impl Into<Value>) -> SpanValue {
        SpanValue::Known(v.into())
    }

    #[test]
    fn function_names_round_trip() {
        for name in AggFn::NAMED {
            assert_eq!(AggFn::parse(name).unwrap().to_string(), name);
        }
        assert_eq!(AggFn::parse("median"), Some(AggFn::Percentile(50)));
        assert_eq!(AggFn::parse("p95"), Some(AggFn::Percentile(95)));
        for bad in ["p0", "p100", "p05", "p", "total"] {
            assert_eq!(AggFn::parse(bad), None, "{bad}");
        }
        let json = serde_json::to_string(&[AggFn::CountTrue, AggFn::Percentile(90)]).unwrap();
        assert_eq!(json, r#"["count_true","p90"]"#);
        let back: Vec<AggFn> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, [AggFn::CountTrue, AggFn::Percentile(90)]);
    }

    #[test]
    fn a_key_contributes_to_each_group_while_it_is_in_it() {
        // A duration rising from 0 at 10; the CDN is A from 0, B from 20.
        let source = tl(&[(0, known(0)), (10, SpanValue::Rising { from: 0 })]);
        let group = tl(&[(0, known("A")), (20, known("B"))]);
        let parts = contributions(&source, Some(&group));
        assert_eq!(parts.len(), 2);
        let (a, b) = (&parts[0], &parts[1]);
        assert_eq!(a.0, Group(Some(Value::str("A"))));
        assert_eq!(a.1.to_string(), "[0,10):0 [10,20):rising from 0 [20,∞):unknown");
        assert_eq!(b.1.to_string(), "[0,20):unknown [20,∞):rising from 10");
        assert_eq!(b.1.value_at(25), Some(Value::Int(15)));
    }

    #[test]
    fn keys_without_a_group_value_are_in_the_null_group() {
        let source = tl(&[(0, known(true))]);
        let group = tl(&[(0, SpanValue::Unknown), (5, known("A"))]);
        let parts = contributions(&source, Some(&group));
        assert_eq!(parts[0].0, Group::NULL);
        assert_eq!(parts[0].1.value_at(4), Some(Value::Bool(true)));
        assert_eq!(parts[0].1.value_at(5), None);
        // A group column that starts later than the source.
        let parts = contributions(&source, Some(&tl(&[(5, known("A"))])));
        assert_eq!(parts.iter().map(|p| p.0.label()).collect::<Vec<_>>(), ["null", "A"]);
        assert!(contributions(&Timeline::unknown(), None).is_empty());
        assert_eq!(contributions(&source, None)[0].0, Group::NULL);
    }

    #[test]
    fn partials_finish_every_function_and_merge() {
        let mut a = Partial::new(true);
        for v in [Value::Int(4), Value::Int(1), Value::Bool(true), Value::str("x")] {
            a.add(&v);
        }
        let mut b = Partial::new(true);
        b.add(&Value::Float(2.5));
        a.merge(&b);
        assert_eq!(a.finish(AggFn::Count), Some(Value::Int(5)));
        assert_eq!(a.finish(AggFn::CountTrue), Some(Value::Int(1)));
        assert_eq!(a.finish(AggFn::Sum), Some(Value::Float(8.5)));
        assert_eq!(a.finish(AggFn::Avg), Some(Value::Float(8.5 / 4.0)));
        assert_eq!(a.finish(AggFn::Min), Some(Value::Int(1)));
        assert_eq!(a.finish(AggFn::Max), Some(Value::Int(4)));
        // 1, 1(true), 2.5, 4: nearest rank.
        assert_eq!(a.finish(AggFn::Percentile(50)), Some(Value::Int(1)));
        assert_eq!(a.finish(AggFn::Percentile(51)), Some(Value::Float(2.5)));
        assert_eq!(a.finish(AggFn::Percentile(99)), Some(Value::Int(4)));
        let empty = Partial::default();
        assert_eq!(empty.finish(AggFn::Count), Some(Value::Int(0)));
        assert_eq!(empty.finish(AggFn::Sum), None);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Partial>(&json).unwrap(), a);
    }

    #[test]
    fn integer_sums_stay_exact_and_float_sums_compensate() {
        let mut p = Partial::new(false);
        p.add(&Value::Int(i64::MAX));
        p.add(&Value::Int(i64::MAX));
        p.add(&Value::Int(-i64::MAX));
        assert_eq!(p.finish(AggFn::Sum), Some(Value::Int(i64::MAX)));
        let mut f = Partial::new(false);
        for x in [1e16, 1.0, -1e16] {
            f.add(&Value::Float(x));
        }
        assert_eq!(f.finish(AggFn::Sum), Some(Value::Float(1.0)));
    }

    #[test]
    fn replacing_a_contribution_retracts_the_old_one() {
        let mut agg = Aggregator::new();
        assert!(agg.replace("k", Some(tl(&[(0, known(5))]))));
        assert!(!agg.replace("k", Some(tl(&[(0, known(5))]))));
        agg.replace("j", Some(tl(&[(0, known(1))])));
        let at = |agg: &Aggregator, t| {
            let mut p = Partial::new(false);
            agg.fold_at(t, &mut p);
            p.finish(AggFn::Sum)
        };
        assert_eq!(at(&agg, 3), Some(Value::Int(6)));
        agg.replace("k", Some(tl(&[(0, known(2))])));
        assert_eq!(at(&agg, 3), Some(Value::Int(3)));
        assert!(agg.replace("k", None));
        assert_eq!(agg.len(), 1);
        assert_eq!(at(&agg, -1), None);
    }

    #[test]
    fn the_arena_survives_churn_and_snapshots() {
        // Members grow, shrink, leave and come back; compaction runs many
        // times. A plain map of the same contributions is the model.
        let mut agg = Aggregator::new();
        let mut model: BTreeMap<String, Timeline> = BTreeMap::new();
        let mut seed: u64 = 42;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..20_000 {
            let key = format!("k{}", next(300));
            if next(5) == 0 {
                assert_eq!(agg.replace(&key, None), model.remove(&key).is_some());
                continue;
            }
            let spans: Vec<(i64, SpanValue)> = (0..1 + next(6))
                .map(|i| {
                    let value = match next(3) {
                        0 => known(next(10) as i64),
                        1 => SpanValue::Rising { from: next(10) as i64 },
                        _ => SpanValue::Unknown,
                    };
                    (i as i64 * 10 + next(5) as i64, value)
                })
                .collect();
            let timeline = tl(&spans);
            let changed = model.get(&key) != Some(&timeline);
            assert_eq!(agg.replace(&key, Some(timeline.clone())), changed, "round {round}");
            model.insert(key, timeline);
            if round % 997 == 0 {
                for t in [-1, 0, 7, 25, 60] {
                    let mut got = Partial::new(true);
                    agg.fold_at(t, &mut got);
                    let mut want = Partial::new(true);
                    for timeline in model.values() {
                        if let Some(v) = timeline.value_at(t) {
                            want.add(&v);
                        }
                    }
                    for f in [AggFn::Count, AggFn::Sum, AggFn::Min, AggFn::Max, AggFn::Percentile(50)] {
                        assert_eq!(got.finish(f), want.finish(f), "round {round} t {t} {f}");
                    }
                }
            }
        }
        assert_eq!(agg.len(), model.len());
        for (key, timeline) in &model {
            assert_eq!(agg.member(key).as_ref(), Some(timeline));
        }
        let json = serde_json::to_string(&agg).unwrap();
        let back: Aggregator = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), model.len());
        for (key, timeline) in &model {
            assert_eq!(back.member(key).as_ref(), Some(timeline));
        }
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let spec = AggregateSpec {
            group_by: None,
            shards: 4,
        };
        assert_eq!(spec.shard_of("session-1"), spec.shard_of("session-1"));
        let mut seen = [0; 4];
        for i in 0..400 {
            seen[spec.shard_of(&format!("k{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        // FNV-1a of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(spec.shard_of("a"), (0xaf63_dc4c_8601_ec8c_u64 % 4) as u32);
    }

    #[test]
    fn groups_order_and_label() {
        let mut groups = [
            Group(Some(Value::str("b"))),
            Group(Some(Value::Int(2))),
            Group::NULL,
            Group(Some(Value::str("a"))),
        ];
        groups.sort();
        let labels: Vec<String> = groups.iter().map(Group::label).collect();
        assert_eq!(labels, ["null", "2", "a", "b"]);
        assert!(Group(Some(Value::str("CDN1"))).is_named("CDN1"));
    }

    #[test]
    fn a_contributor_sends_changes_only_and_retracts_groups_it_left() {
        let spec = AggregateSpec {
            group_by: Some("cdn".into()),
            shards: 2,
        };
        let mut c = Contributor::new();
        let source = tl(&[(0, known(true))]);
        let a = tl(&[(0, known("A"))]);
        let changes = c.update(key_contributions(&spec, &source, Some(&a)));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].group.label(), "A");
        assert!(
            c.update(key_contributions(&spec, &source, Some(&a))).is_empty(),
            "nothing changed"
        );
        // The key moved to B at 10: A's contribution shrinks, B's is new.
        let ab = tl(&[(0, known("A")), (10, known("B"))]);
        let changes = c.update(key_contributions(&spec, &source, Some(&ab)));
        assert_eq!(changes.iter().map(|p| p.group.label()).collect::<Vec<_>>(), ["A", "B"]);
        // A late event says it was on B all along: A is retracted.
        let b = tl(&[(0, known("B"))]);
        let changes = c.update(key_contributions(&spec, &source, Some(&b)));
        assert_eq!(changes.len(), 2);
        assert_eq!(
            (changes[0].group.label(), changes[0].contribution.is_none()),
            ("A".to_string(), true)
        );
        assert_eq!(c.groups(), [Group(Some(Value::str("B")))]);
        // Without what was sent, every group is sent again (the local engine).
        let held = Group(Some(Value::str("B")));
        let again = changes_of(&[(&held, None)], key_contributions(&spec, &source, Some(&b)));
        assert_eq!(again.len(), 1);
        assert!(again[0].contribution.is_some());
    }

    fn changes_of(before: &[(&Group, Option<&Timeline>)], now: Vec<(Group, Timeline)>) -> Vec<Change> {
        changes(before, now)
    }

    #[test]
    fn shards_merge_and_empty_groups_are_left_out() {
        let functions = [AggFn::Count, AggFn::Percentile(50)];
        let mut a = GroupAggregator::new();
        a.replace("k1", Some(tl(&[(0, known(3))])), Some(5));
        let mut b = GroupAggregator::new();
        b.replace("k2", Some(tl(&[(0, known(1))])), Some(9));
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
            AggFn::parse_list("sum, p90").unwrap(),
            [AggFn::Sum, AggFn::Percentile(90)]
        );
        assert_eq!(AggFn::parse_list(" ").unwrap(), AggFn::DEFAULTS);
        assert!(AggFn::parse_list("total").is_err());
    }
}
