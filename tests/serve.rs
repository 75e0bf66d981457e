//! The embedded local runtime over real HTTP on loopback.

mod support;

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::{CIRR, Server, agent, call, expected};
use timeline::{CompiledPlan, EventParser, ExecutionPlan};

fn submit(server: &Server, name: &str, query: &str) -> (u16, Value) {
    call(
        agent()
            .post(&server.url("/v1/jobs"))
            .send_json(json!({"name": name, "query": query})),
    )
}

fn post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    call(agent().post(&server.url(path)).send_string(body))
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    call(agent().get(&server.url(path)).call())
}

fn example_lines() -> Vec<String> {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cirr.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cirr_over_http_equals_batch_evaluation_on_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, job) = submit(&server, "cirr", CIRR);
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["plan"]["leaves"].as_array().unwrap().len(), 4);

    // Out of order, in three batches, with repeats, both body formats.
    let mut lines = example_lines();
    lines.reverse();
    let (a, b) = lines.split_at(7);
    assert_eq!(post(&server, "/v1/events", &a.join("\n")).1["accepted"], 7);
    let array = format!("[{}]", b.join(","));
    assert_eq!(post(&server, "/v1/events", &array).1["accepted"], b.len());
    assert_eq!(post(&server, "/v1/events", &a[..3].join("\n")).0, 200);

    let expected = expected(CIRR, &example_lines());
    for (key, nodes) in &expected {
        for (node, spans) in nodes {
            let kind = if node.starts_with("has_existed") || node.starts_with("latest_event_to_state") {
                "event-processor"
            } else {
                "timeline-processor"
            };
            let (status, tl) = get(&server, &format!("/v1/{kind}/{node}/{key}/timeline"));
            assert_eq!(status, 200, "{tl}");
            assert_eq!(&tl["spans"], spans, "{key} {node}");
        }
    }
    let (_, r) = get(&server, "/v1/jobs/cirr/keys/afsal-mando-1/result");
    assert_eq!(r["value"], 13000);
    let (_, r) = get(&server, "/v1/jobs/cirr/keys/afsal-mando-1/result?t=26000");
    assert_eq!(r["value"], 5000);
    let (_, keys) = get(&server, "/v1/jobs/cirr/keys");
    assert_eq!(keys["keys"], json!(["afsal-mando-1", "cdn2-viewer"]));
    let leaf = job["plan"]["leaves"][0].as_str().unwrap();
    let (_, d) = get(&server, &format!("/v1/event-processor/{leaf}/afsal-mando-1"));
    assert_eq!(
        d["events"], 10,
        "11 lines of the key, one a repeat of an identified event, left out of the log"
    );
    let (_, d) = get(&server, &format!("/v1/event-processor/{leaf}/cdn2-viewer"));
    assert_eq!(
        d["events"], 5,
        "5 identified lines, 3 of them posted twice, each counted once"
    );
    let (_, clipped) = get(&server, "/v1/jobs/cirr/keys/afsal-mando-1/timeline?from=12000&to=30000");
    assert_eq!(clipped["spans"][0]["start"], 12000);
    assert_eq!(clipped["spans"].as_array().unwrap().last().unwrap()["end"], 30000);
}

