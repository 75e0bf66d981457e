//! Differential properties: the incremental workers equal the reference
//! evaluator, and arrival order and repeats never change a result.

mod reference;

use proptest::prelude::*;
use reference::Reference;
use smol_str::SmolStr;
use timeline::op::Window;
use timeline::{CmpOp, CompiledPlan, Event, ExecutionPlan, Predicate, TimeLineOp, Value};

const HORIZON: i64 = 70;

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["x", "y", "z"]).prop_map(Value::str),
        (0i64..3).prop_map(Value::Int),
        // Equal to integers: one state with them.
        prop::sample::select(vec![0.0, 1.0, 1.5, 2.0]).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn column() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b"])
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge])
}

fn predicate() -> impl Strategy<Value = Predicate> {
    let atom = (column(), cmp_op(), value()).prop_map(|(c, op, v)| Predicate::compare(c, op, v));
    atom.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a & b),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a | b),
            inner.prop_map(|a| !a),
        ]
    })
}

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![
        (1i64..15).prop_map(|width_ms| Window::Tumbling { width_ms }),
        (1i64..15).prop_map(|width_ms| Window::Sliding { width_ms }),
    ]
}

/// A boolean leaf, or a state compared with a literal.
fn leaf() -> impl Strategy<Value = TimeLineOp> {
    prop_oneof![
        predicate().prop_map(TimeLineOp::has_existed),
        (predicate(), 1i64..15).prop_map(|(p, d)| TimeLineOp::has_existed_within(p, d)),
        (column(), cmp_op(), value()).prop_map(|(c, op, v)| TimeLineOp::latest_event_to_state(c).compare(op, v)),
        (predicate(), cmp_op(), 0i64..12).prop_map(|(p, op, k)| TimeLineOp::time_since(p).compare(op, k)),
        (prop::collection::vec(predicate(), 2..4), prop::option::of(1i64..15))
            .prop_map(|(steps, within)| TimeLineOp::sequence(steps, within)),
        (predicate(), predicate(), 1i64..15).prop_map(|(p, q, d)| TimeLineOp::absent_after(p, q, d)),
    ]
}

/// Random well-typed boolean timelines over every operator.
fn bool_timeline() -> impl Strategy<Value = TimeLineOp> {
    leaf().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.or(b)),
            inner.clone().prop_map(|a| a.negate()),
            (inner.clone(), cmp_op(), 0i64..25).prop_map(|(a, op, k)| a.duration_where().compare(op, k)),
            (inner.clone(), cmp_op(), 0i64..12).prop_map(|(a, op, k)| a.duration_in_cur_state().compare(op, k)),
            (inner.clone(), cmp_op(), 0i64..4).prop_map(|(a, op, k)| a.count_where().compare(op, k)),
            (inner.clone(), 1i64..12).prop_map(|(a, d)| a.true_within(d)),
            (inner.clone(), window(), cmp_op(), 0i64..12)
                .prop_map(|(a, w, op, k)| a.duration_where_in(w).compare(op, k)),
            (inner.clone(), window(), cmp_op(), 0i64..3).prop_map(|(a, w, op, k)| a.count_where_in(w).compare(op, k)),
            inner.clone().prop_map(|a| a.previous()),
            (column(), cmp_op(), 0i64..12).prop_map(|(c, op, k)| TimeLineOp::latest_event_to_state(c)
                .duration_in_cur_state()
                .compare(op, k)),
        ]
    })
}

/// Any timeline: boolean, duration or state at the root.
fn query() -> impl Strategy<Value = TimeLineOp> {
    prop_oneof![
        4 => bool_timeline(),
        1 => bool_timeline().prop_map(TimeLineOp::duration_where),
        1 => bool_timeline().prop_map(TimeLineOp::duration_in_cur_state),
        1 => bool_timeline().prop_map(TimeLineOp::count_where),
        1 => column().prop_map(TimeLineOp::latest_event_to_state),
        1 => column().prop_map(|c| TimeLineOp::latest_event_to_state(c).previous()),
        1 => predicate().prop_map(TimeLineOp::time_since),
        1 => (bool_timeline(), window()).prop_map(|(b, w)| b.duration_where_in(w)),
        1 => (bool_timeline(), window()).prop_map(|(b, w)| b.count_where_in(w)),
        1 => leaf().prop_map(|b| b.duration_where().previous()),
        // The time a duration has kept its value: flat, then rising.
        1 => leaf().prop_map(|b| b.duration_where().duration_in_cur_state()),
    ]
}

