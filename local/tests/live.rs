//! A job's live figures per node (`/v1/jobs/{job}/stats`) and its aggregates
//! sampled over time (`/v1/jobs/{job}/series`), against the real binary.

mod support;

use serde_json::Value;
use support::Server;

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn ok(server: &Server, method: &str, path: &str, body: Option<&str>) -> Value {
    let (status, body) = server.call(method, path, body);
    assert!((200..300).contains(&status), "{method} {path}: {status} {body}");
    body
}

#[test]
fn stats_give_each_node_its_events_keys_state_and_latest_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    ok(&server, "POST", "/v1/jobs?name=cirr", Some(&example("cirr.tl")));
    let empty = ok(&server, "GET", "/v1/jobs/cirr/stats", None);
    assert_eq!((empty["events"].as_u64(), empty["keys"].as_u64()), (Some(0), Some(0)));
    assert!(empty["latest"].is_null());

    ok(&server, "POST", "/v1/events", Some(&example("cirr.jsonl")));
    let job = ok(&server, "GET", "/v1/jobs/cirr", None);
    let streams = ok(&server, "GET", "/v1/streams", None);
    let stream = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == job["stream"]["name"])
        .unwrap()
        .clone();
    let stats = ok(&server, "GET", "/v1/jobs/cirr/stats", None);
    assert_eq!(stats["events"], stream["events"]);
    assert_eq!(stats["keys"], stream["keys"]);
    assert_eq!(stats["latest"], stream["latest"]);
    let nodes = stats["nodes"].as_array().unwrap();
    let plan_nodes = job["plan"]["nodes"].as_array().unwrap();
    assert_eq!(
        nodes.iter().map(|n| &n["node"]).collect::<Vec<_>>(),
        plan_nodes.iter().map(|n| &n["id"]).collect::<Vec<_>>(),
        "one entry per plan node, in plan order"
    );
    for n in nodes {
        assert_eq!(n["keys"], stream["keys"], "{n}");
        assert_eq!(n["latest"], stream["latest"], "{n}");
        if n["worker"] == "event-processor" {
            // Every event of the stream reached every leaf.
            assert_eq!(n["events"], stream["events"], "{n}");
            assert!(n["state_bytes"].as_u64().unwrap() > 0, "{n}");
        } else {
            assert!(n["events"].is_null(), "{n}");
            assert_eq!(n["state_bytes"], 0, "{n}");
        }
    }

    // The figures follow new events.
    ok(
        &server,
        "POST",
        "/v1/events",
        Some(r#"{"session_id":"another","time":90000,"cdnChange":"CDN2"}"#),
    );
    let after = ok(&server, "GET", "/v1/jobs/cirr/stats", None);
    let leaf = |s: &Value| {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["worker"] == "event-processor")
            .unwrap()
            .clone()
    };
    assert_eq!(
        leaf(&after)["events"].as_u64(),
        leaf(&stats)["events"].as_u64().map(|e| e + 1)
    );
    assert_eq!(
        leaf(&after)["keys"].as_u64(),
        leaf(&stats)["keys"].as_u64().map(|k| k + 1)
    );
    assert_eq!(leaf(&after)["latest"], 90000);

    let (status, body) = server.call("GET", "/v1/jobs/nope/stats", None);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_job")));
}

#[test]
fn stats_of_an_aggregate_count_its_keys_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    ok(
        &server,
        "POST",
        "/v1/jobs?name=rate",
        Some(&example("completion-rate.tl")),
    );
    ok(
        &server,
        "POST",
        "/v1/streams/completions/events",
        Some(&example("completion-rate.jsonl")),
    );
    let stats = ok(&server, "GET", "/v1/jobs/rate/stats", None);
    let metrics = ok(&server, "GET", "/v1/jobs/rate/metrics", None);
    for output in metrics["outputs"].as_array().unwrap() {
        let node = stats["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == output["node"])
            .unwrap();
        let groups = output["groups"].as_array().unwrap();
        assert_eq!(node["groups"].as_u64(), Some(groups.len() as u64), "{node}");
        if output["worker"] == "aggregator" {
            // The example's five sessions are each held in one CDN's group.
            assert_eq!(node["keys"], 5, "{node}");
            assert!(node["state_bytes"].as_u64().unwrap() > 0, "{node}");
        } else {
            assert!(node["keys"].is_null(), "{node}");
        }
    }
}

#[test]
fn a_series_holds_what_point_reads_give_at_each_instant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    ok(
        &server,
        "POST",
        "/v1/jobs?name=rate",
        Some(&example("completion-rate.tl")),
    );
    let empty = ok(&server, "GET", "/v1/jobs/rate/series", None);
    assert_eq!(empty["times"], serde_json::json!([]));

    ok(
        &server,
        "POST",
        "/v1/streams/completions/events",
        Some(&example("completion-rate.jsonl")),
    );
    let series = ok(&server, "GET", "/v1/jobs/rate/series?points=9", None);
    // By default the series spans the stream's first to its latest event.
    assert_eq!((series["from"].as_i64(), series["to"].as_i64()), (Some(0), Some(70000)));
    let times: Vec<i64> = series["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert_eq!(times, (0..9).map(|i| i * 70000 / 8).collect::<Vec<_>>());
    let outputs = series["outputs"].as_array().unwrap();
    assert_eq!(
        outputs.iter().map(|o| o["name"].as_str().unwrap()).collect::<Vec<_>>(),
        ["attempts", "completed", "completion_rate"]
    );
    let mut compared = 0;
    for (i, t) in times.iter().enumerate() {
        let at = ok(&server, "GET", &format!("/v1/jobs/rate/metrics?t={t}"), None);
        for output in outputs {
            let read = at["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == output["name"])
                .unwrap();
            let read_groups = read["groups"].as_array().unwrap();
            for g in output["groups"].as_array().unwrap() {
                let point = read_groups.iter().find(|r| r["group"] == g["group"]);
                for function in output["functions"].as_array().unwrap() {
                    let f = function.as_str().unwrap();
                    let expected = match point {
                        None => Value::Null,
                        Some(p) if output["worker"] == "metric" => p["value"].clone(),
                        Some(p) => p["values"][f].clone(),
                    };
                    assert_eq!(
                        g["values"][f][i], expected,
                        "{} {} {f} at {t}",
                        output["name"], g["group"]
                    );
                    compared += 1;
                }
            }
            // Every group read at t is in the series.
            for r in read_groups {
                assert!(
                    output["groups"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|g| g["group"] == r["group"])
                );
            }
        }
    }
    assert!(compared >= 9 * 6, "{compared} values compared");

    let narrow = ok(&server, "GET", "/v1/jobs/rate/series?from=1000&to=1002&points=50", None);
    assert_eq!(narrow["times"], serde_json::json!([1000, 1001, 1002]));
    for bad in ["points=1", "points=5000", "from=10&to=5", "from=yesterday"] {
        let (status, body) = server.call("GET", &format!("/v1/jobs/rate/series?{bad}"), None);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
}