#[test]
fn shared_subexpressions_are_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    post(&server, "/v1/events", &example_lines().join("\n"));
    let (_, health) = get(&server, "/v1/health");
    assert_eq!(health["leaf_workers_per_key"], 4);

    let buffering = r#"duration_where(latest_event_to_state(playerStateChange) == "buffer" && latest_event_to_state(cdnChange) == "CDN1")"#;
    let (status, job) = submit(&server, "buffering", buffering);
    assert_eq!(status, 201);
    let nodes = job["plan"]["nodes"].as_array().unwrap();
    let reused: Vec<&str> = nodes
        .iter()
        .filter(|n| n["reused"] == true)
        .map(|n| n["expression"].as_str().unwrap())
        .collect();
    assert_eq!(
        reused.len(),
        4,
        "two leaves and two comparisons already run: {reused:?}"
    );
    let (_, health) = get(&server, "/v1/health");
    assert_eq!(health["leaf_workers_per_key"], 4, "no new leaf worker");

    // The shared && node answers the same for both jobs; the new job saw past events.
    let shared = nodes
        .iter()
        .find(|n| n["reused"] == true && n["expression"].as_str().unwrap().contains("CDN1"))
        .unwrap();
    let (_, r) = get(
        &server,
        &format!("/v1/workers/{}/cdn2-viewer/result", shared["id"].as_str().unwrap()),
    );
    assert_eq!(r["value"], true);
    let (_, r) = get(&server, "/v1/jobs/buffering/keys/afsal-mando-1/result");
    assert_eq!(
        r["value"],
        4000 + 8000 + 5000,
        "every buffering on CDN1, seeks included"
    );

    // Same name and query again: nothing new. Same name, other query: conflict.
    assert_eq!(submit(&server, "buffering", buffering).0, 200);
    assert_eq!(submit(&server, "buffering", CIRR).0, 409);
    // Deleting one job keeps the other's workers.
    assert_eq!(call(agent().delete(&server.url("/v1/jobs/buffering")).call()).0, 204);
    assert_eq!(
        get(&server, "/v1/jobs/cirr/keys/afsal-mando-1/result").1["value"],
        13000
    );
    assert_eq!(get(&server, "/v1/jobs/buffering").0, 404);
}

#[test]
fn errors_are_json_with_fitting_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-body-bytes", "2000", "--max-batch-events", "5"]);
    let (status, e) = submit(&server, "bad", "duration_where(\n  latest_event_to_state(cdn))");
    assert_eq!(status, 400);
    assert_eq!(
        (e["error"]["line"].as_u64(), e["error"]["column"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(e["error"]["diagnostic"].as_str().unwrap().contains("query:2:3"));
    assert_eq!(submit(&server, "bad name!", CIRR).0, 400);
    assert_eq!(call(agent().post(&server.url("/v1/jobs")).send_string("{nope")).0, 400);
    submit(&server, "cirr", CIRR);

    let (status, r) = post(
        &server,
        "/v1/events",
        "{\"session_id\":\"k\",\"time\":1,\"x\":1}\nnot json\n{\"time\":2}\n",
    );
    assert_eq!(status, 200, "the good event is kept");
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["rejected"][0]["line"], 2);
    assert_eq!(r["rejected"][1]["line"], 3);
    assert!(
        r["rejected"][1]["error"]
            .as_str()
            .unwrap()
            .contains("missing key field")
    );
    let (status, r) = post(&server, "/v1/events", "[1, {\"time\": 3}]");
    assert_eq!(status, 400);
    assert_eq!(r["error"]["rejected"][1]["index"], 1);
    let (status, _) = post(&server, "/v1/keys/other/events", "{\"session_id\":\"k\",\"time\":1}");
    assert_eq!(status, 400, "key in the body differs from the URL");
    assert_eq!(
        post(&server, "/v1/keys/k2/events", "{\"time\":1,\"x\":1}").1["accepted"],
        1
    );

    let big = "{\"session_id\":\"k\",\"time\":1}\n".repeat(100);
    assert_eq!(post(&server, "/v1/events", &big).0, 413);
    let many = "{\"session_id\":\"k\",\"time\":1}\n".repeat(6);
    assert_eq!(post(&server, "/v1/events", &many).0, 413);

    assert_eq!(
        get(&server, "/v1/jobs/nope/keys/k/result").1["error"]["code"],
        "unknown_job"
    );
    assert_eq!(
        get(&server, "/v1/jobs/cirr/keys/nobody/result").1["error"]["code"],
        "unknown_key"
    );
    assert_eq!(get(&server, "/v1/workers/has_existed-0000000000000000/k/result").0, 404);
    assert_eq!(get(&server, "/v1/workers/garbage/k/result").0, 404);
    assert_eq!(get(&server, "/v1/jobs/cirr/keys/k/result?t=noon").0, 400);
    assert_eq!(get(&server, "/v1/nowhere").0, 404);
    let (status, openapi) = get(&server, "/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/v1/jobs"].is_object());
    let metrics = agent()
        .get(&server.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("timeline_events_accepted_total 2"), "{metrics}");
}

