//! A job's changes (`GET /v1/jobs/{job}/changes`, JSON pages and
//! Server-Sent Events): the card-swipes alert arrives once with the instant
//! it applies from, a late event that clears it arrives as a change too, a
//! condition filters, a client resuming with `Last-Event-ID` across kill -9
//! misses nothing and sees nothing twice, and changes lost to a crash
//! between the log's commit and theirs are computed again.

mod support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};
use support::Server;

/// The card-swipes example, with a way to clear the alert: a travel notice
/// (which may arrive late) says the card's owner is moving between suburbs.
const ALERT: &str = r#"from cards key card;
let overlap =
     has_existed_within(suburb == "Newtown" && kind == "swipe", 10m)
  && has_existed_within(suburb == "Parramatta" && kind == "swipe", 10m);
alert = (overlap || duration_where(overlap) > 0) && !has_existed(kind == "travel_notice");
"#;

const T0: i64 = 1_709_283_600_000; // 2024-03-01T09:00:00Z

fn swipe(card: &str, id: &str, at: i64, suburb: &str) -> String {
    json!({"card": card, "time": at, "event_id": id, "kind": "swipe", "suburb": suburb}).to_string()
}

fn notice(card: &str, id: &str, at: i64) -> String {
    json!({"card": card, "time": at, "event_id": id, "kind": "travel_notice"}).to_string()
}

fn submit(server: &Server, name: &str, query: &str) {
    let body = json!({"name": name, "query": query, "changes": true}).to_string();
    let (status, job) = server.call("POST", "/v1/jobs", Some(&body));
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["changes"], true);
    assert_eq!(job["routes"]["changes"], format!("/v1/jobs/{name}/changes"));
}

fn post(server: &Server, lines: &[String]) {
    let (status, body) = server.call("POST", "/v1/streams/cards/events", Some(&lines.join("\n")));
    assert_eq!(status, 200, "{body}");
}

/// Every change of `job` after `after` (following `next` page by page).
fn all_changes(server: &Server, job: &str, after: u64, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let (status, page) = server.call(
            "GET",
            &format!("/v1/jobs/{job}/changes?after={after}&limit=3{query}"),
            None,
        );
        assert_eq!(status, 200, "{page}");
        let changes = page["changes"].as_array().unwrap();
        let next = page["next"].as_u64().unwrap();
        out.extend(changes.iter().cloned());
        if next == after {
            return out;
        }
        after = next;
    }
}

/// The changes without the log positions (which depend on batching).
fn strip(changes: &[Value]) -> Vec<Value> {
    changes
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.as_object_mut().unwrap().remove("records");
            c
        })
        .collect()
}

#[test]
fn the_alert_arrives_once_and_a_late_event_that_clears_it_arrives_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    submit(&server, "alerts", ALERT);
    // Before any event: nothing, and the page says so.
    let (_, page) = server.call("GET", "/v1/jobs/alerts/changes", None);
    assert_eq!(page, json!({"job": "alerts", "changes": [], "next": 0, "last": 0}));

    post(&server, &[swipe("card-1", "c1", T0, "Newtown")]);
    post(&server, &[swipe("card-2", "d1", T0, "Newtown")]);
    post(&server, &[swipe("card-1", "c2", T0 + 450_000, "Parramatta")]);
    // A resend changes nothing.
    post(&server, &[swipe("card-1", "c2", T0 + 450_000, "Parramatta")]);
    post(&server, &[swipe("card-2", "d2", T0 + 1_800_000, "Parramatta")]);

    let alerts = all_changes(&server, "alerts", 0, "&where=value%20==%20true");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["output"], "alert");
    assert_eq!(alert["key"], "card-1");
    assert_eq!(alert["from"], T0 + 450_000, "the instant of the second swipe");
    assert_eq!(alert["until"], Value::Null);
    assert_eq!(
        (alert["old"].clone(), alert["new"].clone()),
        (json!(false), json!(true))
    );

    // A travel notice from before the swipes arrives late: the alert is
    // cleared from the instant it had applied from.
    post(&server, &[notice("card-1", "n1", T0 - 60_000)]);
    let every = all_changes(&server, "alerts", 0, "");
    let ids: Vec<u64> = every.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "ids are 1, 2, 3, ...");
    let card1: Vec<(Value, Value, Value, Value)> = every
        .iter()
        .filter(|c| c["key"] == "card-1")
        .map(|c| {
            (
                c["from"].clone(),
                c["until"].clone(),
                c["old"].clone(),
                c["new"].clone(),
            )
        })
        .collect();
    assert_eq!(
        card1,
        vec![
            // The first swipe: the key's result starts, false.
            (json!(T0), json!(null), json!(null), json!(false)),
            (json!(T0 + 450_000), json!(null), json!(false), json!(true)),
            // The late notice: the key starts earlier (false there), and the
            // alert is cleared.
            (json!(T0 - 60_000), json!(T0), json!(null), json!(false)),
            (json!(T0 + 450_000), json!(null), json!(true), json!(false)),
        ]
    );
    // The change that clears it names the batch that caused it.
    let last = every.last().unwrap();
    assert_eq!(last["records"][0], last["records"][1]);
    // `where` with a DSL boolean over the change's columns.
    let cleared = all_changes(
        &server,
        "alerts",
        0,
        "&where=old%20==%20true%20%26%26%20value%20==%20false",
    );
    assert_eq!(strip(&cleared), strip(&every[every.len() - 1..]));
}

