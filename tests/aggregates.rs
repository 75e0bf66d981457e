//! Aggregates across keys on the local runtime over HTTP: the article's
//! completion rate, reuse of running aggregators by a later job, reads at
//! any instant, recovery, and errors.

mod support;

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use support::{Server, agent, call};
use timeline::{EventParser, Value as V};
use timeline_local::batch::Batch;

const RATE: &str = include_str!("../examples/completion-rate.tl");
const ATTEMPTS: &str = r#"from completions;
attempts = count_where(has_existed(playerStateChange == "play")) | aggregate(group_by(cdnChange), sum);"#;
/// Where the completion rate's events go: its query reads `from completions;`.
const EVENTS: &str = "/v1/streams/completions/events";

fn get(server: &Server, path: &str) -> (u16, Value) {
    call(agent().get(&server.url(path)).call())
}

fn submit(server: &Server, name: &str, query: &str) -> Value {
    let (status, body) = call(
        agent()
            .post(&server.url("/v1/jobs"))
            .send_json(json!({"name": name, "query": query})),
    );
    assert_eq!(status, 201, "{body}");
    body
}

/// Per group of the CDN at `t`: (attempts, completed), as a group-by over
/// `timeline eval`'s per-key results.
fn group_by_eval(lines: &[String], t: i64) -> BTreeMap<String, (i64, i64, u64)> {
    let per_key = |query: &str| {
        let mut batch = Batch::new(query, "session_id").unwrap();
        batch
            .read(lines.join("\n").as_bytes(), |bad| panic!("{bad:?}"), |_| {})
            .unwrap();
        batch
            .results()
            .into_iter()
            .map(|(k, o)| (k.to_string(), o.value_at(t)))
            .collect::<BTreeMap<_, _>>()
    };
    let attempts = per_key(r#"count_where(has_existed(playerStateChange == "play"))"#);
    let completed = per_key(r#"has_existed(playerStateChange == "complete")"#);
    let cdn = per_key("latest_event_to_state(cdnChange)");
    let mut groups: BTreeMap<String, (i64, i64, u64)> = BTreeMap::new();
    for (key, value) in &attempts {
        let Some(V::Int(n)) = value else { continue };
        let group = match &cdn[key] {
            Some(V::Str(s)) => s.to_string(),
            _ => "null".to_string(),
        };
        let entry = groups.entry(group).or_default();
        entry.0 += n;
        entry.1 += i64::from(completed[key] == Some(V::Bool(true)));
        entry.2 += 1;
    }
    groups
}

/// `{"CDN1": (attempts, completed, keys)}` read from the job's outputs.
fn read_rate(server: &Server, job: &str, t: Option<i64>) -> (BTreeMap<String, (i64, i64, u64)>, Value) {
    let path = match t {
        Some(t) => format!("/v1/jobs/{job}/metrics?t={t}"),
        None => format!("/v1/jobs/{job}/metrics"),
    };
    let (status, body) = get(server, &path);
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    let by_name = |name: &str| outputs.iter().find(|o| o["name"] == name).unwrap().clone();
    let mut groups: BTreeMap<String, (i64, i64, u64)> = BTreeMap::new();
    for row in by_name("attempts")["groups"].as_array().unwrap() {
        let g = groups.entry(row["group"].as_str().unwrap().to_string()).or_default();
        g.0 = row["values"]["sum"].as_i64().unwrap();
        g.2 = row["keys"].as_u64().unwrap();
    }
    for row in by_name("completed")["groups"].as_array().unwrap() {
        groups.entry(row["group"].as_str().unwrap().to_string()).or_default().1 =
            row["values"]["count_true"].as_i64().unwrap();
    }
    (groups, by_name("completion_rate"))
}

fn assert_rate(rate: &Value, expected: &BTreeMap<String, (i64, i64, u64)>) {
    let rows = rate["groups"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len(), "{rate}");
    for row in rows {
        let (attempts, completed, _) = expected[row["group"].as_str().unwrap()];
        let want = completed as f64 / attempts as f64;
        let got = row["value"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{row}: expected {want}");
    }
}

#[test]
fn completion_rate_over_http_equals_a_group_by_of_timeline_eval_and_a_later_job_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let job = submit(&server, "rate", RATE);
    let plan = &job["plan"];
    assert_eq!(
        plan["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["worker"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["aggregator", "aggregator", "metric"]
    );

    // Shuffled, in several batches: late events retract what was taken in.
    let mut lines = support::generated_cirr(300, 4);
    lines.shuffle(&mut rand::rngs::StdRng::seed_from_u64(8));
    for chunk in lines.chunks(1500) {
        let (status, body) = call(agent().post(&server.url(EVENTS)).send_string(&chunk.join("\n")));
        assert_eq!(status, 200, "{body}");
    }
    let parser = EventParser::default();
    let end = lines.iter().map(|l| parser.parse(l).unwrap().time).max().unwrap();
    let mid = (end + lines.iter().map(|l| parser.parse(l).unwrap().time).min().unwrap()) / 2;

    for t in [None, Some(mid)] {
        let expected = group_by_eval(&lines, t.unwrap_or(end));
        assert!(expected.len() >= 3, "{expected:?}");
        let (got, rate) = read_rate(&server, "rate", t);
        assert_eq!(got, expected, "t={t:?}");
        assert_rate(&rate, &expected);
    }

    // A second job asking only for attempts runs on the same workers.
    let (_, before) = get(&server, "/v1/workers");
    let second = submit(&server, "attempts", ATTEMPTS);
    let nodes = second["plan"]["nodes"].as_array().unwrap();
    assert!(nodes.iter().all(|n| n["reused"] == true), "{nodes:?}");
    let (_, after) = get(&server, "/v1/workers");
    assert_eq!(before, after, "the second job created workers");
    assert!(after["aggregator"].as_u64().unwrap() >= 6, "{after}");
    let (_, first) = get(&server, "/v1/jobs/rate/metrics/attempts");
    let (status, again) = get(&server, "/v1/jobs/attempts/metrics/attempts");
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["groups"], again["groups"]);
    assert_eq!(first["node"], again["node"]);

    // The aggregator answers directly, any function, any group.
    let node = first["node"].as_str().unwrap();
    let (status, direct) = get(&server, &format!("/v1/aggregators/{node}?fn=sum,p50,max&group=CDN2"));
    assert_eq!(status, 200, "{direct}");
    let rows = direct["groups"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["group"], "CDN2");
    assert_eq!(rows[0]["values"]["sum"], group_by_eval(&lines, end)["CDN2"].0);
    assert_eq!(rows[0]["values"]["max"], 1);

    // Everything comes back after a crash.
    let (_, before) = get(&server, "/v1/jobs/rate/metrics");
    server.kill();
    let server = Server::start(dir.path(), &[]);
    let (_, after) = get(&server, "/v1/jobs/rate/metrics");
    assert_eq!(before, after);

    // Deleting the first job keeps the shared aggregator for the second.
    let (status, _) = call(agent().delete(&server.url("/v1/jobs/rate")).call());
    assert_eq!(status, 204);
    let (status, still) = get(&server, "/v1/jobs/attempts/metrics/attempts");
    assert_eq!(status, 200);
    assert_eq!(still["groups"], first["groups"]);
}

#[test]
fn aggregate_reads_report_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let job = submit(&server, "rate", RATE);
    let (status, body) = call(
        agent()
            .post(&server.url(EVENTS))
            .send_string(include_str!("../examples/completion-rate.jsonl")),
    );
    assert_eq!(status, 200, "{body}");

    let (status, e) = get(&server, "/v1/jobs/rate/metrics/nope");
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("unknown_output")));
    let (status, e) = get(&server, "/v1/jobs/rate/keys/s1/result");
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("wrong_kind")), "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/jobs/rate/metrics")
    );
    let node = job["plan"]["outputs"][0]["node"].as_str().unwrap();
    let (status, e) = get(&server, &format!("/v1/aggregators/{node}?fn=sum,p100"));
    assert_eq!(status, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("p100"), "{e}");
    let metric = job["plan"]["outputs"][2]["node"].as_str().unwrap();
    let (status, e) = get(&server, &format!("/v1/aggregators/{metric}"));
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("wrong_kind")), "{e}");
    let (status, e) = get(&server, "/v1/jobs/rate/metrics?t=yesterday");
    assert_eq!(status, 400, "{e}");

    // A bad aggregate query says where.
    let (status, e) = call(agent().post(&server.url("/v1/jobs?name=bad")).send_string(
        "a = has_existed(x == 1) | aggregate(group_by(cdn), count);\nb = has_existed(y == 1) | aggregate(group_by(os), count);\nr = a / b;",
    ));
    assert_eq!(status, 400);
    assert_eq!(
        (e["error"]["line"].as_u64(), e["error"]["column"].as_u64()),
        (Some(3), Some(5))
    );

    // One group, and a per-key output of a job with aggregates, by name.
    let (status, one) = get(&server, "/v1/jobs/rate/metrics/completion_rate?group=CDN1");
    assert_eq!(status, 200);
    assert_eq!(one["groups"], json!([{"group": "CDN1", "keys": 2, "value": 0.5}]));
    submit(
        &server,
        "mixed",
        r#"from completions; played = has_existed(playerStateChange == "play"); plays = played | aggregate(count_true);"#,
    );
    let (status, r) = get(&server, "/v1/jobs/mixed/keys/s4/result?output=played");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["value"], false);
    let (status, r) = get(&server, "/v1/jobs/mixed/keys/s4/result");
    assert_eq!(
        (status, &r["value"]),
        (200, &json!(false)),
        "the per-key output is the default"
    );
    let (_, plays) = get(&server, "/v1/jobs/mixed/metrics/plays");
    assert_eq!(
        plays["groups"],
        json!([{"group": null, "keys": 5, "values": {"count_true": 4}}])
    );
}
