//! Retention (`timeline serve --retention`): events older than the horizon
//! are refused with the reason; keys behind it are forgotten in memory and in
//! the log, so that a recovery (from the log alone, or from a snapshot and
//! the log's tail) gives the same keys; a key that comes back starts anew;
//! and a kill -9 loop with resends loses nothing and counts nothing twice.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Server;
use support::cirr::{KillLoop, batch_results, generated, snapshot_records};
use timeline::EventParser;
use timeline_local::snapshot;

const QUERY: &str = "has_existed(x == \"a\")";

fn event(key: &str, time: i64, x: &str) -> String {
    format!(r#"{{"session_id":"{key}","time":{time},"x":"{x}"}}"#)
}

/// The job's value for `key` at its end, or the status when it has none.
fn value(server: &Server, key: &str) -> Result<Value, u16> {
    match server.call("GET", &format!("/v1/jobs/j/keys/{key}/result"), None) {
        (200, body) => Ok(body["value"].clone()),
        (status, _) => Err(status),
    }
}

fn metric(server: &Server, name: &str) -> u64 {
    let (_, text) = server.raw("GET", "/metrics", None);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn keys_behind_the_horizon_are_forgotten_and_older_events_refused() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--retention", "10s", "--retention-check", "0.05"];
    let server = Server::start_with(dir.path(), &args);
    assert_eq!(server.call("POST", "/v1/jobs?name=j", Some(QUERY)).0, 201);
    let (status, job) = server.call(
        "POST",
        "/v1/jobs?name=agg",
        Some("keys = has_existed(x == \"a\") | aggregate(count);"),
    );
    assert_eq!(status, 201, "{job}");
    let counted = job["plan"]["outputs"][0]["node"].as_str().unwrap().to_string();
    let count = |server: &Server| {
        let (_, read) = server.call("GET", &format!("/v1/aggregators/{counted}?fn=count"), None);
        read["groups"][0]["values"]["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("{read}"))
    };
    // "old" has a record of its own; "mid" and "new" share one.
    let old = [event("old", 0, "a"), event("old", 5_000, "b")].join("\n");
    assert_eq!(server.call("POST", "/v1/events", Some(&old)).0, 200);
    let (status, body) = server.call(
        "POST",
        "/v1/events",
        Some(
            &[
                event("mid", 1_000, "a"),
                event("mid", 25_000, "b"),
                event("new", 30_000, "b"),
            ]
            .join("\n"),
        ),
    );
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(3)), "{body}");

    // The newest event is at 30 s: the horizon is 20 s. "old" (latest 5 s)
    // is forgotten; "mid" (latest 25 s) keeps all its events, the one at 1 s
    // too.
    eventually("old forgotten", || value(&server, "old") == Err(404));
    // Nor is it counted across keys.
    assert_eq!(count(&server), 2);
    assert_eq!(value(&server, "mid"), Ok(Value::Bool(true)));
    assert_eq!(value(&server, "new"), Ok(Value::Bool(false)));
    assert_eq!(server.call("GET", "/v1/keys/old/events", None).0, 404);
    assert_eq!(metric(&server, "timeline_keys_expired_total"), 1);
    assert_eq!(metric(&server, "timeline_log_records_removed_total"), 1);

    // Older than the horizon: refused with the reason, the rest kept.
    let (status, body) = server.call(
        "POST",
        "/v1/events",
        Some(&[event("late", 10_000, "a"), event("new", 31_000, "a")].join("\n")),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    let rejected = &body["rejected"][0];
    assert_eq!(rejected["line"], 1, "{body}");
    let reason = rejected["error"].as_str().unwrap();
    assert!(
        reason.contains("event time 10000 is older than the retention horizon 20000") && reason.contains("10s"),
        "{reason}"
    );
    assert_eq!(value(&server, "late"), Err(404));
    assert_eq!(value(&server, "new"), Ok(Value::Bool(true)));
    // Only too old events: the batch is refused as a whole.
    let (status, body) = server.call("POST", "/v1/events", Some(&event("late", 0, "a")));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_events", "{body}");
    assert_eq!(metric(&server, "timeline_events_too_old_total"), 2);

    // The log holds what the workers hold: a full replay (no snapshot)
    // gives the same keys and values.
    let before: Vec<_> = ["old", "mid", "new", "late"]
        .iter()
        .map(|k| value(&server, k))
        .collect();
    server.kill();
    let _ = std::fs::remove_file(snapshot::path(dir.path()));
    let server = Server::start_with(dir.path(), &args);
    assert_eq!(snapshot_records(&server), 0);
    let after: Vec<_> = ["old", "mid", "new", "late"]
        .iter()
        .map(|k| value(&server, k))
        .collect();
    assert_eq!(after, before);
    let (_, events) = server.call("GET", "/v1/keys/mid/events", None);
    assert_eq!(events["events"].as_array().map(Vec::len), Some(2), "{events}");
}

/// At-least-once resends stay quiet: a repeat of an event applied before the
/// horizon passed it is left out as a repeat, not refused; a new event that
/// old is refused.
#[test]
fn a_resend_of_an_event_applied_before_the_horizon_passed_it_is_a_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--retention", "10s"]);
    assert_eq!(server.call("POST", "/v1/jobs?name=j", Some(QUERY)).0, 201);
    let first = r#"{"session_id":"k","time":1000,"event_id":"a","x":"a"}"#;
    assert_eq!(server.call("POST", "/v1/events", Some(first)).0, 200);
    let later = r#"{"session_id":"k","time":30000,"event_id":"b","x":"b"}"#;
    assert_eq!(server.call("POST", "/v1/events", Some(later)).0, 200);
    let (status, body) = server.call("POST", "/v1/events", Some(first));
    assert_eq!((status, &body["rejected"]), (200, &serde_json::json!([])), "{body}");
    assert_eq!(metric(&server, "timeline_repeats_total"), 1);
    assert_eq!(value(&server, "k"), Ok(Value::Bool(true)));
    let new_but_old = r#"{"session_id":"k","time":2000,"event_id":"c","x":"a"}"#;
    let (status, body) = server.call("POST", "/v1/events", Some(new_but_old));
    assert_eq!(status, 400, "{body}");
}