#[test]
fn a_token_guards_everything_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--token", "s3cret"]);
    assert_eq!(get(&server, "/v1/health").0, 200);
    assert_eq!(get(&server, "/v1/jobs").0, 401);
    let (status, _) = call(
        agent()
            .get(&server.url("/v1/jobs"))
            .set("Authorization", "Bearer s3cret")
            .call(),
    );
    assert_eq!(status, 200);
    // The dashboard's page and assets need no token; its API calls do.
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let response = agent().get(&server.url(path)).call().unwrap();
        assert!(response.content_type().starts_with(kind), "{path}");
        assert!(!response.into_string().unwrap().is_empty());
    }
}

#[test]
fn a_keys_events_come_back_once_each_by_time_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(submit(&server, "cirr", CIRR).0, 201);
    // The example holds one event twice; per-leaf deliveries store it once per leaf.
    assert_eq!(post(&server, "/v1/events", &example_lines().join("\n")).0, 200);
    let (_, job) = get(&server, "/v1/jobs/cirr");
    let leaf = job["plan"]["leaves"][0].as_str().unwrap().to_string();
    let late = r#"{"session_id":"afsal-mando-1","time":1,"event_id":"late","userAction":"scroll"}"#;
    let (status, body) = post(
        &server,
        &format!("/v1/event-processor/{leaf}/afsal-mando-1/events"),
        late,
    );
    assert_eq!(status, 200, "{body}");

    let read = |server: &Server| get(server, "/v1/keys/afsal-mando-1/events").1;
    let events = read(&server);
    let list = events["events"].as_array().unwrap();
    assert_eq!(list.len(), 11, "{events}");
    let times: Vec<i64> = list.iter().map(|e| e["time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(list[2]["event_id"], "late");
    assert!(list.iter().all(|e| e["session_id"] == "afsal-mando-1"));
    let (_, clipped) = get(&server, "/v1/keys/afsal-mando-1/events?from=10000&to=21000");
    let clipped: Vec<i64> = clipped["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time"].as_i64().unwrap())
        .collect();
    assert_eq!(clipped, [10000, 14000, 20000]);
    let (_, limited) = get(&server, "/v1/keys/afsal-mando-1/events?limit=2");
    assert_eq!(
        (limited["events"].as_array().unwrap().len(), &limited["truncated"]),
        (2, &json!(true))
    );
    assert_eq!(get(&server, "/v1/keys/nobody/events").0, 404);
    assert_eq!(get(&server, "/v1/keys/afsal-mando-1/events?from=soon").0, 400);

    server.kill();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(read(&server), events);
}

#[test]
fn many_keys_results_come_in_pages_and_equal_each_keys_result() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    assert_eq!(post(&server, "/v1/events", &example_lines().join("\n")).0, 200);
    for t in ["end", "12000"] {
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page_path = match &after {
                Some(a) => format!("/v1/jobs/cirr/results?limit=1&t={t}&after={a}"),
                None => format!("/v1/jobs/cirr/results?limit=1&t={t}"),
            };
            let (status, page) = get(&server, &page_path);
            assert_eq!(status, 200, "{page}");
            rows.extend(page["results"].as_array().unwrap().iter().cloned());
            match page["next_after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
        }
        assert_eq!(rows.len(), 2);
        for row in rows {
            let key = row["key"].as_str().unwrap();
            let (_, one) = get(&server, &format!("/v1/jobs/cirr/keys/{key}/result?t={t}"));
            assert_eq!(row["value"], one["value"], "{key} at {t}");
        }
    }
    assert_eq!(get(&server, "/v1/jobs/nope/results").0, 404);
    assert_eq!(get(&server, "/v1/jobs/cirr/results?t=noon").0, 400);
}

/// Results of every key at its end, from the server.
fn server_results(server: &Server) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let (_, keys) = get(server, "/v1/jobs/cirr/keys?limit=100000");
    for key in keys["keys"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        out.insert(
            key.to_string(),
            get(server, &format!("/v1/jobs/cirr/keys/{key}/result")).1["value"].clone(),
        );
    }
    out
}