#[test]
fn errors_say_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    submit(&server, "alerts", ALERT);
    assert_eq!(
        server
            .call("POST", "/v1/jobs?name=plain", Some("has_existed(kind == \"swipe\")"))
            .0,
        201
    );
    let (status, body) = server.call("GET", "/v1/jobs/alerts/changes?where=value%20%3D%3D", None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_condition");
    assert_eq!(
        (body["error"]["line"].clone(), body["error"]["column"].clone()),
        (json!(1), json!(9))
    );
    let (status, body) = server.call("GET", "/v1/jobs/alerts/changes?where=has_existed(x%20==%201)", None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("tests columns"),
        "{body}"
    );
    let (status, body) = server.call("GET", "/v1/jobs/nope/changes", None);
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("unknown_job")));
    let (status, body) = server.call("GET", "/v1/jobs/plain/changes", None);
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("changes_not_recorded"))
    );
    assert!(body["error"]["help"].as_str().unwrap().contains("\"changes\": true"));
    for bad in ["limit=0", "limit=10001", "wait=61", "after=-1", "after=x"] {
        let (status, body) = server.call("GET", &format!("/v1/jobs/alerts/changes?{bad}"), None);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = server.raw("GET", "/v1/jobs/alerts/changes", None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn aggregates_give_a_change_per_group_and_function() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let query = "from cards key card;\nswipes = has_existed(kind == \"swipe\") | aggregate(group_by(suburb), count, count_true);";
    submit(&server, "swipes", query);
    post(&server, &[swipe("card-1", "c1", T0, "Newtown")]);
    post(&server, &[swipe("card-2", "d1", T0 + 10, "Newtown")]);
    post(&server, &[swipe("card-3", "e1", T0 + 20, "Parramatta")]);
    let changes = all_changes(&server, "swipes", 0, "&where=function%20==%20%22count_true%22");
    let seen: Vec<(Value, Value, Value, Value)> = changes
        .iter()
        .map(|c| {
            (
                c["group"].clone(),
                c["from"].clone(),
                c["old"].clone(),
                c["new"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (json!("Newtown"), json!(T0), json!(null), json!(1)),
            (json!("Newtown"), json!(T0 + 10), json!(1), json!(2)),
            (json!("Parramatta"), json!(T0 + 20), json!(null), json!(1)),
        ]
    );
    assert!(
        changes
            .iter()
            .all(|c| c["output"] == "swipes" && c.get("key").is_none())
    );
}

#[test]
fn deleted_and_submitted_again_a_job_never_reuses_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    submit(&server, "alerts", ALERT);
    post(&server, &[swipe("card-1", "c1", T0, "Newtown")]);
    post(&server, &[swipe("card-2", "d1", T0, "Newtown")]);
    assert_eq!(all_changes(&server, "alerts", 0, "").len(), 2);
    assert_eq!(server.call("DELETE", "/v1/jobs/alerts", None).0, 204);
    drop(server);
    let server = Server::start(dir.path());
    submit(&server, "alerts", ALERT);
    // The new job starts from the events so far: no changes for them.
    assert_eq!(all_changes(&server, "alerts", 0, ""), Vec::<Value>::new());
    post(&server, &[swipe("card-3", "g1", T0, "Newtown")]);
    let changes = all_changes(&server, "alerts", 0, "");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["id"], 3);
}

/// A Server-Sent Events client of a job's changes.
struct EventStream {
    lines: std::io::Lines<BufReader<Box<dyn std::io::Read + Send + Sync>>>,
}

impl EventStream {
    fn open(server: &Server, job: &str, last_event_id: Option<u64>) -> EventStream {
        let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(20)).build();
        let mut request = agent
            .get(&format!("{}/v1/jobs/{job}/changes", server.base))
            .set("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.set("Last-Event-ID", &id.to_string());
        }
        let response = request.call().expect("an event stream");
        assert_eq!(response.content_type(), "text/event-stream");
        EventStream {
            lines: BufReader::new(response.into_reader()).lines(),
        }
    }

    /// Reads to the end of the stream: no more changes, and an end (within
    /// 10 s: a stream that stays open gets a comment every 15 s, so it would
    /// never time out).
    fn assert_ends(self) {
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in self.lines {
                let line = line.expect("the stream ends (not the read timeout)");
                assert!(line.is_empty() || line.starts_with(':'), "{line}");
            }
            let _ = done.send(());
        });
        ended
            .recv_timeout(Duration::from_secs(10))
            .expect("the event stream ended");
    }

    /// The next change event: its id and data.
    fn next(&mut self) -> (u64, Value) {
        let (mut id, mut data, mut event) = (None, None, None);
        loop {
            let line = self.lines.next().expect("the stream goes on").expect("readable");
            if line.is_empty() {
                if let (Some(id), Some(data)) = (id.take(), data.take()) {
                    assert_eq!(event.take(), Some("change".to_string()));
                    return (id, data);
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_string());
            }
        }
    }
}

