//! The worked examples and boundary cases of `design/semantics.md`, end to end
//! through the DSL, the plan and the workers.

use timeline::{CompiledPlan, EventParser, ExecutionPlan, Value};

const CIRR: &str = r#"
duration_where(
  has_existed(playerStateChange == "play")
  && !has_existed_within(userAction == "seek", 5s)
  && latest_event_to_state(playerStateChange) == "buffer"
  && latest_event_to_state(cdnChange) == "CDN1")
"#;

/// The example session of the semantics, times in seconds.
const CIRR_EVENTS: &[(i64, &str, &str)] = &[
    (0, "cdnChange", "CDN1"),
    (0, "playerStateChange", "init"),
    (2, "playerStateChange", "play"),
    (10, "playerStateChange", "buffer"),
    (14, "playerStateChange", "play"),
    (20, "userAction", "seek"),
    (21, "playerStateChange", "buffer"),
    (29, "playerStateChange", "play"),
    (40, "playerStateChange", "buffer"),
    (45, "playerStateChange", "stop"),
];

fn run(query: &str, lines: &[String]) -> timeline::Output {
    let plan = CompiledPlan::new(ExecutionPlan::new(&timeline::dsl::parse(query).unwrap()).unwrap());
    let parser = EventParser::default();
    let mut states = plan.new_leaf_states();
    for line in lines {
        plan.apply(&mut states, &parser.parse(line).unwrap());
    }
    plan.evaluate_result(&states)
}

fn cirr_lines() -> Vec<String> {
    CIRR_EVENTS
        .iter()
        .enumerate()
        .map(|(i, (s, col, v))| {
            format!(
                r#"{{"session_id":"afsal-mando-1","time":{},"event_id":"e{i}","{col}":"{v}"}}"#,
                s * 1000
            )
        })
        .collect()
}

#[test]
fn cirr_worked_example_is_13000() {
    let out = run(CIRR, &cirr_lines());
    assert_eq!(out.latest, Some(45_000));
    assert_eq!(out.value_at_end(), Some(Value::Int(13_000)));
    // The pieces: 10..14 s, 25..29 s, 40..45 s.
    assert_eq!(out.value_at(14_000), Some(Value::Int(4_000)));
    assert_eq!(out.value_at(25_000), Some(Value::Int(4_000)));
    assert_eq!(out.value_at(29_000), Some(Value::Int(8_000)));
    assert_eq!(out.value_at(-1), None, "Unknown before the origin");
}

#[test]
fn cirr_is_the_same_reversed_and_with_repeats() {
    let mut lines = cirr_lines();
    lines.reverse();
    lines.extend(cirr_lines().into_iter().step_by(2));
    assert_eq!(run(CIRR, &lines), run(CIRR, &cirr_lines()));
}

#[test]
fn comparison_of_a_rising_duration_flips_between_events() {
    // Buffering from 10 s with no further event: the 3 s limit is crossed at 13 s.
    let q = r#"duration_in_cur_state(latest_event_to_state(s)) < 3s"#;
    let lines = vec![
        r#"{"session_id":"k","time":0,"s":"play"}"#.to_string(),
        r#"{"session_id":"k","time":10000,"s":"buffer"}"#.to_string(),
    ];
    let out = run(q, &lines);
    assert_eq!(out.value_at(12_999), Some(Value::Bool(true)));
    assert_eq!(out.value_at(13_000), Some(Value::Bool(false)));
    assert_eq!(
        out.timeline.to_string(),
        "[0,3000):true [3000,10000):false [10000,13000):true [13000,∞):false"
    );
}

#[test]
fn leaves_see_the_key_origin_from_events_they_ignore() {
    // The origin is the first event of the key, whichever column it has.
    let q = r#"duration_where(!has_existed(x == 1))"#;
    let lines = vec![
        r#"{"session_id":"k","time":100,"other":true}"#.to_string(),
        r#"{"session_id":"k","time":400,"x":1}"#.to_string(),
    ];
    let out = run(q, &lines);
    assert_eq!(out.value_at(100), Some(Value::Int(0)));
    assert_eq!(out.value_at_end(), Some(Value::Int(300)));
}
