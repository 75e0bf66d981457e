//! The Golem components run for real: the built `.wasm` files on the Golem
//! host (`golem-host`, wasmtime with Golem's host interfaces and route rules),
//! jobs started through the `Driver` agent, events delivered by the feeder
//! (`--delivery worker`, as to a Golem deployment), every worker read over
//! HTTP and compared with `timeline eval`'s code, before and after every agent
//! is restarted from its snapshot.
//!
//! Needs the components built: `scripts/build-components.sh` (run by
//! `scripts/test.sh` before `cargo test`).

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::feeder::Feeder;
use support::golem::{GolemHost, int, scalar};
use support::{CIRR, ORDERS};
use timeline::EventParser;
use timeline_local::batch::Batch;

const RATE: &str = include_str!("../examples/completion-rate.tl");

/// Delivers `lines` of `stream` with the feeder, as to a Golem deployment.
fn feed(host: &GolemHost, dir: &std::path::Path, name: &str, stream: &str, lines: &[String]) {
    let file = dir.join(name);
    std::fs::write(&file, lines.join("\n")).unwrap();
    let feeder = Feeder::start(&[
        "--from-file",
        file.to_str().unwrap(),
        "--stream",
        stream,
        "--target",
        &host.base,
        "--delivery",
        "worker",
        "--batch-size",
        "50",
        "--linger",
        "5ms",
    ]);
    let (status, log) = feeder.wait();
    assert!(status.success(), "feeder: {status}\n{log}\nhost:\n{}", host.log());
}

/// A span as both runtimes mean it: (start, end, value, rising, falling).
type Spans = Vec<(i64, Option<i64>, Value, bool, bool)>;

