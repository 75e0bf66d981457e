//! `timeline eval` and `timeline gen` as a user runs them.

use std::io::Write;
use std::process::{Command, Stdio};

fn timeline(args: &[&str], stdin: &str) -> (String, String, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_timeline-under-test"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run timeline");
    // A command that fails on its arguments exits without reading stdin.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

const CIRR: &str = r#"duration_where(has_existed(playerStateChange == "play") && !has_existed_within(userAction == "seek", 5s) && latest_event_to_state(playerStateChange) == "buffer" && latest_event_to_state(cdnChange) == "CDN1")"#;

#[test]
fn bad_lines_are_reported_with_their_number_and_the_rest_is_evaluated() {
    let input = concat!(
        r#"{"session_id":"a","time":0,"x":1}"#,
        "\n",
        "this is not json\n",
        r#"{"session_id":"b","time":"noon","x":1}"#,
        "\n",
        "\n",
        r#"{"session_id":"b","time":5,"x":2}"#,
        "\n",
        r#"{"time":7,"x":1}"#,
        "\n",
    );
    let (stdout, stderr, code) = timeline(&["eval", "-q", "has_existed(x == 1)"], input);
    assert_eq!(code, Some(3));
    assert_eq!(
        stdout,
        "{\"key\":\"a\",\"value\":true}\n{\"key\":\"b\",\"value\":false}\n"
    );
    assert!(stderr.contains("line 2: invalid JSON"), "{stderr}");
    assert!(stderr.contains("line 3: field `time`"), "{stderr}");
    assert!(stderr.contains("line 6: missing key field `session_id`"), "{stderr}");
    assert!(stderr.contains("3 input line(s) rejected"), "{stderr}");
}

#[test]
fn a_bad_query_shows_a_caret_and_fails() {
    let (stdout, stderr, code) = timeline(&["eval", "-q", "duration_where(\n  latest_event_to_state(cdn))"], "");
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    assert!(stderr.contains("query:2:3"), "{stderr}");
    assert!(
        stderr.contains("`duration_where` takes a boolean timeline, found a state timeline"),
        "{stderr}"
    );
}

#[test]
fn at_timeline_and_formats() {
    let input = "{\"session_id\":\"k\",\"time\":0,\"s\":\"a\"}\n{\"session_id\":\"k\",\"time\":10,\"s\":\"b\"}\n";
    let q = "duration_in_cur_state(latest_event_to_state(s))";
    let (out, _, _) = timeline(&["eval", "-q", q, "--at", "7"], input);
    assert_eq!(out, "{\"key\":\"k\",\"value\":7}\n");
    let (out, _, _) = timeline(&["eval", "-q", q, "--at", "-5"], input);
    assert_eq!(
        out, "{\"key\":\"k\",\"value\":null}\n",
        "Unknown before the origin is null"
    );
    let (out, _, _) = timeline(&["eval", "-q", q, "--format", "csv"], input);
    assert_eq!(out, "key,value\nk,0\n");
    let (out, _, _) = timeline(&["eval", "-q", q, "--timeline"], input);
    assert_eq!(
        out,
        "{\"key\":\"k\",\"timeline\":[{\"start\":0,\"end\":10,\"value\":0,\"rising\":true},{\"start\":10,\"end\":null,\"value\":0,\"rising\":true}]}\n"
    );
    let (out, _, _) = timeline(&["eval", "-q", q, "--timeline", "--format", "csv"], input);
    assert_eq!(out, "key,start,end,value,rising\nk,0,10,0,true\nk,10,,0,true\n");
    let (_, err, code) = timeline(&["eval", "-q", q, "--at", "tomorrow"], input);
    assert_eq!(code, Some(1));
    assert!(err.contains("--at must be"), "{err}");
}

#[test]
fn generated_data_evaluates_the_same_in_any_order() {
    let (data, _, code) = timeline(&["gen", "cirr", "--sessions", "300", "--seed", "11"], "");
    assert_eq!(code, Some(0));
    let (in_order, _, code) = timeline(&["eval", "-q", CIRR], &data);
    assert_eq!(code, Some(0));
    let mut lines: Vec<&str> = data.lines().collect();
    lines.reverse();
    let reversed = lines.join("\n");
    let (out_of_order, _, _) = timeline(&["eval", "-q", CIRR], &reversed);
    assert_eq!(in_order, out_of_order);
    assert_eq!(in_order.lines().count(), 300);
    let nonzero = in_order.lines().filter(|l| !l.ends_with("\"value\":0}")).count();
    assert!(nonzero > 30, "CIRR data has rebuffering on CDN1: {nonzero}");
}

#[test]
fn a_misspelt_column_is_a_warning_in_eval_and_strict_refuses_it() {
    let events = include_str!("../examples/cirr.jsonl");
    let typo = "duration_where(\n  has_existed(playerStateChnage == \"play\"))";
    let (stdout, stderr, code) = timeline(&["eval", "-q", typo, "-e", "-"], events);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "the results are still printed: {stdout}");
    assert!(
        stderr.contains("Warning: no event of stream `default` has carried the column `playerStateChnage`"),
        "{stderr}"
    );
    assert!(stderr.contains("query:2:15"), "{stderr}");
    assert!(stderr.contains("did you mean `playerStateChange`?"), "{stderr}");

    let (stdout, stderr, code) = timeline(&["eval", "--strict", "-q", typo], events);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("--strict"), "{stderr}");
    let (stdout, _, code) = timeline(&["eval", "--strict", "-q", CIRR], events);
    assert_eq!(
        (code, stdout.lines().count()),
        (Some(0), 2),
        "a clean query passes --strict"
    );
}

#[test]
fn the_key_comes_from_the_header_or_from_key() {
    let events = include_str!("../examples/card-swipes.jsonl");
    let query = r#"has_existed(suburb == "Newtown")"#;
    let (stdout, _, code) = timeline(&["eval", "-q", &format!("from cards key card; {query}")], events);
    assert_eq!((code, stdout.lines().count()), (Some(0), 3), "{stdout}");
    let (by_flag, _, code) = timeline(&["eval", "--key", "card", "-q", query], events);
    assert_eq!((code, &by_flag), (Some(0), &stdout));
    let (_, stderr, code) = timeline(&["eval", "-q", query], events);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("name the key field with --key FIELD"), "{stderr}");
    let (_, stderr, code) = timeline(
        &["eval", "-q", "from cards key card; has_existed(x == 1)"],
        include_str!("../examples/cirr.jsonl"),
    );
    assert_eq!(code, Some(3));
    assert!(stderr.contains("are they events of stream `cards`?"), "{stderr}");
}
