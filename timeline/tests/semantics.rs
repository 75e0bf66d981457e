//! The worked examples and boundary cases of `docs/semantics.md`, end to end
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

#[test]
fn times_beyond_the_bounds_are_rejected_as_bad_input() {
    // The issue's repro: buffering from -9e18 to 9e18 used to wrap to a negative CIRR.
    let parser = EventParser::default();
    for time in ["-9000000000000000000", "9000000000000000000", "9223372036854775808"] {
        let line = format!(r#"{{"session_id":"k","time":{time},"s":"buffer"}}"#);
        let err = parser.parse(&line).unwrap_err().to_string();
        assert!(
            err.contains("out of range") && err.contains("[-2^62, 2^62]"),
            "{time}: {err}"
        );
    }
}

#[test]
fn durations_at_the_bounds_saturate_instead_of_wrapping() {
    let q = r#"duration_where(latest_event_to_state(s) == "buffer")"#;
    let lines = vec![
        r#"{"session_id":"k","time":-4611686018427387904,"s":"buffer"}"#.to_string(),
        r#"{"session_id":"k","time":4611686018427387904,"s":"stop"}"#.to_string(),
    ];
    let out = run(q, &lines);
    assert_eq!(out.value_at_end(), Some(Value::Int(i64::MAX)), "2^63 ms saturates");
    assert_eq!(out.value_at(0), Some(Value::Int(1 << 62)));
    // The same for the time in the current state.
    let out = run("duration_in_cur_state(latest_event_to_state(s))", &lines[..1]);
    assert_eq!(out.value_at(i64::MAX), Some(Value::Int(i64::MAX)));
}

#[test]
fn has_existed_within_near_the_upper_bound_is_true_inside_its_window() {
    let q = r#"has_existed_within(s == "seek", 5s)"#;
    let lines = vec![
        r#"{"session_id":"k","time":0,"s":"play"}"#.to_string(),
        r#"{"session_id":"k","time":4611686018427387900,"s":"seek"}"#.to_string(),
    ];
    let out = run(q, &lines);
    assert_eq!(out.value_at(4_611_686_018_427_387_904), Some(Value::Bool(true)));
    assert_eq!(out.value_at(4_611_686_018_427_392_899), Some(Value::Bool(true)));
    assert_eq!(out.value_at(4_611_686_018_427_392_900), Some(Value::Bool(false)));
    assert_eq!(out.value_at(4_611_686_018_427_387_899), Some(Value::Bool(false)));
}

#[test]
fn duration_in_cur_state_of_a_duration_counts_the_flat_stretch_before_it_rises() {
    // The issue's repro: events at 0 and 6; at t = 6 the duration is still 0, as since 0.
    let q = r#"duration_in_cur_state(duration_where(latest_event_to_state(s) >= "B"))"#;
    let lines = vec![
        r#"{"session_id":"k","time":0,"s":"A"}"#.to_string(),
        r#"{"session_id":"k","time":6,"s":"B"}"#.to_string(),
    ];
    let out = run(q, &lines);
    assert_eq!(out.value_at(5), Some(Value::Int(5)));
    assert_eq!(out.value_at(6), Some(Value::Int(6)));
    assert_eq!(out.value_at(7), Some(Value::Int(0)));
}

#[test]
fn equal_values_are_one_state() {
    let q = "duration_in_cur_state(latest_event_to_state(x))";
    let lines = vec![
        r#"{"session_id":"k","time":0,"x":2}"#.to_string(),
        r#"{"session_id":"k","time":10,"x":2.0}"#.to_string(),
        r#"{"session_id":"k","time":20,"x":1}"#.to_string(),
        r#"{"session_id":"k","time":30,"x":true}"#.to_string(),
    ];
    let out = run(q, &lines);
    assert_eq!(out.value_at(15), Some(Value::Int(15)), "2 then 2.0 keeps the state");
    assert_eq!(out.value_at(25), Some(Value::Int(5)));
    assert_eq!(out.value_at(35), Some(Value::Int(5)), "1 then true changes it");
}