#[test]
fn an_event_stream_resumed_with_last_event_id_across_kill_9_misses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    submit(&server, "alerts", ALERT);
    let mut received: Vec<(u64, Value)> = Vec::new();
    let mut stream = EventStream::open(&server, "alerts", None);
    let mut sent = 0;
    for round in 0..4 {
        // Cards swiped in both suburbs, some late, some twice.
        for card in 0..6 {
            let c = format!("card-{round}-{card}");
            let late = if card % 2 == 0 { -600_000 } else { 0 };
            post(&server, &[swipe(&c, &format!("{c}-a"), T0 + late, "Newtown")]);
            post(
                &server,
                &[swipe(&c, &format!("{c}-b"), T0 + 60_000 * card, "Parramatta")],
            );
            if card % 3 == 0 {
                post(&server, &[notice(&c, &format!("{c}-n"), T0 + 30_000)]);
            }
            sent += 1;
        }
        // Read some of what is there, then the client and the server die.
        let have = all_changes(&server, "alerts", 0, "").len();
        while received.len() < have - 3 {
            received.push(stream.next());
        }
        drop(stream);
        server.kill();
        server = Server::start(dir.path());
        let last = received.last().map(|(id, _)| *id);
        stream = EventStream::open(&server, "alerts", last);
    }
    let all = all_changes(&server, "alerts", 0, "");
    while received.len() < all.len() {
        received.push(stream.next());
    }
    assert!(sent > 0);
    let ids: Vec<u64> = received.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "every change once, in order"
    );
    let data: Vec<Value> = received.into_iter().map(|(_, d)| d).collect();
    assert_eq!(data, all, "the stream says what the pages say");
    // A change while the stream is open arrives on it.
    post(&server, &[swipe("card-live", "l1", T0, "Newtown")]);
    let (id, change) = stream.next();
    assert_eq!((id, change["key"].clone()), (all.len() as u64 + 1, json!("card-live")));
}

