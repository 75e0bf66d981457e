//! `timeline eval` over CSV with a header row gives what it gives over the
//! same events as JSON lines: every example, from a file and from standard
//! input; bad rows are reported with their line and the rest is kept.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The JSON lines `jsonl` as CSV: a header of every field, one row each.
fn to_csv(jsonl: &str) -> String {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fields: BTreeSet<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(&fields).unwrap();
    for row in &rows {
        out.write_record(fields.iter().map(|f| match row.get(*f) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        }))
        .unwrap();
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

fn eval(args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timeline"));
    command.arg("eval").args(args).current_dir(examples());
    match stdin {
        None => command.output().unwrap(),
        Some(text) => support::output_with_stdin(&mut command, text.as_bytes()),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_example_gives_the_same_results_from_csv_as_from_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["cirr", "card-swipes", "machine-risk", "game-ad", "completion-rate"] {
        let query = format!("@{name}.tl");
        let jsonl_file = format!("{name}.jsonl");
        let jsonl = std::fs::read_to_string(examples().join(format!("{name}.jsonl"))).unwrap();
        let csv = to_csv(&jsonl);
        let file = dir.path().join(format!("{name}.csv"));
        std::fs::write(&file, &csv).unwrap();
        for timeline in [false, true] {
            let mut base = vec!["-q", query.as_str()];
            if timeline && name != "completion-rate" {
                base.push("--timeline");
            }
            let mut from_jsonl = base.clone();
            from_jsonl.extend(["-e", jsonl_file.as_str()]);
            let expected = eval(&from_jsonl, None);
            assert!(expected.status.success(), "{name}: {}", text(&expected.stderr));
            let mut from_csv = base.clone();
            from_csv.extend(["-e", file.to_str().unwrap()]);
            let got = eval(&from_csv, None);
            assert!(got.status.success(), "{name}: {}", text(&got.stderr));
            assert_eq!(text(&got.stdout), text(&expected.stdout), "{name} from a .csv file");
            let mut from_stdin = base.clone();
            from_stdin.extend(["--input", "csv"]);
            let got = eval(&from_stdin, Some(&csv));
            assert_eq!(text(&got.stdout), text(&expected.stdout), "{name} from stdin");
        }
    }
}

#[test]
fn bad_rows_are_reported_with_their_line_and_the_rest_is_kept() {
    let csv = "session_id,time,playerStateChange\n\
               k,0,buffer\n\
               k,soon,play\n\
               ,5,play\n\
               k,10,play\n";
    let out = eval(
        &[
            "-q",
            r#"duration_where(latest_event_to_state(playerStateChange) == "buffer")"#,
            "--input",
            "csv",
        ],
        Some(csv),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("line 3: field `time`"), "{stderr}");
    assert!(stderr.contains("line 4: missing key field `session_id`"), "{stderr}");
    assert_eq!(text(&out.stdout).trim(), r#"{"key":"k","value":10}"#, "{stderr}");
}
