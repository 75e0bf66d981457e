//! Aggregates equal a group-by over the per-key results, at every instant,
//! whatever the order of events, their repeats and the batches they come in.
//!
//! The oracle evaluates each key's source and group column with all events
//! at once, groups the values at `t` by hand and folds them with its own
//! (sorting) implementation of every function.

use std::collections::BTreeMap;

use proptest::prelude::*;
use smol_str::SmolStr;
use timeline::{AggFn, Event, NodeId, Value};
use timeline_local::engine::{Engine, Target};

const SOURCES: [&str; 5] = [
    r#"duration_where(latest_event_to_state(s) == "x")"#,
    r#"has_existed(s == "y")"#,
    r#"count_where(latest_event_to_state(s) == "x")"#,
    "latest_event_to_state(n)",
    "duration_in_cur_state(latest_event_to_state(s))",
];

const FUNCTIONS: [AggFn; 8] = [
    AggFn::Count,
    AggFn::CountTrue,
    AggFn::Sum,
    AggFn::Avg,
    AggFn::Min,
    AggFn::Max,
    AggFn::Percentile(50),
    AggFn::Percentile(90),
];

/// A generated event: key, time, id, CDN, state, number (indices into small sets).
type RawEvent = (usize, i64, Option<u32>, Option<usize>, Option<usize>, Option<i64>);

fn event(raw: &RawEvent, i: usize) -> Event {
    let (key, time, id, cdn, s, n) = raw;
    let mut columns = Vec::new();
    if let Some(c) = cdn {
        columns.push((SmolStr::new("cdn"), Value::str(["A", "B", "C"][*c])));
    }
    if let Some(v) = s {
        columns.push((SmolStr::new("s"), Value::str(["x", "y", "z"][*v])));
    }
    if let Some(v) = n {
        columns.push((SmolStr::new("n"), Value::Int(*v)));
    }
    Event {
        key: SmolStr::new(format!("k{key}")),
        time: *time,
        id: id.map(|n| SmolStr::new(format!("e{n}-{i}"))),
        columns,
    }
}

/// Events of 5 keys that change group, with repeats of identified events, in
/// delivery order, cut into batches.
fn deliveries() -> impl Strategy<Value = (Vec<Event>, Vec<usize>)> {
    let raw = (
        0usize..5,
        0i64..60,
        prop::option::of(0u32..1000),
        prop::option::weighted(0.3, 0usize..3),
        prop::option::weighted(0.6, 0usize..3),
        prop::option::weighted(0.3, -2i64..6),
    );
    (
        prop::collection::vec(raw, 1..40),
        prop::collection::vec(0usize..40, 0..6),
    )
        .prop_map(|(raw, repeats)| {
            let mut events: Vec<Event> = raw.iter().enumerate().map(|(i, r)| event(r, i)).collect();
            for i in repeats {
                if let Some(e) = events.get(i).filter(|e| e.id.is_some()).cloned() {
                    events.push(e);
                }
            }
            events
        })
        .prop_flat_map(|events| {
            let n = events.len();
            (Just(events).prop_shuffle(), prop::collection::vec(1usize..8, n))
        })
}

/// The functions of a group's values, computed plainly.
fn fold(values: &[Value], f: AggFn) -> Option<Value> {
    let numbers: Vec<Value> = values
        .iter()
        .filter_map(|v| match v {
            Value::Bool(b) => Some(Value::Int(i64::from(*b))),
            Value::Str(_) => None,
            other => Some(other.clone()),
        })
        .collect();
    let as_f64 = |v: &Value| match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => unreachable!("numbers only"),
    };
    let mut sorted = numbers.clone();
    sorted.sort_by(|a, b| as_f64(a).total_cmp(&as_f64(b)));
    match f {
        AggFn::Count => Some(Value::Int(values.len() as i64)),
        AggFn::CountTrue => Some(Value::Int(
            values.iter().filter(|v| **v == Value::Bool(true)).count() as i64
        )),
        _ if numbers.is_empty() => None,
        AggFn::Sum => Some(Value::Int(numbers.iter().map(|v| as_f64(v) as i64).sum())),
        AggFn::Avg => Some(Value::Float(
            numbers.iter().map(as_f64).sum::<f64>() / numbers.len() as f64,
        )),
        AggFn::Min => sorted.first().cloned(),
        AggFn::Max => sorted.last().cloned(),
        AggFn::Percentile(p) => {
            let rank = (usize::from(p) * sorted.len()).div_ceil(100).max(1);
            sorted.get(rank - 1).cloned()
        }
    }
}

type Rows = Vec<(String, u64, Vec<Option<Value>>)>;

