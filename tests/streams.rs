//! Streams on one `timeline serve`: jobs on different streams (different key
//! fields, equal key values) see only their own stream's events; each stream
//! keeps a catalogue of its columns; a query gets warnings about columns no
//! event carried, and `strict` refuses them.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::feeder::{check_results, submit};
use support::{CARDS, CIRR, Server, agent, call, generated_cirr, generated_swipes};

const RATE: &str = include_str!("../examples/completion-rate.tl");
const RATE_EVENTS: &str = include_str!("../examples/completion-rate.jsonl");

fn get(server: &Server, path: &str) -> (u16, Value) {
    call(agent().get(&server.url(path)).call())
}

fn post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    call(agent().post(&server.url(path)).send_string(body))
}

fn submit_json(server: &Server, body: Value) -> (u16, Value) {
    call(agent().post(&server.url("/v1/jobs")).send_json(body))
}

/// `timeline eval` of an example, as the quick start runs it: its JSON lines.
fn eval_example(name: &str) -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let out = Command::new(env!("CARGO_BIN_EXE_timeline-under-test"))
        .args(["eval", "-q"])
        .arg(format!("@{}", dir.join(format!("{name}.tl")).display()))
        .arg("-e")
        .arg(dir.join(format!("{name}.jsonl")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The server's rows of every metric and aggregate output of job `job`, as
/// `timeline eval` prints them (`{"output", "group", "keys", "value"}`, an
/// aggregate's functions by name).
fn served_rows(server: &Server, job: &str, outputs: &[&str]) -> Vec<Value> {
    let mut rows = Vec::new();
    for output in outputs {
        let (status, body) = get(server, &format!("/v1/jobs/{job}/metrics/{output}"));
        assert_eq!(status, 200, "{body}");
        for g in body["groups"].as_array().unwrap() {
            let mut row = json!({"output": output, "group": g["group"], "keys": g["keys"]});
            match g.get("value") {
                Some(v) => row["value"] = v.clone(),
                None => {
                    for (f, v) in g["values"].as_object().unwrap() {
                        row[f] = v.clone();
                    }
                }
            }
            rows.push(row);
        }
    }
    rows
}

#[test]
fn three_streams_posted_interleaved_give_each_job_the_results_of_its_own_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let cirr = submit(&server, "cirr", CIRR);
    assert_eq!(cirr["stream"]["name"], "default");
    let cards = submit(&server, "cards", CARDS);
    assert_eq!(
        (&cards["stream"]["name"], &cards["stream"]["key"]),
        (&json!("cards"), &json!("card"))
    );
    assert_eq!(cards["routes"]["events"], "/v1/streams/cards/events");
    submit(&server, "rate", RATE);

    // Equal key values on the default and the cards stream.
    let plays = generated_cirr(20, 31);
    let swipes = generated_swipes(20, 37);
    let completions: Vec<String> = RATE_EVENTS.lines().map(str::to_string).collect();
    let targets = [
        ("/v1/events", &plays),
        ("/v1/streams/cards/events", &swipes),
        ("/v1/streams/completions/events", &completions),
    ];
    let mut offsets = [0usize; 3];
    while offsets.iter().zip(&targets).any(|(o, (_, l))| *o < l.len()) {
        for (i, (path, lines)) in targets.iter().enumerate() {
            let end = (offsets[i] + 7).min(lines.len());
            if offsets[i] < end {
                let (status, body) = post(&server, path, &lines[offsets[i]..end].join("\n"));
                assert_eq!(status, 200, "{path}: {body}");
                assert_eq!(body["rejected"], json!([]), "{path}: {body}");
                offsets[i] = end;
            }
        }
    }

    check_results(&server, CIRR, &plays).unwrap();
    check_results(&server, CARDS, &swipes).unwrap();
    let outputs = ["attempts", "completed", "completion_rate"];
    let rows = served_rows(&server, "rate", &outputs);
    assert_eq!(
        rows,
        eval_example("completion-rate"),
        "the completion rate counts its own stream only"
    );
    assert!(
        rows.contains(&json!({"output": "completion_rate", "group": "CDN1", "keys": 2, "value": 0.5})),
        "{rows:?}"
    );
    let (_, keys) = get(&server, "/v1/jobs/rate/keys");
    assert_eq!(keys["keys"].as_array().unwrap().len(), 5, "{keys}");

    // A job submitted later is fed its own stream's stored events, and only those.
    let late = "from cards key card; duration_where(has_existed_within(kind == \"refund\", 30m))";
    submit(&server, "refunds", late);
    check_results(&server, late, &swipes).unwrap();

    // The catalogue: fields, counts, and the columns each stream's events carried.
    let (_, list) = get(&server, "/v1/streams");
    let summary: Vec<(&str, &str, u64, &Value)> = list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["key"].as_str().unwrap(),
                s["keys"].as_u64().unwrap(),
                &s["jobs"],
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("cards", "card", 20, &json!(["cards", "refunds"])),
            ("completions", "session_id", 5, &json!(["rate"])),
            ("default", "session_id", 20, &json!(["cirr"])),
        ]
    );
    let (status, stream) = get(&server, "/v1/streams/cards");
    assert_eq!(status, 200, "{stream}");
    assert_eq!(stream["events"], swipes.len());
    let times: Vec<i64> = swipes
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["time"].as_i64().unwrap())
        .collect();
    let (first, last) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
    assert_eq!(
        stream["columns"],
        json!([
            {"name": "kind", "types": ["string"], "events": swipes.len(), "first": first, "last": last},
            {"name": "suburb", "types": ["string"], "events": swipes.len(), "first": first, "last": last},
        ])
    );

    // Streams, their events and their jobs survive a crash.
    let before = (get(&server, "/v1/streams").1, served_rows(&server, "rate", &outputs));
    server.kill();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        (get(&server, "/v1/streams").1, served_rows(&server, "rate", &outputs)),
        before
    );
    check_results(&server, CARDS, &swipes).unwrap();
}