/// The spans of a timeline read from a worker (Golem's JSON mapping).
fn golem_spans(view: &Value) -> Spans {
    view["spans"]
        .as_array()
        .unwrap_or_else(|| panic!("no spans in {view}"))
        .iter()
        .map(|s| {
            (
                int(&s["start"]).unwrap(),
                int(&s["end"]),
                scalar(&s["value"]),
                s["rising"].as_bool().unwrap(),
                s["falling"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Per key: every per-key node, its spans and the key's latest time.
type Workers = BTreeMap<String, Vec<(String, Spans, Option<i64>)>>;

/// Every per-key node's spans for every key, as `timeline eval`'s code
/// computes them from `lines`.
fn expected(query: &str, lines: &[String]) -> Workers {
    support::per_key_outputs(query, lines)
        .into_iter()
        .map(|(key, nodes)| {
            let nodes = nodes
                .into_iter()
                .map(|(node, out)| {
                    let spans = out
                        .timeline
                        .clip(None, None)
                        .iter()
                        .map(|s| {
                            (
                                s.start,
                                s.end,
                                serde_json::to_value(&s.value).unwrap(),
                                s.rising,
                                s.falling,
                            )
                        })
                        .collect();
                    (node, spans, out.latest)
                })
                .collect();
            (key, nodes)
        })
        .collect()
}

/// Every node of every key read from its worker equals `expected`.
fn assert_workers(host: &GolemHost, expected: &Workers, when: &str) {
    for (key, nodes) in expected {
        for (node, spans, latest) in nodes {
            let kind = match timeline::NodeId::parse(node).map(|id| id.worker_kind()) {
                Some(timeline::WorkerKind::EventProcessor) => "event-processor",
                _ => "timeline-processor",
            };
            let (status, view) = host.get(&format!("/v1/{kind}/{node}/{key}/timeline"));
            assert_eq!(status, 200, "{when}: {kind} {node} {key}: {view}\n{}", host.log());
            assert_eq!(&golem_spans(&view), spans, "{when}: {node} of {key}");
            assert_eq!(int(&view["latest"]), *latest, "{when}: latest of {node} of {key}");
        }
    }
}

fn rpc_calls(host: &GolemHost) -> u64 {
    host.stats()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rpc"].as_u64().unwrap())
        .sum()
}

#[test]
fn cirr_through_the_feeder_equals_timeline_eval_and_survives_a_restart_of_every_agent() {
    let dir = tempfile::tempdir().unwrap();
    let host = GolemHost::start();
    let plan = host.submit("cirr", CIRR);
    assert_eq!(plan["created"], true, "{plan}");
    assert_eq!(plan["leaves"].as_array().unwrap().len(), 4);
    // The example's viewers, then generated sessions with late and repeated events.
    let mut lines: Vec<String> = include_str!("../examples/cirr.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    lines.extend(support::generated_cirr(24, 11));
    let (first, rest) = lines.split_at(lines.len() * 2 / 3);
    feed(&host, dir.path(), "first.jsonl", "default", first);
    let so_far = expected(CIRR, first);
    assert_workers(&host, &so_far, "after the first events");

    // The README's read: one key's result, and what it costs.
    let key = so_far.keys().next().unwrap();
    let result = plan["result"].as_str().unwrap();
    let before = rpc_calls(&host);
    let (status, read) = host.get(&format!("/v1/timeline-processor/{result}/{key}/result?t=end"));
    assert_eq!(status, 200, "{read}");
    let leaves = plan["leaves"].as_array().unwrap().len() as u64;
    assert_eq!(
        rpc_calls(&host) - before,
        1 + leaves,
        "a read asks Core once and every leaf once, whatever the depth"
    );
    let mut batch = Batch::new(CIRR, "session_id").unwrap();
    batch
        .read(first.join("\n").as_bytes(), |bad| panic!("{bad:?}"), |_| {})
        .unwrap();
    let results: BTreeMap<String, timeline::Output> =
        batch.results().into_iter().map(|(k, o)| (k.to_string(), o)).collect();
    let want = &results[key.as_str()];
    assert_eq!(
        scalar(&read["value"]),
        serde_json::to_value(want.value_at_end()).unwrap(),
        "{read}"
    );
    assert_eq!(int(&read["t"]), want.latest);

    // Every agent saves a snapshot, is dropped and starts again from it.
    let (restarted, from_snapshot) = host.restart();
    let leaf_workers = (4 * so_far.len()) as u64;
    // Every event processor and Core from its snapshot; the Driver, whose
    // type does not snapshot (it keeps nothing), from its constructor.
    assert_eq!((restarted, from_snapshot), (leaf_workers + 2, leaf_workers + 1));
    assert_workers(&host, &so_far, "after a restart from snapshots");
    let (_, jobs) = host.get("/v1/jobs");
    assert_eq!(jobs["jobs"][0]["name"], "cirr", "Core keeps its jobs: {jobs}");

    // The restored agents go on taking events; among them, a delivery of e4
    // (time and id of an event already applied) with another content that
    // the contract picks (`{"cdnChange":...` sorts before `{"event_id":...`):
    // it replaces the buffering e4 stood for.
    let e4 = lines.iter().position(|l| l.contains(r#""event_id":"e4""#)).unwrap();
    assert!(e4 < first.len() && lines[e4].contains("buffer"), "{}", lines[e4]);
    let winner = r#"{"session_id":"afsal-mando-1","time":10000,"event_id":"e4","cdnChange":"CDN2"}"#;
    let mut rest = rest.to_vec();
    rest.insert(rest.len() / 2, winner.to_string());
    feed(&host, dir.path(), "rest.jsonl", "default", &rest);
    // Every delivery of e4 (the example repeats it) is now the winner.
    let resolved: Vec<String> = lines
        .iter()
        .map(|l| {
            let same = l.contains(r#""event_id":"e4""#) && l.contains("afsal-mando-1");
            if same { winner.to_string() } else { l.clone() }
        })
        .collect();
    let after = expected(CIRR, &resolved);
    assert_ne!(after, expected(CIRR, &lines), "the winning delivery changes the result");
    assert_workers(&host, &after, "after the rest of the events");
}

/// An aggregate or metric read over Golem's JSON, as (group, keys, values).
type Rows = Vec<(String, u64, Vec<Value>)>;

fn golem_rows(view: &Value) -> Rows {
    view["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups in {view}"))
        .iter()
        .map(|g| {
            let group = match scalar(&g["group"]) {
                Value::Null => "null".to_string(),
                Value::String(s) => s,
                other => other.to_string(),
            };
            let values = g["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| scalar(&v["value"]))
                .collect();
            (group, int(&g["keys"]).unwrap() as u64, values)
        })
        .collect()
}

fn assert_aggregates(host: &GolemHost, batch: &mut Batch, times: &[i64], when: &str) {
    for &t in times {
        for output in batch.outputs().to_vec() {
            let local = batch.read_output(&output, Some(t)).unwrap();
            let local: Rows = local
                .groups
                .iter()
                .map(|r| {
                    let values = r.values.iter().map(|(_, v)| serde_json::to_value(v).unwrap()).collect();
                    (r.group.label(), r.keys, values)
                })
                .collect();
            let path = match output.worker {
                timeline::WorkerKind::Aggregator => {
                    let fns: Vec<String> = output.functions.iter().map(|f| f.to_string()).collect();
                    format!("/v1/aggregators/{}?t={t}&fn={}", output.node, fns.join(","))
                }
                _ => format!("/v1/metrics/{}?t={t}", output.node),
            };
            let (status, view) = host.get(&path);
            assert_eq!(status, 200, "{when}: {path}: {view}\n{}", host.log());
            assert!(!local.is_empty(), "{when}: {} at {t}", output.name);
            assert_eq!(golem_rows(&view), local, "{when}: {} at {t}", output.name);
        }
    }
}

#[test]
fn completion_rate_equals_the_local_runtime_and_survives_a_restart_of_every_agent() {
    let dir = tempfile::tempdir().unwrap();
    let host = GolemHost::start();
    let plan = host.submit("rate", RATE);
    assert_eq!(plan["aggregates"].as_array().unwrap().len(), 2, "{plan}");
    let lines = support::generated_cirr(30, 3);
    feed(&host, dir.path(), "events.jsonl", "completions", &lines);

    let mut batch = Batch::new(RATE, "session_id").unwrap();
    batch
        .read(lines.join("\n").as_bytes(), |bad| panic!("{bad:?}"), |_| {})
        .unwrap();
    let parser = EventParser::default();
    let end = batch.latest().unwrap();
    let start = lines.iter().map(|l| parser.parse(l).unwrap().time).min().unwrap();
    let times = [end, (start + end) / 2, start + 1000];
    assert_aggregates(&host, &mut batch, &times, "after the events");

    let (restarted, from_snapshot) = host.restart();
    assert!(restarted > 0, "{restarted}");
    assert!(from_snapshot > 0, "{from_snapshot}");
    assert_aggregates(&host, &mut batch, &times, "after a restart from snapshots");

    // `end` (no t) is the latest event time of any key, as locally.
    let rate = plan["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.as_str().unwrap().strip_prefix("completion_rate="))
        .unwrap()
        .to_string();
    let (status, view) = host.get(&format!("/v1/metrics/{rate}"));
    assert_eq!(status, 200, "{view}");
    assert_eq!(int(&view["t"]), Some(end));
}

/// CIRR on the default stream and card swipes on `cards` (keyed by `card`,
/// on equal key values): Core knows each job's stream, the feeder reads each
/// stream with its own key field, and no worker sees the other's events.
#[test]
fn two_streams_with_their_own_key_fields_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let host = GolemHost::start();
    host.submit("cirr", CIRR);
    let cards = host.submit("cards", support::CARDS);
    assert_eq!(cards["stream"]["name"], "cards", "{cards}");
    assert_eq!(cards["stream"]["key"], "card", "{cards}");
    let (_, jobs) = host.get("/v1/jobs");
    let streams: Vec<(&str, &str)> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["stream"]["name"].as_str().unwrap(),
                j["stream"]["key"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(streams, [("cards", "card"), ("default", "session_id")], "{jobs}");
    let plays = support::generated_cirr(6, 5);
    let swipes = support::generated_swipes(6, 7);
    feed(&host, dir.path(), "plays.jsonl", "default", &plays);
    feed(&host, dir.path(), "swipes.jsonl", "cards", &swipes);
    assert_workers(&host, &expected(CIRR, &plays), "CIRR");
    assert_workers(&host, &expected(support::CARDS, &swipes), "card swipes");

    // Core keeps the streams through a restart from its snapshot.
    host.restart();
    let (_, again) = host.get("/v1/jobs");
    assert_eq!(again, jobs);
    let more: Vec<String> = support::generated_swipes(8, 9)
        .iter()
        .map(|l| l.replace(r#""event_id":"w"#, r#""event_id":"x"#))
        .collect();
    feed(&host, dir.path(), "more.jsonl", "cards", &more);
    assert_workers(
        &host,
        &expected(support::CARDS, &[swipes.clone(), more].concat()),
        "card swipes after a restart",
    );
}

/// The temporal operators beyond the article (`time_since`, `sequence`,
/// `absent_after` leaves; `previous`, `true_within` derived nodes) are event
/// and timeline processors like the others: through the feeder they equal
/// `timeline eval`, also after every agent restarted from its snapshot.
#[test]
fn temporal_operators_equal_timeline_eval_and_survive_a_restart_of_every_agent() {
    let dir = tempfile::tempdir().unwrap();
    let host = GolemHost::start();
    let plan = host.submit("orders", ORDERS);
    assert_eq!(plan["created"], true, "{plan}");
    let lines = support::order_lines();
    let (first, rest) = lines.split_at(lines.len() / 2);
    feed(&host, dir.path(), "first.jsonl", "orders", first);
    assert_workers(&host, &expected(ORDERS, first), "after the first events");
    host.restart();
    assert_workers(&host, &expected(ORDERS, first), "after a restart from snapshots");
    feed(&host, dir.path(), "rest.jsonl", "orders", rest);
    let all = expected(ORDERS, &lines);
    assert_workers(&host, &all, "after the rest of the events");
    // The example's answers are among them.
    let unpaid = plan["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.as_str().unwrap().strip_prefix("unpaid="))
        .unwrap_or_else(|| panic!("{plan}"))
        .to_string();
    let (status, read) = host.get(&format!("/v1/timeline-processor/{unpaid}/o2/result?t=end"));
    assert_eq!((status, scalar(&read["value"])), (200, json!(true)), "{read}");
}

#[test]
fn the_gateway_answers_as_golem_does() {
    let host = GolemHost::start();
    let plan = host.submit("errors", "has_existed(a == 1)");
    let leaf = plan["result"].as_str().unwrap();

    // No route, and a route that only another Host would reach.
    let (status, body) = host.get("/v1/nothing");
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("ROUTE_NOT_FOUND")),
        "{body}"
    );
    let ip = host.base.replace("localhost", "127.0.0.1");
    let (status, _) = support::call(support::agent().get(&format!("{ip}/v1/jobs")).call());
    assert_eq!(status, 404, "routes match the deployment's host name, as Golem's do");

    // A worker that has seen no event: Unknown, and no description (404).
    let (status, body) = host.get(&format!("/v1/event-processor/{leaf}/k/result"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], Value::Null);
    let (status, _) = host.get(&format!("/v1/event-processor/{leaf}/k"));
    assert_eq!(status, 404);

    // Events: bad ones are refused by position, the good ones kept.
    let (status, body) = host.post(
        &format!("/v1/event-processor/{leaf}/k/events"),
        json!({"events": [r#"{"time": 3, "a": 1}"#, "nope", r#"{"session_id": "other", "time": 1}"#]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    let rejected: Vec<u64> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, [1, 2]);
    let (_, body) = host.get(&format!("/v1/event-processor/{leaf}/k/result?t=3"));
    assert_eq!(scalar(&body["value"]), json!(true));

    // Parameters: a query value of the wrong type, a body that is not the
    // method's, a time that is not one.
    let (status, body) = host.get("/v1/aggregator/n/g/not-a-number");
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("REQUEST_VALUE_PARSING_FAILED")),
        "{body}"
    );
    let (status, body) = host.post("/v1/driver/x", json!({"quer": "x"}));
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("REQUEST_JSON_BODY_PARSING_FAILED")),
        "{body}"
    );
    let (status, body) = host.get(&format!("/v1/event-processor/{leaf}/k/result?t=noon"));
    assert_eq!(status, 500, "an `Err` is 500 on Golem: {body}");
    assert!(body.as_str().unwrap().contains("RFC 3339"), "{body}");

    // A DSL error keeps its line and column; an unknown node says so.
    let (status, body) = host.post("/v1/driver/bad", json!({"query": "has_existd(a == 1)"}));
    assert_eq!(status, 500, "{body}");
    assert_eq!((int(&body["line"]), int(&body["column"])), (Some(1), Some(1)), "{body}");
    let (status, body) = host.get("/v1/timeline-processor/not-0123456789abcdef/k/result");
    assert_eq!(status, 500, "{body}");
    assert!(body.to_string().contains("no job runs"), "{body}");

    // Every agent type of the components is deployed.
    let (_, routes) = host.get("/_golem-host/routes");
    let deployed: std::collections::BTreeSet<String> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["calls"].as_str().unwrap().split('.').next().unwrap().to_string())
        .collect();
    assert_eq!(
        deployed.into_iter().collect::<Vec<_>>(),
        [
            "Aggregate",
            "Aggregator",
            "Changes",
            "Contributor",
            "Core",
            "Driver",
            "EventProcessor",
            "JobWatch",
            "KeyWatch",
            "Metric",
            "TimelineProcessor"
        ]
    );
}

/// The event processor as it was declared before (`timeline` twice, with
/// and without `?from=&to=`) is refused as `golem deploy` refuses it; as it
/// is declared now, it deploys.
#[test]
fn an_ambiguous_route_set_is_refused() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let host = tokio
        .block_on(golem_host::Host::load(&golem_host::Options::for_workspace(&root)))
        .expect("the components load (scripts/build-components.sh builds them)");
    let declared = host.runtime().agent_type("EventProcessor").unwrap().clone();
    let mut router = golem_host::routes::Router::new("localhost:9006");
    golem_host::gateway::add_routes(&mut router, &declared).unwrap();

    let mut twice = (*declared).clone();
    let mut between = twice.method("timeline").unwrap().clone();
    between.name = "timeline_between".to_string();
    for e in &mut between.endpoints {
        e.query.clear();
    }
    twice.methods.push(between);
    let mut router = golem_host::routes::Router::new("localhost:9006");
    let err = golem_host::gateway::add_routes(&mut router, &std::sync::Arc::new(twice)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("multiple routes for pattern GET /v1/event-processor/{node}/{key}/timeline"),
        "{text}"
    );
    assert!(
        text.contains("EventProcessor.timeline and EventProcessor.timeline_between"),
        "{text}"
    );
}

/// A job's changes as Golem's JSON mapping shows them, all of them, paged.
fn golem_changes(host: &GolemHost, job: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = host.get(&format!("/v1/jobs/{job}/changes?after={after}&limit=7{query}"));
        assert_eq!(status, 200, "{page}\n{}", host.log());
        let next = int(&page["next"]).unwrap();
        out.extend(page["changes"].as_array().unwrap().iter().cloned());
        if next == after {
            return out;
        }
        after = next;
    }
}

/// Every key's changes applied in order, each to what the ones before gave.
fn replay_changes(changes: &[Value]) -> BTreeMap<String, timeline::Timeline> {
    use timeline::changes::{Change, patch};
    let value = |v: &Value, trend: &Value| match (scalar(v), trend.as_str()) {
        (Value::Null, _) => timeline::SpanValue::Unknown,
        (v, Some("rising")) => timeline::SpanValue::Rising {
            from: v.as_i64().unwrap(),
        },
        (v, Some("falling")) => timeline::SpanValue::Falling {
            from: v.as_i64().unwrap(),
        },
        (v, _) => timeline::SpanValue::Known(timeline::Value::from_json(&v).unwrap()),
    };
    let mut keys: BTreeMap<String, timeline::Timeline> = BTreeMap::new();
    for c in changes {
        let change = Change {
            from: int(&c["from"]).unwrap(),
            until: int(&c["until"]),
            old: value(&c["old"], &c["old_trend"]),
            new: value(&c["new"], &c["new_trend"]),
        };
        let key = keys.entry(c["key"].as_str().unwrap().to_string()).or_default();
        assert_eq!(key.span_value_at(change.from), change.old, "the old value of {c}");
        *key = patch(key, &[change]);
    }
    keys
}

/// The result node's timeline of every key, as `timeline eval`'s code
/// computes it from `lines`.
fn expected_results(query: &str, lines: &[String], result: &str) -> BTreeMap<String, timeline::Timeline> {
    support::per_key_outputs(query, lines)
        .into_iter()
        .map(|(key, nodes)| {
            let (_, out) = nodes.into_iter().find(|(node, _)| node == result).unwrap();
            (key, out.timeline)
        })
        .collect()
}

/// Changes on Golem: the feeder refreshes each delivered key's watcher
/// (`KeyWatch`), which records how the key's result changed with the job's
/// `Changes`, in the local runtime's shape. For every key, its changes
/// applied in order (each starting from the value the ones before left)
/// give its result as `timeline eval` computes it: after the first events,
/// and after every agent restarted from its snapshot and more events (late
/// ones among them) came. Ids are 1, 2, 3, ... and a condition filters.
#[test]
fn changes_of_a_job_applied_in_order_give_every_keys_result_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let host = GolemHost::start();
    let (status, plan) = host.post("/v1/driver/cards", json!({"query": support::CARDS, "changes": true}));
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["changes"], true, "{plan}");
    let (_, jobs) = host.get("/v1/jobs");
    assert_eq!(jobs["jobs"][0]["changes"], true, "{jobs}");
    let result = plan["result"].as_str().unwrap().to_string();
    let swipes = support::generated_swipes(12, 21);
    let (first, rest) = swipes.split_at(swipes.len() / 2);
    feed(&host, dir.path(), "first.jsonl", "cards", first);
    let changes = golem_changes(&host, "cards", "");
    assert!(!changes.is_empty());
    assert_eq!(
        replay_changes(&changes),
        expected_results(support::CARDS, first, &result)
    );

    host.restart();
    feed(&host, dir.path(), "rest.jsonl", "cards", rest);
    let all = golem_changes(&host, "cards", "");
    assert_eq!(&all[..changes.len()], &changes[..], "what was read before stays");
    let ids: Vec<i64> = all.iter().map(|c| int(&c["id"]).unwrap()).collect();
    assert_eq!(ids, (1..=all.len() as i64).collect::<Vec<_>>());
    assert_eq!(replay_changes(&all), expected_results(support::CARDS, &swipes, &result));
    assert!(all.iter().all(|c| c["output"] == "result"), "{all:?}");

    let alerts = golem_changes(&host, "cards", "&where=value%20==%20true");
    let expected: Vec<&Value> = all.iter().filter(|c| scalar(&c["new"]) == json!(true)).collect();
    assert!(!expected.is_empty());
    assert_eq!(alerts.iter().collect::<Vec<_>>(), expected);
    let (status, bad) = host.get("/v1/jobs/cards/changes?where=value%20==");
    assert_ne!(status, 200, "{bad}");
}

/// Aggregate and metric changes on Golem: once the contributors took a
/// delivery in, the feeder refreshes the job's watcher (`JobWatch`), which
/// records a change per group and function whose value at the latest event
/// time changed. Each change starts from the value the one before left, and
/// the last of each equals the value the local runtime's code gives at the
/// end: after the first events and after the rest.
#[test]
fn aggregate_changes_follow_each_group_to_its_value_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let host = GolemHost::start();
    let (status, plan) = host.post("/v1/driver/rate", json!({"query": RATE, "changes": true}));
    assert_eq!(status, 200, "{plan}");
    let lines = support::generated_cirr(30, 3);
    let (first, _) = lines.split_at(lines.len() / 2);
    for (name, part) in [("first.jsonl", first), ("all.jsonl", &lines[first.len()..])] {
        feed(&host, dir.path(), name, "completions", part);
        let sent = &lines[..if name == "first.jsonl" {
            first.len()
        } else {
            lines.len()
        }];
        let mut batch = Batch::new(RATE, "session_id").unwrap();
        batch
            .read(sent.join("\n").as_bytes(), |bad| panic!("{bad:?}"), |_| {})
            .unwrap();
        let end = batch.latest().unwrap();
        let changes = golem_changes(&host, "rate", "");
        // (output, group, function) -> its last value, each change from the one before.
        let mut last: BTreeMap<(String, String, String), Value> = BTreeMap::new();
        for c in changes.iter().filter(|c| c.get("key").is_none_or(Value::is_null)) {
            let id = (
                c["output"].as_str().unwrap().to_string(),
                c["group"].as_str().unwrap().to_string(),
                c["function"].as_str().unwrap_or("value").to_string(),
            );
            let old = last.get(&id).cloned().unwrap_or(Value::Null);
            assert_eq!(scalar(&c["old"]), old, "{c}");
            last.insert(id, scalar(&c["new"]));
        }
        assert!(!last.is_empty(), "{changes:?}");
        for output in batch.outputs().to_vec() {
            let read = batch.read_output(&output, Some(end)).unwrap();
            let metric = output.worker == timeline::WorkerKind::Metric;
            for row in &read.groups {
                for (function, value) in &row.values {
                    let function = if metric { "value".to_string() } else { function.clone() };
                    let id = (output.name.clone(), row.group.label(), function);
                    let expected = serde_json::to_value(value).unwrap();
                    let got = last.get(&id).cloned().unwrap_or(Value::Null);
                    // Floats as the aggregators fold them (their order of
                    // merging differs from the local fold's in the last bit).
                    let close = match (got.as_f64(), expected.as_f64()) {
                        (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                        _ => got == expected,
                    };
                    assert!(close, "{id:?} after {name}: {got} against {expected}");
                }
            }
        }
    }
}