/// A key behind the horizon that gets an event again starts anew, also when
/// it is recovered from a snapshot taken while it still held its old events.
#[test]
fn a_key_that_comes_back_starts_anew_across_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // No pass by time: only the key's return forgets it.
    let args = [
        "--retention",
        "10s",
        "--retention-check",
        "1000",
        "--snapshot-every-events",
        "3",
    ];
    let server = Server::start_with(dir.path(), &args);
    assert_eq!(server.call("POST", "/v1/jobs?name=j", Some(QUERY)).0, 201);
    let first = [event("k", 0, "a"), event("k", 1_000, "b"), event("other", 30_000, "b")].join("\n");
    assert_eq!(server.call("POST", "/v1/events", Some(&first)).0, 200);
    assert_eq!(value(&server, "k"), Ok(Value::Bool(true)), "not forgotten yet");
    eventually("a snapshot with k's old events", || {
        snapshot::covered_records(dir.path()).is_some_and(|r| r >= 1)
    });
    // k's latest event (1 s) is behind the horizon (20 s): it starts anew.
    assert_eq!(server.call("POST", "/v1/events", Some(&event("k", 25_000, "b"))).0, 200);
    assert_eq!(value(&server, "k"), Ok(Value::Bool(false)));
    server.kill();

    let server = Server::start_with(dir.path(), &args);
    assert!(snapshot_records(&server) > 0, "recovered from the snapshot");
    assert_eq!(value(&server, "k"), Ok(Value::Bool(false)));
    drop(server);
    std::fs::remove_file(snapshot::path(dir.path())).unwrap();
    let server = Server::start_with(dir.path(), &args);
    assert_eq!(value(&server, "k"), Ok(Value::Bool(false)));
    assert_eq!(value(&server, "other"), Ok(Value::Bool(false)));
}

/// What the server must hold after `lines` were committed one batch after
/// another (`batch` lines each) with retention `keep` ms: events older than
/// the horizon before their batch refused, a key behind it that gets events
/// again started anew, and the keys behind the final horizon forgotten.
/// Also returns how many events were refused and keys started anew.
fn with_retention(lines: &[String], batch: usize, keep: i64) -> (BTreeMap<String, Value>, usize, usize) {
    let parser = EventParser::default();
    let mut latest: Option<i64> = None;
    let mut keys: HashMap<String, (i64, Vec<String>)> = HashMap::new();
    let (mut refused, mut restarted) = (0, 0);
    for chunk in lines.chunks(batch) {
        let horizon = latest.map(|l| l - keep);
        let mut newest = latest;
        for line in chunk {
            let e = parser.parse(line).unwrap();
            if horizon.is_some_and(|h| e.time < h) {
                refused += 1;
                continue;
            }
            let key = e.key.to_string();
            if let Some((last, _)) = keys.get(&key)
                && horizon.is_some_and(|h| *last < h)
            {
                keys.remove(&key);
                restarted += 1;
            }
            let entry = keys.entry(key).or_insert((e.time, Vec::new()));
            entry.0 = entry.0.max(e.time);
            entry.1.push(line.clone());
            newest = Some(newest.map_or(e.time, |n| n.max(e.time)));
        }
        latest = newest;
    }
    let horizon = latest.map_or(i64::MIN, |l| l - keep);
    let kept: Vec<String> = keys
        .into_values()
        .filter(|(last, _)| *last >= horizon)
        .flat_map(|(_, lines)| lines)
        .collect();
    (batch_results(&kept), refused, restarted)
}

#[test]
fn kill_9_with_retention_loses_nothing_and_counts_nothing_twice() {
    const BATCH: usize = 61;
    const KEEP: i64 = 120_000;
    let lines = generated(120, 11);
    let (all, refused, restarted) = with_retention(&lines, BATCH, KEEP);
    // The data exercises every rule: refusals, forgotten and kept keys.
    let keys = batch_results(&lines).len();
    assert!(refused > 0, "no event refused");
    assert!(all.len() < keys && !all.is_empty(), "{} of {keys} keys kept", all.len());
    let run = KillLoop {
        args: &[
            "--retention",
            "2min",
            "--retention-check",
            "0.02",
            "--snapshot-every-events",
            "50",
        ],
        batches: lines.chunks(BATCH).map(|c| c.to_vec()).collect(),
        kills: 20,
        refusals: true,
    }
    .run(|sent| with_retention(sent, BATCH, KEEP).0);
    assert!(run.kills >= 20);
    assert!(run.used_snapshot > 0, "no recovery used a snapshot");
    eprintln!(
        "{refused} events refused, {restarted} keys started anew, {} of {keys} keys kept, {} kills",
        all.len(),
        run.kills
    );
}