#[test]
fn a_misspelt_column_gets_a_warning_naming_the_nearest_column_and_strict_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, body) = post(&server, "/v1/events", include_str!("../examples/cirr.jsonl"));
    assert_eq!(status, 200, "{body}");

    let typo = "duration_where(\n  has_existed(playerStateChnage == \"play\"))";
    let (status, job) = submit_json(&server, json!({"name": "typo", "query": typo}));
    assert_eq!(status, 201, "a warning does not refuse the job: {job}");
    let warnings = job["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{job}");
    let w = &warnings[0];
    assert_eq!((w["line"].as_u64(), w["column"].as_u64()), (Some(2), Some(15)), "{w}");
    assert!(w["message"].as_str().unwrap().contains("`playerStateChnage`"), "{w}");
    assert_eq!(w["help"], "did you mean `playerStateChange`?");
    assert!(w["diagnostic"].as_str().unwrap().contains("query:2:15"), "{w}");
    let (_, shown) = get(&server, "/v1/jobs/typo");
    assert_eq!(
        shown["warnings"], job["warnings"],
        "the job's status keeps its warnings"
    );

    let (_, wrong_type) = submit_json(
        &server,
        json!({"name": "five", "query": "duration_where(latest_event_to_state(playerStateChange) == 5)"}),
    );
    let message = wrong_type["warnings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("integer") && message.contains("string"),
        "{wrong_type}"
    );
    let (_, field) = submit_json(&server, json!({"name": "t", "query": "latest_event_to_state(time)"}));
    assert!(
        field["warnings"][0]["message"].as_str().unwrap().contains("time field"),
        "{field}"
    );

    // `strict` (JSON field or query parameter) refuses; nothing is created.
    let (status, refused) = submit_json(&server, json!({"name": "strict", "query": typo, "strict": true}));
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "warnings");
    assert_eq!(refused["error"]["warnings"][0]["column"], 15, "{refused}");
    let (status, _) = post(&server, "/v1/jobs?name=strict&strict=true", typo);
    assert_eq!(status, 400);
    assert_eq!(get(&server, "/v1/jobs/strict").0, 404);
    let (status, clean) = submit_json(&server, json!({"name": "ok", "query": CIRR, "strict": true}));
    assert_eq!((status, &clean["warnings"]), (201, &json!([])), "{clean}");
}