fn batch_results(lines: &[String]) -> BTreeMap<String, Value> {
    let plan = CompiledPlan::new(ExecutionPlan::new(&timeline::dsl::parse(CIRR).unwrap()).unwrap());
    let parser = EventParser::default();
    let mut keys: BTreeMap<String, Vec<timeline::LeafState>> = BTreeMap::new();
    for line in lines {
        let e = parser.parse(line).unwrap();
        plan.apply(
            keys.entry(e.key.to_string()).or_insert_with(|| plan.new_leaf_states()),
            &e,
        );
    }
    keys.into_iter()
        .map(|(k, s)| {
            (
                k,
                serde_json::to_value(plan.evaluate_result(&s).value_at_end()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn kill_9_at_random_points_loses_nothing_and_counts_nothing_twice() {
    let mut data = Vec::new();
    timeline_local::generate::write_cirr(
        &timeline_local::generate::CirrOptions {
            sessions: 150,
            seed: 3,
            late: 0.05,
            duplicates: 0.02,
        },
        &mut data,
    )
    .unwrap();
    let lines: Vec<String> = String::from_utf8(data).unwrap().lines().map(str::to_string).collect();
    let batches: Vec<Vec<String>> = lines.chunks(97).map(|c| c.to_vec()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut acked = 0usize;
    let mut kills = 0;
    {
        let server = Server::start(dir.path(), &[]);
        assert_eq!(submit(&server, "cirr", CIRR).0, 201);
    }
    while acked < batches.len() {
        let server = Server::start(dir.path(), &[]);
        // Everything acknowledged before the crash is there, and nothing more
        // than acknowledged plus the one batch in flight.
        let with_acked = batch_results(&batches[..acked].concat());
        let recovered = server_results(&server);
        let with_in_flight = batch_results(&batches[..(acked + 1).min(batches.len())].concat());
        assert!(
            recovered == with_acked || recovered == with_in_flight,
            "after {kills} kills, {acked} batches acknowledged"
        );

        // One batch acknowledged for sure, so that every round makes progress
        // however slow the machine; then a random number more, and kill -9 in
        // the middle of them.
        assert_eq!(post(&server, "/v1/events", &batches[acked].join("\n")).0, 200);
        acked += 1;
        if acked == batches.len() {
            break;
        }
        let run = rng.random_range(1..6);
        let base = server.base.clone();
        let to_send: Vec<String> = batches[acked..(acked + run + 1).min(batches.len())]
            .iter()
            .map(|b| b.join("\n"))
            .collect();
        let sender = std::thread::spawn(move || {
            let mut ok = 0;
            for body in to_send {
                match agent().post(&format!("{base}/v1/events")).send_string(&body) {
                    Ok(_) => ok += 1,
                    Err(_) => break,
                }
            }
            ok
        });
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(0..25)));
        server.kill();
        kills += 1;
        acked += sender.join().unwrap();
    }
    let server = Server::start(dir.path(), &[]);
    // Redeliver a few acknowledged batches, as an at-least-once client would.
    let mut again: Vec<&Vec<String>> = batches.iter().collect();
    again.shuffle(&mut rng);
    for batch in again.iter().take(5) {
        assert_eq!(post(&server, "/v1/events", &batch.join("\n")).0, 200);
    }
    assert_eq!(server_results(&server), batch_results(&lines));
    assert!(kills >= 5, "the loop killed the server {kills} times");
}

#[test]
fn raw_dsl_submissions_and_the_golem_event_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // The DSL as the body, as `curl --data-binary @examples/cirr.tl` sends it.
    let (status, job) = call(agent().post(&server.url("/v1/jobs?name=cirr")).send_string(CIRR));
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["name"], "cirr");
    let (status, e) = call(
        agent()
            .post(&server.url("/v1/jobs?name=x"))
            .send_string("has_existed(a = 1)"),
    );
    assert_eq!((status, e["error"]["column"].as_u64()), (400, Some(15)));

    // What a feeder posts to one leaf worker, on either runtime: JSON text or objects.
    let leaf = job["plan"]["leaves"][0].as_str().unwrap().to_string();
    let body = json!({"events": [
        r#"{"session_id":"k","time":0,"userAction":"seek"}"#,
        {"time": 3000, "userAction": "seek"},
        "not json",
    ]});
    let (status, r) = post(
        &server,
        &format!("/v1/event-processor/{leaf}/k/events"),
        &body.to_string(),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["accepted"], 2);
    assert_eq!(r["rejected"][0]["index"], 2);
    let (_, d) = get(&server, &format!("/v1/event-processor/{leaf}/k"));
    assert_eq!(d["events"], 2);
    let (status, r) = post(
        &server,
        "/v1/event-processor/compare-0123456789abcdef/k/events",
        &body.to_string(),
    );
    assert_eq!(status, 404, "{r}");
}