/// The oracle: per group at `t`, the keys with a known value and the functions.
fn group_by(oracle: &Engine, source: &NodeId, group: Option<&NodeId>, t: i64) -> Rows {
    // `null` first, then by value, as the engine sorts groups.
    let mut groups: BTreeMap<(bool, String), Vec<Value>> = BTreeMap::new();
    for key in oracle.keys(0, None, usize::MAX) {
        let Some(value) = oracle.output(source, &key).unwrap().value_at(t) else {
            continue;
        };
        let label = match group.and_then(|g| oracle.output(g, &key).unwrap().value_at(t)) {
            Some(Value::Str(s)) => (true, s.to_string()),
            Some(other) => (true, other.to_string()),
            None => (false, "null".to_string()),
        };
        groups.entry(label).or_default().push(value);
    }
    groups
        .into_iter()
        .map(|((_, label), values)| {
            let functions = FUNCTIONS.iter().map(|f| fold(&values, *f)).collect();
            (label, values.len() as u64, functions)
        })
        .collect()
}

fn same(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(Value::Float(x)), Some(Value::Float(y))) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_equal_a_group_by_of_the_per_key_results(
        (events, cuts) in deliveries(),
        source in 0usize..SOURCES.len(),
        grouped in any::<bool>(),
        shards in 1u32..4,
    ) {
        let group_arg = if grouped { "group_by(cdn), " } else { "" };
        let numeric = if source == 1 { "count_true" } else { "sum" };
        let query = format!(
            "a = {} | aggregate({group_arg}count, {numeric}, shards({shards}));\nr = a.sum / a.count;",
            SOURCES[source]
        );
        let mut engine = Engine::new();
        let (submitted, _) = engine.submit(Some("agg"), &query).unwrap();
        let plan = submitted.job().plan.clone();
        let aggregate = plan.output("a").unwrap().node.clone();
        let metric = plan.output("r").unwrap().node.clone();

        // Batches of random sizes, aggregators refreshed after each: later
        // batches hold late events that change what was already taken in.
        let mut rest = events.as_slice();
        for cut in &cuts {
            if rest.is_empty() {
                break;
            }
            let (batch, tail) = rest.split_at((*cut).min(rest.len()));
            engine.apply(0, batch, &Target::AllLeaves, None);
            engine.refresh_aggregates();
            rest = tail;
        }
        engine.apply(0, rest, &Target::AllLeaves, None);
        engine.refresh_aggregates();

        let mut oracle = Engine::new();
        let (src, _) = oracle.submit(Some("src"), SOURCES[source]).unwrap();
        let src = src.job().plan.result.clone();
        let (grp, _) = oracle.submit(Some("grp"), "latest_event_to_state(cdn)").unwrap();
        let grp = grp.job().plan.result.clone();
        oracle.apply(0, &events, &Target::AllLeaves, None);

        let end = events.iter().map(|e| e.time).max().unwrap();
        for t in (-1..=end + 3).chain([end + 40]) {
            let expected = group_by(&oracle, &src, grouped.then_some(&grp), t);
            let read = engine.aggregate(&aggregate, Some(t), &FUNCTIONS, None).unwrap();
            let got: Rows = read
                .groups
                .iter()
                .map(|row| (row.group.label(), row.keys, row.values.iter().map(|(_, v)| v.clone()).collect()))
                .collect();
            prop_assert_eq!(got.len(), expected.len(), "t={} got {:?} expected {:?}", t, got, expected);
            for (g, e) in got.iter().zip(&expected) {
                prop_assert_eq!(&g.0, &e.0, "t={}", t);
                prop_assert_eq!(g.1, e.1, "t={} group {}", t, &g.0);
                for ((f, a), b) in FUNCTIONS.iter().zip(&g.2).zip(&e.2) {
                    prop_assert!(same(a, b), "t={} group {} {}: got {:?}, expected {:?}", t, &g.0, f, a, b);
                }
            }
            // The metric divides the same folds, group by group.
            let metric_read = engine.metric(&metric, Some(t), None).unwrap();
            prop_assert_eq!(metric_read.groups.len(), expected.len());
            for (row, e) in metric_read.groups.iter().zip(&expected) {
                let sum = &e.2[2];
                let want = match sum {
                    Some(Value::Int(s)) => Some(Value::Float(*s as f64 / e.1 as f64)),
                    _ => None,
                };
                prop_assert!(same(&row.values[0].1, &want), "t={} metric {:?} vs {:?}", t, row.values[0].1, want);
            }
        }
        // The default instant is the latest event of any key.
        prop_assert_eq!(engine.aggregate(&aggregate, None, &FUNCTIONS, None).unwrap().t, Some(end));
    }
}
