//! Every example in `examples/` gives its expected output through `timeline
//! eval`, run as the quick start runs CIRR: the query's header names the
//! stream and its key field.

use std::path::PathBuf;
use std::process::Command;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn eval(name: &str) -> (String, String, Option<i32>) {
    let dir = examples_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_timeline-under-test"))
        .args(["eval", "--query"])
        .arg(format!("@{}", dir.join(format!("{name}.tl")).display()))
        .arg("--events")
        .arg(dir.join(format!("{name}.jsonl")))
        .output()
        .expect("run timeline");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn check(name: &str) {
    let expected = std::fs::read_to_string(examples_dir().join(format!("{name}.expected.jsonl"))).unwrap();
    let (stdout, stderr, code) = eval(name);
    assert_eq!(code, Some(0), "{name}: {stderr}");
    assert_eq!(stdout, expected, "{name}");
    assert!(!stderr.contains("Warning"), "{name} has warnings: {stderr}");
}

#[test]
fn cirr() {
    check("cirr");
}

#[test]
fn card_swiped_twice_in_different_suburbs() {
    check("card-swipes");
}

#[test]
fn risky_state_before_machine_failure() {
    check("machine-risk");
}

#[test]
fn iphone_user_stopped_advancing_after_long_ad() {
    check("game-ad");
}

#[test]
fn completion_rate_per_cdn() {
    check("completion-rate");
}

#[test]
fn every_example_is_tested() {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".tl")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "card-swipes",
            "card-swipes-sequence",
            "cirr",
            "completion-rate",
            "funnel",
            "game-ad",
            "heartbeat",
            "machine-risk",
            "rebuffering-per-minute",
            "unpaid-orders"
        ]
    );
}

#[test]
fn checkout_funnel_counted_per_step() {
    check("funnel");
}

#[test]
fn orders_placed_but_not_paid_within_10_minutes() {
    check("unpaid-orders");
}

#[test]
fn heartbeat_stopped_for_more_than_30_seconds() {
    check("heartbeat");
}

#[test]
fn card_swiped_in_both_suburbs_within_10_minutes_as_a_sequence() {
    check("card-swipes-sequence");
}

#[test]
fn rebuffering_per_one_minute_tumbling_window() {
    check("rebuffering-per-minute");
}
