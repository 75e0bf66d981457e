//! The feeder end to end: a Pulsar-protocol broker (pulsar-rs's own protocol
//! types and codec), the `feeder` process, and `timeline serve`.

mod support;

use std::time::Duration;

use pulsar_test_broker::Broker;
use rand::{Rng, SeedableRng};
use support::feeder::{Feeder, assert_results, cirr, produce, submit, wait_until, without_ids_with_ties};
use support::{CARDS, CIRR, Server, agent, call, generated_swipes};

const TOPIC: &str = "events";
const SUB: &str = "timeline-feeder";

fn feeder(broker: &Broker, server: &Server, extra: &[&str]) -> Feeder {
    let mut args = Feeder::args(&broker.url(), server, TOPIC);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Feeder::start(&args)
}

fn drained(broker: &Broker, feeders: &[&Feeder]) -> impl Fn() -> String {
    let logs: Vec<String> = feeders.iter().map(|f| f.log()).collect();
    let backlog = broker.backlog(TOPIC, SUB);
    move || format!("backlog {backlog}\nfeeder logs:\n{}", logs.join("\n----\n"))
}

fn wait_acknowledged(broker: &Broker, feeders: &[&Feeder], secs: u64) {
    wait_until(
        "every message to be acknowledged",
        secs,
        || broker.backlog(TOPIC, SUB) == 0,
        drained(broker, feeders),
    );
}