#[test]
fn changes_lost_to_a_crash_after_the_log_commit_are_computed_again() {
    let batches: Vec<Vec<String>> = vec![
        vec![
            swipe("card-1", "c1", T0, "Newtown"),
            swipe("card-2", "d1", T0, "Newtown"),
        ],
        vec![swipe("card-1", "c2", T0 + 450_000, "Parramatta")],
        vec![
            notice("card-1", "n1", T0 - 60_000),
            swipe("card-2", "d2", T0 + 5, "Parramatta"),
        ],
        vec![swipe("card-3", "e1", T0, "Newtown")],
    ];
    // Without a crash.
    let calm = tempfile::tempdir().unwrap();
    let expected = {
        let server = Server::start(calm.path());
        submit(&server, "alerts", ALERT);
        for b in &batches {
            post(&server, b);
        }
        all_changes(&server, "alerts", 0, "")
    };
    // With the server dying after each log commit but before its changes.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("crash-now");
    let start = || {
        Server::start_with_env(
            dir.path(),
            &[],
            &[(timeline_local::durable::CRASH_ENV, marker.as_os_str())],
        )
    };
    let mut server = start();
    submit(&server, "alerts", ALERT);
    for b in &batches {
        std::fs::write(&marker, b"").unwrap();
        let (status, _) = server.call_lenient("POST", "/v1/streams/cards/events", Some(&b.join("\n")));
        assert_eq!(status, None, "the server died before answering");
        assert!(!marker.exists(), "the crash point was reached");
        server.kill();
        server = start();
        assert!(!server.logged("changes computed again after a crash").is_empty());
    }
    assert_eq!(all_changes(&server, "alerts", 0, ""), expected);
}

#[test]
fn changes_seen_before_a_kill_9_are_the_same_after_it_when_commits_group_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    submit(&server, "alerts", ALERT);
    let mut computed_again = 0;
    for round in 0..4 {
        // Four clients at once: the writer groups their batches into commits.
        std::thread::scope(|scope| {
            for client in 0..4 {
                let base = server.base.clone();
                scope.spawn(move || {
                    for i in 0..10 {
                        let card = format!("card-{round}-{}", i % 3);
                        let at = T0 + 60_000 * (client * 10 + i) as i64 - 300_000 * (i % 2) as i64;
                        let suburb = if (client + i) % 2 == 0 { "Newtown" } else { "Parramatta" };
                        let mut lines = vec![swipe(&card, &format!("{card}-{client}-{i}"), at, suburb)];
                        if i == 7 {
                            lines.push(notice(&card, &format!("{card}-n{client}"), at - 1));
                        }
                        let r = ureq::post(&format!("{base}/v1/streams/cards/events")).send_string(&lines.join("\n"));
                        assert_eq!(r.unwrap().status(), 200);
                    }
                });
            }
        });
        // A last burst, so that the last commit likely holds several batches.
        let barrier = std::sync::Barrier::new(6);
        std::thread::scope(|scope| {
            for client in 0..6 {
                let (base, barrier) = (server.base.clone(), &barrier);
                scope.spawn(move || {
                    // New cards, two clients each: their alerts change.
                    let card = format!("card-{round}-burst-{}", client % 3);
                    let lines: Vec<String> = (0..200)
                        .map(|i| {
                            let suburb = if i % 2 == 0 { "Newtown" } else { "Parramatta" };
                            swipe(&card, &format!("{card}-{client}-{i}"), T0 + 7 * i + client, suburb)
                        })
                        .collect();
                    let body = lines.join("\n");
                    barrier.wait();
                    let r = ureq::post(&format!("{base}/v1/streams/cards/events")).send_string(&body);
                    assert_eq!(r.unwrap().status(), 200);
                });
            }
        });
        let seen = all_changes(&server, "alerts", 0, "");
        server.kill();
        server = Server::start(dir.path());
        computed_again += server.logged("changes computed again after a crash").len();
        assert_eq!(all_changes(&server, "alerts", 0, ""), seen, "round {round}");
    }
    // The last commits' changes were not on disk yet when the server died:
    // they were computed again, the same.
    assert!(computed_again > 0, "no recovery computed changes again");
}

#[test]
fn event_streams_end_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    submit(&server, "alerts", ALERT);
    post(&server, &[swipe("card-1", "c1", T0, "Newtown")]);
    let mut stream = EventStream::open(&server, "alerts", None);
    assert_eq!(stream.next().0, 1);
    assert!(server.terminate().success());
    // The stream ends, and the server did not wait for it.
    stream.assert_ends();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.logged("still open").is_empty(),
        "{:?}",
        server.log.lock().unwrap()
    );
}

#[test]
fn an_event_stream_ends_when_its_job_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    submit(&server, "alerts", ALERT);
    post(&server, &[swipe("card-1", "c1", T0, "Newtown")]);
    let mut stream = EventStream::open(&server, "alerts", None);
    assert_eq!(stream.next().0, 1);
    assert_eq!(server.call("DELETE", "/v1/jobs/alerts", None).0, 204);
    // No other change is stored anywhere: the deletion itself ends it.
    stream.assert_ends();
}
