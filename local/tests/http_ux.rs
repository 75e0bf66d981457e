//! Names and shapes of the HTTP API as a new user meets them, over real HTTP
//! on the real binary: JSON bodies end with a newline; a job needs one name;
//! a leaf-only job's outputs and result worker agree; aggregate functions
//! are answered by the names asked.

mod support;

use serde_json::{Value, json};
use support::Server;

const CIRR: &str = include_str!("../../examples/cirr.tl");
const EVENTS: &str = include_str!("../../examples/cirr.jsonl");

#[test]
fn every_json_body_ends_with_a_newline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, text) = server.raw("POST", "/v1/jobs?name=cirr", Some(CIRR));
    assert_eq!(status, 201, "{text}");
    assert!(text.ends_with("}\n"), "{text:?}");
    let job: Value = serde_json::from_str(&text).unwrap();
    let node = job["result_worker"]["node"].as_str().unwrap().to_string();
    let worker = format!("/v1/timeline-processor/{node}/afsal-mando-1/timeline");
    let answers = [
        ("POST", "/v1/jobs?name=cirr", Some(CIRR)),
        ("POST", "/v1/events", Some(EVENTS)),
        ("GET", "/v1/health", None),
        ("GET", "/v1/jobs", None),
        ("GET", "/v1/jobs/cirr", None),
        ("GET", "/v1/jobs/cirr/keys", None),
        ("GET", "/v1/jobs/cirr/results", None),
        ("GET", "/v1/jobs/cirr/keys/afsal-mando-1/result", None),
        ("GET", "/v1/jobs/cirr/keys/afsal-mando-1/timeline", None),
        ("GET", "/v1/jobs/cirr/metrics", None),
        ("GET", "/v1/keys/afsal-mando-1/events", None),
        ("GET", "/v1/streams", None),
        ("GET", "/v1/workers", None),
        ("GET", "/v1/openapi.json", None),
        // Errors too.
        ("GET", "/v1/jobs/nope", None),
        ("GET", "/no/such/route", None),
        ("POST", "/v1/jobs?name=bad", Some("has_existed(a = 1)")),
        ("GET", "/v1/jobs/cirr/results?limit=x", None),
        ("GET", &worker, None),
    ];
    for (method, path, body) in answers {
        let (status, text) = server.raw(method, path, body);
        assert!(text.ends_with("}\n"), "{method} {path} ({status}): {text:?}");
        assert!(!text.ends_with("\n\n"), "{method} {path}");
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    }
}

#[test]
fn a_job_needs_a_name_and_only_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // No name at all: with the DSL as the body, or in JSON.
    for (path, body) in [
        ("/v1/jobs", CIRR.to_string()),
        ("/v1/jobs", json!({"query": CIRR}).to_string()),
        ("/v1/jobs?strict=true", CIRR.to_string()),
    ] {
        let (status, e) = server.call("POST", path, Some(&body));
        assert_eq!(status, 400, "{path}: {e}");
        assert_eq!(e["error"]["code"], "missing_name", "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("`name`"), "{message}");
    }
    // A bad query without a name: the query's error comes first.
    let (status, e) = server.call("POST", "/v1/jobs", Some("has_existed(a = 1)"));
    assert_eq!((status, &e["error"]["code"]), (400, &json!("bad_query")), "{e}");
    // Two names that disagree.
    let (status, e) = server.call(
        "POST",
        "/v1/jobs?name=x",
        Some(&json!({"name": "y", "query": CIRR}).to_string()),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "name_mismatch", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("`x`") && message.contains("`y`"), "{message}");
    // Nothing was made.
    let (_, jobs) = server.call("GET", "/v1/jobs", None);
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");

    // The same name in both, or the name in either place, is fine.
    let (status, job) = server.call(
        "POST",
        "/v1/jobs?name=x",
        Some(&json!({"name": "x", "query": CIRR}).to_string()),
    );
    assert_eq!((status, &job["name"]), (201, &json!("x")), "{job}");
    let (status, job) = server.call("POST", "/v1/jobs?name=y", Some(&json!({"query": CIRR}).to_string()));
    assert_eq!((status, &job["name"]), (201, &json!("y")), "{job}");
    let (status, job) = server.call(
        "POST",
        "/v1/jobs",
        Some(&json!({"name": "z", "query": CIRR}).to_string()),
    );
    assert_eq!((status, &job["name"]), (201, &json!("z")), "{job}");
}

#[test]
fn a_leaf_only_job_says_event_processor_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, job) = server.call(
        "POST",
        "/v1/jobs?name=played",
        Some(r#"has_existed(playerStateChange == "play")"#),
    );
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["result_worker"]["kind"], "event-processor", "{job}");
    assert_eq!(job["plan"]["outputs"][0]["worker"], "event-processor", "{job}");
    let (_, jobs) = server.call("GET", "/v1/jobs", None);
    assert_eq!(jobs["jobs"][0]["outputs"][0]["worker"], "event-processor", "{jobs}");
    // And it is still read per key.
    server.call("POST", "/v1/events", Some(EVENTS));
    let (status, result) = server.call("GET", "/v1/jobs/played/keys/afsal-mando-1/result", None);
    assert_eq!((status, &result["value"]), (200, &json!(true)), "{result}");
    let (status, results) = server.call("GET", "/v1/jobs/played/results", None);
    assert_eq!(status, 200, "{results}");
    let (_, metrics) = server.call("GET", "/v1/jobs/played/metrics", None);
    assert!(metrics["outputs"][0]["per_key"].is_string(), "{metrics}");
}

#[test]
fn aggregate_functions_are_answered_by_the_names_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let query =
        "rebuffering = duration_where(latest_event_to_state(playerStateChange) == \"buffer\") | aggregate(avg);";
    let (status, job) = server.call("POST", "/v1/jobs?name=rebuffering", Some(query));
    assert_eq!(status, 201, "{job}");
    server.call("POST", "/v1/events", Some(EVENTS));
    let node = job["plan"]["outputs"][0]["node"].as_str().unwrap().to_string();

    let (status, read) = server.call("GET", &format!("/v1/aggregators/{node}?fn=median,p50,mean,max"), None);
    assert_eq!(status, 200, "{read}");
    let values = read["groups"][0]["values"].as_object().unwrap();
    let names: Vec<&str> = values.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 4, "{read}");
    for name in ["median", "p50", "mean", "max"] {
        assert!(values.contains_key(name), "{name}: {read}");
    }
    assert_eq!(values["median"], values["p50"], "{read}");

    let (status, e) = server.call("GET", &format!("/v1/aggregators/{node}?fn=p100"), None);
    assert_eq!(status, 400, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("median"), "{message}");
    assert!(message.contains("`p100`"), "{message}");
}