async fn cirr_through_pulsar(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    let broker = Broker::start().await.unwrap();
    let f = feeder(&broker, &server, extra);
    let lines = cirr(40, 7);
    produce(&broker.url(), TOPIC, &lines).await;
    wait_acknowledged(&broker, &[&f], 60);
    assert_results(&server, CIRR, &lines);
    assert!(broker.messages(&format!("{TOPIC}-{SUB}-DLQ")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cirr_from_pulsar_equals_timeline_eval_with_bulk_delivery() {
    cirr_through_pulsar(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cirr_from_pulsar_equals_timeline_eval_with_per_worker_delivery() {
    cirr_through_pulsar(&["--delivery", "worker", "--batch-size", "300"]).await;
}

/// An aggregate job fed per worker, as on Golem: after each key's events
/// reach its leaves, the feeder tells the key's contributor of every
/// aggregate; the aggregates equal `timeline eval`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_worker_delivery_refreshes_the_contributors_of_aggregates() {
    const RATE: &str = include_str!("../examples/completion-rate.tl");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "rate", RATE);
    let broker = Broker::start().await.unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let f = feeder(
        &broker,
        &server,
        &[
            "--delivery",
            "worker",
            "--batch-size",
            "200",
            "--metrics-addr",
            &metrics.to_string(),
            "--stream",
            "completions",
        ],
    );
    let lines = cirr(30, 19);
    produce(&broker.url(), TOPIC, &lines).await;
    wait_acknowledged(&broker, &[&f], 60);
    let text = agent()
        .get(&format!("http://{metrics}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let refreshes: f64 = text
        .lines()
        .find(|l| l.starts_with("feeder_aggregate_refreshes_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no refresh counter in\n{text}"));
    assert!(refreshes >= 60.0, "{refreshes} refreshes for 30 keys and 2 aggregates");
    let mut batch = timeline_local::batch::Batch::new(RATE, "session_id").unwrap();
    batch
        .read(lines.join("\n").as_bytes(), |bad| panic!("{bad:?}"), |_| {})
        .unwrap();
    for output in batch.outputs().to_vec() {
        let expected = batch.read_output(&output, None).unwrap();
        let (status, got) = call(
            agent()
                .get(&server.url(&format!("/v1/jobs/rate/metrics/{}", output.name)))
                .call(),
        );
        assert_eq!(status, 200, "{got}");
        let groups = got["groups"].as_array().unwrap();
        assert_eq!(groups.len(), expected.groups.len(), "{got}");
        for (g, e) in groups.iter().zip(&expected.groups) {
            assert_eq!(g["group"], serde_json::to_value(&e.group).unwrap());
            assert_eq!(g["keys"], e.keys);
        }
    }
}

/// Two topics feed two streams with different key fields and equal key
/// values: each job's results are those of its own stream's events only.
async fn two_topics_into_two_streams(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    submit(&server, "cards", CARDS);
    let broker = Broker::start().await.unwrap();
    let mut args = vec!["--stream-topic", "cards=swipes"];
    args.extend_from_slice(extra);
    let f = feeder(&broker, &server, &args);
    let plays = cirr(20, 41);
    let cards = generated_swipes(20, 43);
    let url = broker.url();
    tokio::join!(produce(&url, TOPIC, &plays), produce(&url, "swipes", &cards));
    wait_until(
        "both topics to be acknowledged",
        60,
        || broker.backlog(TOPIC, SUB) == 0 && broker.backlog("swipes", SUB) == 0,
        || f.log(),
    );
    assert_results(&server, CIRR, &plays);
    assert_results(&server, CARDS, &cards);
    for dlq in [format!("{TOPIC}-{SUB}-DLQ"), format!("swipes-{SUB}-DLQ")] {
        assert!(broker.messages(&dlq).is_empty(), "{dlq}: {}", f.log());
    }
    let (status, stream) = call(agent().get(&server.url("/v1/streams/cards")).call());
    assert_eq!(status, 200, "{stream}");
    assert_eq!(stream["key"], "card");
    assert_eq!(stream["keys"], 20);
    let columns: Vec<&str> = stream["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["kind", "suburb"], "{stream}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_topics_feed_two_streams_with_their_own_key_fields() {
    two_topics_into_two_streams(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_topics_feed_two_streams_per_worker_as_on_golem() {
    two_topics_into_two_streams(&["--delivery", "worker"]).await;
}

/// Two feeders share a subscription (so one key's events, and their ties at
/// one time, go through both), and are killed at random: the killed one's
/// unacknowledged messages are redelivered to the other, after events of the
/// same key and time that it already delivered. Without the message ids the
/// feeder gives events, those repeats would win the tie and change the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_feeders_mid_stream_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    let broker = Broker::start().await.unwrap();
    let lines = without_ids_with_ties(&cirr(40, 11));
    produce(&broker.url(), TOPIC, &lines).await;
    // Small batches, slow dispatch: many kills land mid-stream.
    broker.set_dispatch_delay(Duration::from_micros(200));
    let args = [
        "--batch-size",
        "20",
        "--subscription-type",
        "shared",
        "--delivery",
        "worker",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut kills = 0;
    let mut feeders = [feeder(&broker, &server, &args), feeder(&broker, &server, &args)];
    while broker.backlog(TOPIC, SUB) > 0 && kills < 10 {
        std::thread::sleep(Duration::from_millis(rng.random_range(100..400)));
        if broker.backlog(TOPIC, SUB) == 0 {
            break;
        }
        let victim = rng.random_range(0..2);
        feeders[victim].kill();
        kills += 1;
        feeders[victim] = feeder(&broker, &server, &args);
    }
    broker.set_dispatch_delay(Duration::ZERO);
    wait_acknowledged(&broker, &[&feeders[0], &feeders[1]], 60);
    assert!(kills >= 2, "the loop killed a feeder only {kills} times");
    let dispatched = broker.dispatched(TOPIC, SUB);
    assert!(
        dispatched > lines.len() as u64,
        "no message was delivered twice ({dispatched} dispatches), so the test proved nothing"
    );
    assert_results(&server, CIRR, &lines);
}

/// A failover subscription is acknowledged cumulatively, one acknowledgement
/// per batch, while several batches are delivered at once: a batch that
/// finishes early must wait for the ones before it, or a kill would lose them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_feeder_with_batches_in_flight_on_a_cumulative_subscription_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    let broker = Broker::start().await.unwrap();
    let lines = without_ids_with_ties(&cirr(40, 5));
    produce(&broker.url(), TOPIC, &lines).await;
    broker.set_dispatch_delay(Duration::from_micros(100));
    let args = [
        "--batch-size",
        "15",
        "--in-flight",
        "8",
        "--subscription-type",
        "failover",
        "--delivery",
        "worker",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let mut kills = 0;
    let mut f = feeder(&broker, &server, &args);
    while broker.backlog(TOPIC, SUB) > 0 && kills < 8 {
        std::thread::sleep(Duration::from_millis(rng.random_range(100..350)));
        if broker.backlog(TOPIC, SUB) == 0 {
            break;
        }
        f.kill();
        kills += 1;
        f = feeder(&broker, &server, &args);
    }
    broker.set_dispatch_delay(Duration::ZERO);
    wait_acknowledged(&broker, &[&f], 60);
    assert!(kills >= 2, "the loop killed the feeder only {kills} times");
    assert_results(&server, CIRR, &lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_runtime_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    let listen = server.base.trim_start_matches("http://").to_string();
    let broker = Broker::start().await.unwrap();
    let lines = without_ids_with_ties(&cirr(40, 13));
    let f = feeder(&broker, &server, &["--batch-size", "100", "--delivery", "worker"]);
    let (first, second) = lines.split_at(lines.len() / 2);
    produce(&broker.url(), TOPIC, first).await;
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    // Published while the runtime is down: held, not lost.
    produce(&broker.url(), TOPIC, second).await;
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        broker.backlog(TOPIC, SUB) > 0,
        "messages were acknowledged while the runtime was down"
    );
    let server = Server::start_at(dir.path(), &listen, &[]);
    wait_acknowledged(&broker, &[&f], 60);
    assert!(f.log().contains("retrying"), "{}", f.log());
    assert_results(&server, CIRR, &lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_feeders_on_one_subscription_split_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    let broker = Broker::start().await.unwrap();
    let a = feeder(&broker, &server, &["--consumer-name", "a", "--delivery", "worker"]);
    let b = feeder(&broker, &server, &["--consumer-name", "b", "--delivery", "worker"]);
    wait_until(
        "both feeders to subscribe",
        30,
        || broker.consumers(TOPIC, SUB).len() == 2,
        String::new,
    );
    let lines = cirr(40, 17);
    produce(&broker.url(), TOPIC, &lines).await;
    wait_acknowledged(&broker, &[&a, &b], 60);
    let stats = broker.consumers(TOPIC, SUB);
    assert!(
        stats.iter().all(|c| c.delivered > 0),
        "one feeder got nothing: {stats:?}"
    );
    assert_results(&server, CIRR, &lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    let broker = Broker::start().await.unwrap();
    let f = feeder(&broker, &server, &[]);
    let good = cirr(10, 19);
    let poison = [
        "this is not json".to_string(),
        r#"{"session_id":"s","playerStateChange":"play"}"#.to_string(),
        r#"{"time":5,"playerStateChange":"play"}"#.to_string(),
        r#"{"session_id":"s","time":"yesterday"}"#.to_string(),
        r#"{"session_id":"s","time":5,"cdnChange":{"nested":true}}"#.to_string(),
    ];
    let mut lines = Vec::new();
    for (i, line) in good.iter().enumerate() {
        lines.push(line.clone());
        if i % 50 == 0 && i / 50 < poison.len() {
            lines.push(poison[i / 50].clone());
        }
    }
    produce(&broker.url(), TOPIC, &lines).await;
    wait_acknowledged(&broker, &[&f], 60);
    let dead = broker.messages(&format!("{TOPIC}-{SUB}-DLQ"));
    let payloads: Vec<String> = dead
        .iter()
        .map(|m| String::from_utf8(m.data.clone()).unwrap())
        .collect();
    assert_eq!(
        payloads, poison,
        "the dead-letter topic holds exactly the poison messages, in order"
    );
    let reasons: Vec<&str> = dead.iter().map(|m| m.properties["reason"].as_str()).collect();
    assert!(reasons[0].contains("not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("time"), "{reasons:?}");
    assert!(reasons[2].contains("session_id"), "{reasons:?}");
    assert!(reasons[3].contains("yesterday"), "{reasons:?}");
    assert!(dead.iter().all(|m| m.properties.contains_key("origin")));
    assert_results(&server, CIRR, &good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_job_receives_events_without_restarting_the_feeder() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let broker = Broker::start().await.unwrap();
    // Per-worker delivery, as on Golem: only the routes say where events go.
    let f = feeder(&broker, &server, &["--delivery", "worker"]);
    // No job yet: the feeder waits rather than consume events into nowhere.
    let early = cirr(5, 23);
    produce(&broker.url(), TOPIC, &early).await;
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(broker.backlog(TOPIC, SUB), early.len(), "{}", f.log());
    submit(&server, "cirr", CIRR);
    wait_acknowledged(&broker, &[&f], 60);
    assert_results(&server, CIRR, &early);

    // A second job with a new leaf: later keys reach it, the shared leaves once.
    let cdn2 =
        r#"duration_where(latest_event_to_state(cdnChange) == "CDN2" && has_existed(playerStateChange == "play"))"#;
    submit(&server, "cdn2", cdn2);
    wait_until(
        "the feeder to see the new job",
        30,
        || f.log().contains("\"cdn2\""),
        || f.log(),
    );
    let later: Vec<String> = cirr(8, 29).iter().map(|l| l.replace("session-", "later-")).collect();
    produce(&broker.url(), TOPIC, &later).await;
    wait_acknowledged(&broker, &[&f], 60);
    assert_results(&server, cdn2, &later);
    assert_results(&server, CIRR, &[early.clone(), later.clone()].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_faults_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    let broker = Broker::start().await.unwrap();
    let f = feeder(&broker, &server, &["--batch-size", "100"]);
    let lines = without_ids_with_ties(&cirr(30, 31));
    let (first, second) = lines.split_at(lines.len() / 2);
    broker.set_dispatch_delay(Duration::from_micros(300));
    produce(&broker.url(), TOPIC, first).await;
    std::thread::sleep(Duration::from_millis(300));
    broker.close_consumers();
    std::thread::sleep(Duration::from_millis(300));
    broker.drop_connections();
    produce(&broker.url(), TOPIC, second).await;
    broker.set_dispatch_delay(Duration::ZERO);
    wait_acknowledged(&broker, &[&f], 60);
    assert_results(&server, CIRR, &lines);
}

#[test]
fn from_file_delivers_and_reports_bad_lines_with_their_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    submit(&server, "cirr", CIRR);
    let mut lines = cirr(10, 37);
    lines.insert(3, "{broken".to_string());
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let f = Feeder::start(&["--from-file", file.to_str().unwrap(), "--target", &server.base]);
    let (status, log) = f.wait();
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("line 4"), "{log}");
    lines.remove(3);
    assert_results(&server, CIRR, &lines);
    let (_, health) = call(agent().get(&server.url("/v1/health")).call());
    assert_eq!(health["keys"], 10);
}

#[test]
fn a_wrong_token_stops_the_feeder_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--token", "right"]);
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, cirr(2, 1).join("\n")).unwrap();
    let f = Feeder::start(&[
        "--from-file",
        file.to_str().unwrap(),
        "--target",
        &server.base,
        "--target-token",
        "wrong",
        "--delivery",
        "bulk",
    ]);
    let (status, log) = f.wait();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("--target-token"), "{log}");
}
