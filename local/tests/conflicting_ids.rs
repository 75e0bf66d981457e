//! Deliveries of one identified event (same key, time and `event_id`) whose
//! contents differ: the one with the least canonical JSON is the event, for
//! every operator alike and whatever the order of arrival, in `timeline eval`
//! (from a file and from standard input) and in `timeline serve` (as they
//! arrive, after a restart, and in the backfill of a job submitted later).

mod support;

use std::process::Command;

use serde_json::Value;
use support::Server;

/// One job per operator that the deliveries below tell apart.
const JOBS: &[(&str, &str)] = &[
    ("latest", "latest_event_to_state(s)"),
    ("existed", r#"has_existed(s == "b")"#),
    ("within", r#"has_existed_within(s == "b", 5s)"#),
    ("flagged", "has_existed(x == 1)"),
    ("turns", r#"count_where(latest_event_to_state(s) == "b")"#),
    ("state_for", "duration_in_cur_state(latest_event_to_state(s))"),
];

/// The deliveries the contract picks: of e1 `"s":"a"` sorts before `"s":"b"`;
/// of e2 the one with `x` (`,"x"` sorts before `}`).
const WINNERS: &[&str] = &[
    r#"{"session_id":"k","time":0,"event_id":"e0","s":"c"}"#,
    r#"{"session_id":"k","time":10000,"event_id":"e1","s":"a"}"#,
    r#"{"session_id":"k","time":20000,"event_id":"e2","s":"c","x":1}"#,
    r#"{"session_id":"k","time":30000,"s":"c"}"#,
    r#"{"session_id":"j","time":5000,"event_id":"e1","s":"b"}"#,
];

/// The other deliveries of e1 and e2, and a repeat of the first.
const LOSERS: &[&str] = &[
    r#"{"session_id":"k","time":10000,"event_id":"e1","s":"b"}"#,
    r#"{"s":"c","session_id":"k","time":20000,"event_id":"e2"}"#,
    r#"{"session_id":"k","time":10000,"event_id":"e1","s":"b","y":true}"#,
    r#"{"session_id":"k","time":0,"event_id":"e0","s":"c"}"#,
];

fn losers_then_winners() -> Vec<&'static str> {
    LOSERS.iter().chain(WINNERS).copied().collect()
}

fn winners_then_losers() -> Vec<&'static str> {
    WINNERS.iter().chain(LOSERS).copied().collect()
}

/// `timeline eval --timeline` of `query` over `lines`, from a file or stdin.
fn eval(query: &str, lines: &[&str], stdin: bool) -> String {
    let text = lines.join("\n") + "\n";
    let mut command = Command::new(env!("CARGO_BIN_EXE_timeline"));
    command.args(["eval", "--timeline", "-q", query, "-e"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    let output = if stdin {
        support::output_with_stdin(command.arg("-"), text.as_bytes())
    } else {
        std::fs::write(file.path(), &text).unwrap();
        command.arg(file.path()).output().unwrap()
    };
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn eval_picks_the_least_canonical_delivery_in_any_order() {
    for (name, query) in JOBS {
        let expected = eval(query, WINNERS, false);
        for lines in [losers_then_winners(), winners_then_losers()] {
            assert_eq!(eval(query, &lines, false), expected, "{name} from a file");
            assert_eq!(eval(query, &lines, true), expected, "{name} from stdin");
        }
    }
    // The first arrival is not what decides: e1's losing delivery makes
    // `has_existed(s == "b")` true from 10 s if taken.
    let latest = eval(JOBS[1].1, &losers_then_winners(), false);
    assert!(!latest.contains("10000"), "{latest}");
}

/// Every job's timeline for keys `k` and `j`.
fn timelines(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    for (name, _) in JOBS {
        for key in ["k", "j"] {
            let (status, body) = server.call("GET", &format!("/v1/jobs/{name}/keys/{key}/timeline"), None);
            assert_eq!(status, 200, "{name}/{key}: {body}");
            all.push(body);
        }
    }
    all
}

fn submit_all(server: &Server, jobs: &[(&str, &str)]) {
    for (name, query) in jobs {
        let (status, body) = server.call("POST", &format!("/v1/jobs?name={name}"), Some(query));
        assert_eq!(status, 201, "{body}");
    }
}

/// Posts `lines` one batch per line (so that deliveries meet across commits)
/// or all in one batch.
fn post(server: &Server, lines: &[&str], one_by_one: bool) {
    let batches: Vec<String> = if one_by_one {
        lines.iter().map(|l| l.to_string()).collect()
    } else {
        vec![lines.join("\n")]
    };
    for batch in batches {
        let (status, body) = server.call("POST", "/v1/events", Some(&batch));
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn serve_picks_the_least_canonical_delivery_live_after_restart_and_in_backfills() {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = Server::start(reference_dir.path());
    submit_all(&reference, JOBS);
    post(&reference, WINNERS, false);
    let expected = timelines(&reference);

    for (order, one_by_one) in [
        (losers_then_winners(), true),
        (winners_then_losers(), true),
        (losers_then_winners(), false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path());
        // Half the jobs before the events, half after (their backfill).
        submit_all(&server, &JOBS[..3]);
        post(&server, &order, one_by_one);
        submit_all(&server, &JOBS[3..]);
        assert_eq!(timelines(&server), expected, "live, one by one: {one_by_one}");
        server.kill();
        // Recovery replays the log (snapshots off) ...
        let server = Server::start_with(
            dir.path(),
            &["--snapshot-every-events", "0", "--snapshot-every-secs", "0"],
        );
        assert_eq!(timelines(&server), expected, "after a restart");
        // ... and from a snapshot (taken at job submission), then more deliveries.
        post(&server, LOSERS, true);
        assert_eq!(timelines(&server), expected, "after more losing deliveries");
        // Losers sent again are repeats: no rebuild, nothing logged.
        let rebuilt = server.logged("key rebuilt").len();
        let (_, before) = server.call("GET", "/v1/streams/default", None);
        for _ in 0..3 {
            post(&server, LOSERS, false);
        }
        let (_, after) = server.call("GET", "/v1/streams/default", None);
        assert_eq!(
            server.logged("key rebuilt").len(),
            rebuilt,
            "a known loser again rebuilds nothing"
        );
        assert_eq!(after["events"], before["events"], "a known loser again is not logged");
        assert_eq!(timelines(&server), expected, "after losers sent again");
        server.kill();
    }
}