fn event(time: i64, id: Option<String>, a: Option<Value>, b: Option<Value>) -> Event {
    let mut columns = Vec::new();
    if let Some(a) = a {
        columns.push((SmolStr::new("a"), a));
    }
    if let Some(b) = b {
        columns.push((SmolStr::new("b"), b));
    }
    Event {
        key: SmolStr::new("k"),
        time,
        id: id.map(SmolStr::from),
        columns,
    }
}

/// Events with colliding times, optional ids and exact repeats of identified events.
fn deliveries() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            0i64..50,
            prop::option::of(0u32..1000),
            prop::option::of(value()),
            prop::option::of(value()),
        ),
        1..25,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (t, id, a, b))| event(t, id.map(|n| format!("e{n}-{i}")), a, b))
            .collect::<Vec<_>>()
    })
    .prop_flat_map(|events| {
        let n = events.len();
        (Just(events), prop::collection::vec(0..n, 0..5))
    })
    .prop_map(|(mut events, repeats)| {
        for i in repeats {
            if events[i].id.is_some() {
                let copy = events[i].clone();
                events.push(copy);
            }
        }
        events
    })
}

fn incremental(op: &TimeLineOp, events: &[Event]) -> timeline::Output {
    let plan = CompiledPlan::new(ExecutionPlan::new(op).expect("generated queries are well typed"));
    let mut states = plan.new_leaf_states();
    for e in events {
        plan.apply(&mut states, e);
    }
    plan.evaluate_result(&states)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_reference(op in query(), events in deliveries()) {
        let out = incremental(&op, &events);
        let reference = Reference::new(&events);
        prop_assert_eq!(out.latest, reference.latest());
        for t in -2..HORIZON {
            prop_assert_eq!(out.value_at(t), reference.value(&op, t), "t={} op={} timeline={}", t, op, out.timeline);
        }
    }

    #[test]
    fn arrival_order_and_repeats_do_not_matter(
        op in query(),
        events in deliveries(),
        seed in any::<u64>(),
    ) {
        // Give every event an id so that equal times have a defined order.
        let events: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.id.get_or_insert_with(|| SmolStr::new(format!("n{i}")));
                e
            })
            .collect();
        let mut shuffled = events.clone();
        shuffled.extend(events.iter().step_by(3).cloned());
        // Fisher-Yates with a tiny LCG: deterministic per seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let a = incremental(&op, &events);
        let b = incremental(&op, &shuffled);
        prop_assert_eq!(a.timeline, b.timeline);
        prop_assert_eq!(a.latest, b.latest);
    }

    #[test]
    fn incremental_equals_reference_near_the_time_bounds(
        op in query(),
        events in deliveries(),
        top in any::<bool>(),
    ) {
        // The same events moved to the edge of the admitted times.
        let base = if top { timeline::MAX_TIME - 49 } else { timeline::MIN_TIME };
        let events: Vec<Event> = events.into_iter().map(|mut e| { e.time += base; e }).collect();
        let out = incremental(&op, &events);
        let reference = Reference::new(&events);
        prop_assert_eq!(out.latest, reference.latest());
        for t in -2..HORIZON {
            let t = base + t;
            prop_assert_eq!(out.value_at(t), reference.value(&op, t), "t={} op={} timeline={}", t, op, out.timeline);
        }
    }

    #[test]
    fn canonical_text_round_trips(op in query()) {
        let parsed = timeline::dsl::parse(&op.canonical()).expect("canonical text parses");
        prop_assert_eq!(parsed.id(), op.id());
    }

    #[test]
    fn parsers_never_panic(text in "\\PC{0,80}") {
        let _ = timeline::dsl::parse(&text);
        let _ = timeline::EventParser::default().parse(&text);
    }

    #[test]
    fn dsl_near_misses_never_panic(op in query(), cut in 0usize..200, insert in "[()!&|=<>,;\"' a-z0-9]{0,3}") {
        let text = op.canonical().to_string();
        let cut = text.char_indices().map(|(i, _)| i).nth(cut % text.chars().count().max(1)).unwrap_or(0);
        let mangled = format!("{}{}{}", &text[..cut], insert, &text[cut..]);
        match timeline::dsl::parse(&mangled) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(e.line >= 1 && e.column >= 1);
                prop_assert!(!e.render(&mangled, "q.tl").is_empty());
            }
        }
    }
}
