//! Repeats left out of the log: an at-least-once client that sends every
//! batch again does not grow the log, and what is left out changes no result,
//! before or after a restart, nor the backfill of a job submitted later.

mod support;

use std::path::Path;

use serde_json::Value;
use support::Server;
use timeline_local::durable::record_events;
use timeline_local::store::Store;

/// Every event in the log of `dir` (the server must be stopped).
fn logged(dir: &Path) -> Vec<timeline::Event> {
    let store = Store::open(dir).unwrap();
    let mut all = Vec::new();
    store
        .replay(|_, record| {
            all.extend(record_events(record).unwrap().1);
            Ok(())
        })
        .unwrap();
    all
}

fn lines(events: &[String]) -> String {
    events.join("\n")
}

const N: &str = "count_where(latest_event_to_state(s) == \"a\")";
const M: &str = "count_where(latest_event_to_state(s) == \"b\")";

/// Submits job `n`, declares stream `cards`, and sends every batch `times`
/// times; returns job `n`'s result for key `k`.
fn deliver(server: &Server, times: usize) -> Value {
    assert_eq!(server.call("POST", "/v1/jobs?name=n", Some(N)).0, 201);
    // A stream with its own time and id fields: a record written again after
    // leaving events out must still read with them.
    assert_eq!(
        server
            .call(
                "PUT",
                "/v1/streams/cards",
                Some(r#"{"key":"card","time":"ts","id":"uid"}"#)
            )
            .0,
        201
    );
    let batch: Vec<String> = (0..10)
        .map(|t| {
            format!(
                r#"{{"session_id":"k","time":{t},"event_id":"e{t}","s":"{}"}}"#,
                ["a", "b"][t % 2]
            )
        })
        .collect();
    let anonymous = r#"{"session_id":"k","time":100,"s":"a"}"#;
    for _ in 0..times {
        assert_eq!(server.call("POST", "/v1/events", Some(&lines(&batch))).0, 200);
    }
    // Without an id: every copy is an event.
    for _ in 0..3 {
        assert_eq!(server.call("POST", "/v1/events", Some(anonymous)).0, 200);
    }
    // A batch half new, half known (in another field order), and one with a
    // known id and time but other content: another event.
    let mixed = [
        r#"{"s":"b","event_id":"e3","time":3,"session_id":"k"}"#,
        r#"{"session_id":"k","time":20,"event_id":"e20","s":"a"}"#,
        r#"{"session_id":"k","time":4,"event_id":"e4","s":"c"}"#,
    ];
    assert_eq!(server.call("POST", "/v1/events", Some(&mixed.join("\n"))).0, 200);
    let card = r#"{"card":"c1","ts":7,"uid":"u1","v":1}"#;
    for _ in 0..times {
        assert_eq!(server.call("POST", "/v1/streams/cards/events", Some(card)).0, 200);
    }
    server.call("GET", "/v1/jobs/n/keys/k/result", None).1
}

#[test]
fn identified_repeats_are_not_logged_and_change_nothing() {
    let once_dir = tempfile::tempdir().unwrap();
    let once = deliver(&Server::start(once_dir.path()), 1);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let before = deliver(&server, 3);
    assert_eq!(before, once, "repeats change no result");
    drop(server);

    let log = logged(dir.path());
    assert_eq!(
        log.len(),
        logged(once_dir.path()).len(),
        "the log holds what one delivery gives"
    );
    let count = |pred: &dyn Fn(&timeline::Event) -> bool| log.iter().filter(|e| pred(e)).count();
    assert_eq!(
        count(&|e| e.key == "k" && e.id.is_some() && e.time < 10),
        11,
        "10 once, e4 with other content"
    );
    assert_eq!(count(&|e| e.id.is_none()), 3, "events without an id are all kept");
    assert_eq!(count(&|e| e.time == 20), 1);
    assert_eq!(count(&|e| e.key == "c1"), 1, "the cards stream's repeats too");

    // Recovery from the log reads the same; a job submitted now is fed the
    // same events; repeats sent after the restart are still recognised.
    let server = Server::start(dir.path());
    assert_eq!(server.call("GET", "/v1/jobs/n/keys/k/result", None).1, before);
    assert_eq!(server.call("POST", "/v1/jobs?name=m", Some(M)).0, 201);
    let later = server.call("GET", "/v1/jobs/m/keys/k/result", None).1;
    let once_server = Server::start(once_dir.path());
    assert_eq!(once_server.call("POST", "/v1/jobs?name=m", Some(M)).0, 201);
    assert_eq!(later, once_server.call("GET", "/v1/jobs/m/keys/k/result", None).1);
    let (_, card) = server.call("GET", "/v1/streams/cards/keys/c1/events", None);
    assert_eq!(card["events"].as_array().map(Vec::len), Some(1), "{card}");
    let batch: Vec<String> = (0..10)
        .map(|t| {
            format!(
                r#"{{"session_id":"k","time":{t},"event_id":"e{t}","s":"{}"}}"#,
                ["a", "b"][t % 2]
            )
        })
        .collect();
    assert_eq!(server.call("POST", "/v1/events", Some(&lines(&batch))).0, 200);
    drop(server);
    assert_eq!(logged(dir.path()).len(), log.len());
}