#[test]
fn a_job_submitted_before_its_stream_has_events_gets_its_warnings_when_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let query = "from sensors key machine;\nhas_existed(colour == \"red\")";
    let job = submit(&server, "red", query);
    assert_eq!(job["warnings"], json!([]), "no column is known before any event");
    let (status, stream) = get(&server, "/v1/streams/sensors");
    assert_eq!(status, 200, "the job's header declares the stream: {stream}");
    assert_eq!((&stream["key"], &stream["events"]), (&json!("machine"), &json!(0)));

    let (status, body) = post(
        &server,
        "/v1/streams/sensors/events",
        r#"{"machine":"m1","time":1,"color":"red"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, job) = get(&server, "/v1/jobs/red");
    let w = &job["warnings"][0];
    assert_eq!((w["line"].as_u64(), w["column"].as_u64()), (Some(2), Some(13)), "{job}");
    assert_eq!(w["help"], "did you mean `color`?");
}

#[test]
fn stream_mistakes_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, e) = post(&server, "/v1/streams/nope/events", r#"{"session_id":"a","time":1}"#);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("unknown_stream")),
        "{e}"
    );
    assert!(e["error"]["help"].as_str().unwrap().contains("from nope key"), "{e}");
    assert_eq!(get(&server, "/v1/streams/nope").0, 404);

    let put = |body: &str| call(agent().put(&server.url("/v1/streams/sensors")).send_string(body));
    assert_eq!(put(r#"{"key": "machine", "time": "ts"}"#).0, 201);
    assert_eq!(put(r#"{"key": "machine"}"#).0, 200, "agreeing fields");
    let (status, e) = put(r#"{"key": "other"}"#);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("stream_conflict")),
        "{e}"
    );
    assert_eq!(put(r#"{"kee": "machine"}"#).0, 400);
    let (status, e) = submit_json(
        &server,
        json!({"name": "x", "query": "from sensors key other; has_existed(a == 1)"}),
    );
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("stream_conflict")),
        "{e}"
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("machine"), "{e}");
    let (status, job) = submit_json(
        &server,
        json!({"name": "y", "query": "from sensors; has_existed(a == 1)"}),
    );
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        (&job["stream"]["key"], &job["stream"]["time"]),
        (&json!("machine"), &json!("ts"))
    );
    let (status, body) = post(&server, "/v1/streams/sensors/events", r#"{"machine":"m","ts":5,"a":1}"#);
    assert_eq!((status, &body["accepted"]), (200, &json!(1)), "{body}");
    let (_, r) = get(&server, "/v1/jobs/y/keys/m/result");
    assert_eq!(r["value"], true, "{r}");

    // Events of one stream posted to another are refused, with where they belong.
    let (status, e) = post(&server, "/v1/events", r#"{"machine":"m","ts":6,"a":1}"#);
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("bad_events")), "{e}");
    let help = e["error"]["help"].as_str().unwrap_or_default();
    assert!(help.contains("/v1/streams/sensors/events"), "{e}");
}

/// The temporal operators beyond the article in `timeline serve`: every node
/// of every key equals `timeline eval`'s (a late event included), the funnel's
/// counts equal the example's, and both hold after a crash and recovery.
#[test]
fn temporal_operators_serve_what_eval_computes_and_survive_a_crash() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let read = |name: &str| std::fs::read_to_string(examples.join(name)).unwrap();
    let orders = support::ORDERS;
    let order_lines = support::order_lines();
    let funnel = read("funnel.tl");
    let funnel_lines: Vec<String> = read("funnel.jsonl").lines().map(str::to_string).collect();
    let beats = read("heartbeat.tl");
    let beat_lines: Vec<String> = read("heartbeat.jsonl").lines().map(str::to_string).collect();

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "orders", orders);
    submit(&server, "funnel", &funnel);
    submit(&server, "beats", &beats);
    for (path, lines) in [
        ("/v1/streams/orders/events", &order_lines),
        ("/v1/streams/shop/events", &funnel_lines),
        ("/v1/streams/machines/events", &beat_lines),
    ] {
        // One event at a time: late ones arrive after later ones.
        for line in lines {
            let (status, body) = post(&server, path, line);
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
    let check = |server: &Server, when: &str| {
        check_results(server, orders, &order_lines).unwrap_or_else(|e| panic!("{when}: {e}"));
        check_results(server, &beats, &beat_lines).unwrap_or_else(|e| panic!("{when}: {e}"));
        assert_eq!(
            served_rows(server, "funnel", &["viewed", "carted", "paid"]),
            eval_example("funnel"),
            "{when}"
        );
    };
    check(&server, "live");
    server.kill();
    let server = Server::start(dir.path(), &[]);
    check(&server, "after a crash");
}
