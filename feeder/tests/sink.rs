//! `feeder sink`: a job's changes from a (fake) timeline server to the
//! in-memory Pulsar broker, with its producer deduplication, or to a
//! webhook receiver; killed with SIGKILL at random and restarted, and made
//! to exit at the worst moment, between the target's acknowledgement and
//! the checkpoint.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use pulsar_test_broker::Broker;
use support::fake_http::{ChangesServer, FakeChange, NEW_ONLY, Receiver, Rng, fake_change};
use support::{Feeder, free_addr, metric, wait_until};
use timeline_feeder::sink::EXIT_AFTER_SEND_ENV;

const JOB: &str = "alerts";
const TOPIC: &str = "changes";

/// The kill loops' seed: `SINK_TEST_SEED`, or a fixed one.
fn seed() -> u64 {
    let seed = std::env::var("SINK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261205);
    eprintln!("SINK_TEST_SEED={seed}");
    seed
}

fn pulsar_args<'a>(server: &'a str, broker: &'a str, checkpoint: &'a str, batch: &'a str) -> Vec<&'a str> {
    vec![
        "sink",
        "--from",
        server,
        "--job",
        JOB,
        "--pulsar-url",
        broker,
        "--topic",
        TOPIC,
        "--checkpoint",
        checkpoint,
        "--batch",
        batch,
        "--wait",
        "1",
        "--max-backoff",
        "200ms",
        "--metrics-addr",
        "off",
    ]
}

fn webhook_args<'a>(server: &'a str, hook: &'a str, checkpoint: &'a str, batch: &'a str) -> Vec<&'a str> {
    vec![
        "sink",
        "--from",
        server,
        "--job",
        JOB,
        "--webhook",
        hook,
        "--checkpoint",
        checkpoint,
        "--batch",
        batch,
        "--wait",
        "1",
        "--max-backoff",
        "200ms",
        "--metrics-addr",
        "off",
    ]
}

/// The sequence ids of the topic's messages, in order.
fn sequence_ids(broker: &Broker) -> Vec<u64> {
    broker.messages(TOPIC).iter().map(|m| m.sequence_id()).collect()
}

/// The checkpoint's `acked`.
fn acked(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["acked"].as_u64()
}

/// Asserts that the topic holds each of `expected` once, in order, as the
/// server wrote it: payload, sequence id, key, properties.
fn assert_topic_holds(broker: &Broker, expected: &[FakeChange]) {
    let messages = broker.messages(TOPIC);
    let ids: Vec<u64> = messages.iter().map(|m| m.sequence_id()).collect();
    let want: Vec<u64> = expected.iter().map(|c| c.id).collect();
    assert_eq!(ids, want, "every change once, in order");
    for (m, c) in messages.iter().zip(expected) {
        assert_eq!(String::from_utf8(m.data.clone()).unwrap(), c.json, "change {}", c.id);
        assert_eq!(m.key, c.key, "the partition key of change {}", c.id);
        assert_eq!(m.properties.get("change_id"), Some(&c.id.to_string()));
        assert_eq!(m.properties.get("job").map(String::as_str), Some(JOB));
        assert_eq!(m.producer_name(), "timeline-sink-alerts");
    }
}

/// The sink killed with SIGKILL at random moments, 20 times, while 2,000
/// changes arrive (bursts of 200, published in batches of 10) and the
/// server fails 5% of its requests: at the end the topic holds every change
/// once, in order, as the server wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_at_random_publishes_every_change_once_in_order() {
    let broker = Broker::start().await.unwrap();
    let server = std::sync::Arc::new(ChangesServer::start(JOB, None));
    server.set_faults(50);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("sink.checkpoint");
    let (base, url, cp) = (server.base(), broker.url(), checkpoint.to_str().unwrap().to_string());
    // Small batches and bursts of changes: kills land while a burst is
    // being published, between receipts and checkpoints now and then.
    let args = pulsar_args(&base, &url, &cp, "10");
    let total = 2000;
    server.push(200);
    let arrivals = {
        let s = server.clone();
        std::thread::spawn(move || {
            for _ in 0..9 {
                std::thread::sleep(Duration::from_millis(350));
                s.push(200);
            }
        })
    };
    let mut rng = Rng::new(seed());
    let mut kills = 0;
    let mut progress = Vec::new();
    let mut ahead = 0;
    while kills < 20 {
        let mut sink = Feeder::spawn(&args, &[]);
        std::thread::sleep(Duration::from_millis(60 + rng.below(300)));
        sink.kill();
        kills += 1;
        progress.push(broker.messages(TOPIC).len());
        ahead += sink.log().matches("resuming after them").count();
    }
    arrivals.join().unwrap();
    let sink = Feeder::spawn(&args, &[]);
    wait_until(
        "every change on the topic",
        40,
        || sequence_ids(&broker).last() == Some(&total),
        || format!("topic: {} messages\n{}", broker.messages(TOPIC).len(), sink.log()),
    );
    wait_until(
        "the checkpoint to catch up",
        10,
        || acked(&checkpoint) == Some(total),
        String::new,
    );
    let changes = server.changes();
    assert_eq!(changes.len() as u64, total);
    assert_topic_holds(&broker, &changes);
    let (requests, failed) = server.requests();
    ahead += sink.log().matches("resuming after them").count();
    eprintln!(
        "{kills} kills; topic size after each: {progress:?}; {ahead} restarts found the topic ahead of the checkpoint (killed between receipts and checkpoint) and resumed after its last sequence id; {} changes sent again and dropped by the broker; {failed} of {requests} server requests failed on purpose",
        broker.duplicates(TOPIC)
    );
    assert!(
        progress.iter().any(|&n| n > 0 && n < total as usize),
        "some kills landed mid-stream: {progress:?}"
    );
    assert!(failed > 0, "the server failed some requests");
}

/// Runs the sink once with the test hook: it exits right after the broker's
/// receipts for the batch holding change 35 (changes 31 to 40), before its
/// checkpoint records them.
fn crash_after_receipts(server: &ChangesServer, broker: &Broker, checkpoint: &Path) {
    let (base, url, cp) = (server.base(), broker.url(), checkpoint.to_str().unwrap().to_string());
    let mut sink = Feeder::spawn(&pulsar_args(&base, &url, &cp, "10"), &[(EXIT_AFTER_SEND_ENV, "35")]);
    assert_eq!(sink.exit_code(20), Some(86), "{}", sink.log());
    assert_eq!(
        acked(checkpoint),
        Some(30),
        "the checkpoint does not record the last batch"
    );
    assert_eq!(
        sequence_ids(broker),
        (1..=40).collect::<Vec<_>>(),
        "but the topic holds it"
    );
}

/// The crash that matters: after the broker stored a batch, before the
/// checkpoint recorded it. On restart the sink resumes after the producer's
/// `last_sequence_id` (the broker sees no change again), and the broker's
/// deduplication would drop one sent again anyway: every change once. The
/// checkpoint lost altogether: the same. Metrics count what was published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_receipt_and_the_checkpoint_publishes_nothing_twice() {
    let broker = Broker::start().await.unwrap();
    let server = ChangesServer::start(JOB, None);
    server.push(100);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("sink.checkpoint");
    crash_after_receipts(&server, &broker, &checkpoint);

    let metrics = free_addr().to_string();
    let (base, url, cp) = (server.base(), broker.url(), checkpoint.to_str().unwrap().to_string());
    let mut args = pulsar_args(&base, &url, &cp, "10");
    args.truncate(args.len() - 2);
    args.extend(["--metrics-addr", &metrics]);
    let mut sink = Feeder::spawn(&args, &[]);
    wait_until("change 100", 20, || acked(&checkpoint) == Some(100), || sink.log());
    assert_topic_holds(&broker, &server.changes());
    assert_eq!(broker.duplicates(TOPIC), 0, "nothing was sent again: {}", sink.log());
    assert!(
        sink.log().contains("resuming after them"),
        "resumed after the last sequence id: {}",
        sink.log()
    );
    let text = ureq::get(&format!("http://{metrics}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(metric(&text, "feeder_sink_changes_published_total"), 60.0, "{text}");
    assert_eq!(metric(&text, "feeder_sink_last_change_id"), 100.0, "{text}");
    assert_eq!(metric(&text, "feeder_sink_server_last_change_id"), 100.0, "{text}");

    // Ctrl-C stops it cleanly.
    std::process::Command::new("kill")
        .args(["-INT", &sink.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(sink.exit_code(10), Some(0), "{}", sink.log());
    assert!(sink.log().contains("stopped"), "{}", sink.log());

    // The checkpoint lost: the producer's last sequence id says where to go on.
    std::fs::remove_file(&checkpoint).unwrap();
    server.push(5);
    let sink = Feeder::spawn(&pulsar_args(&base, &url, &cp, "10"), &[]);
    wait_until("change 105", 20, || acked(&checkpoint) == Some(105), || sink.log());
    assert_topic_holds(&broker, &server.changes());
    assert_eq!(broker.duplicates(TOPIC), 0);
}

/// The same crash on a broker without deduplication (the namespace's
/// default in Pulsar): the batch is published twice. This is what the
/// deduplication and `last_sequence_id` prevent, and the sink warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_broker_deduplication_the_same_crash_publishes_a_batch_twice() {
    let broker = Broker::start().await.unwrap();
    broker.set_deduplication(false);
    let server = ChangesServer::start(JOB, None);
    server.push(100);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("sink.checkpoint");
    crash_after_receipts(&server, &broker, &checkpoint);
    let (base, url, cp) = (server.base(), broker.url(), checkpoint.to_str().unwrap().to_string());
    let sink = Feeder::spawn(&pulsar_args(&base, &url, &cp, "10"), &[]);
    wait_until("change 100", 20, || acked(&checkpoint) == Some(100), || sink.log());
    let want: Vec<u64> = (1..=40).chain(31..=100).collect();
    assert_eq!(sequence_ids(&broker), want, "changes 31 to 40 twice");
    assert!(
        sink.log().contains("is deduplication enabled on the namespace"),
        "{}",
        sink.log()
    );
}

/// Checks what the receiver got: every change of `expected`, each delivery
/// as the server wrote it, and every delivery of a change with one and the
/// same idempotency key, in one and the same batch. Returns the number of
/// changes delivered more than once.
fn assert_delivered(receiver: &Receiver, expected: &[FakeChange]) -> usize {
    let by_id: BTreeMap<u64, &FakeChange> = expected.iter().map(|c| (c.id, c)).collect();
    let mut keys: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut batches: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut times: BTreeMap<u64, usize> = BTreeMap::new();
    for d in receiver.deliveries() {
        assert_eq!(d.job, JOB);
        assert!(!d.ids.is_empty(), "no empty batch");
        assert!(d.ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {:?}", d.ids);
        assert_eq!(
            d.key,
            format!("timeline-sink-alerts:{}-{}", d.ids[0], d.ids[d.ids.len() - 1])
        );
        if let Some(earlier) = batches.insert(d.key.clone(), d.ids.clone()) {
            assert_eq!(earlier, d.ids, "key {} names one batch", d.key);
        }
        for (id, json) in d.ids.iter().zip(&d.changes) {
            let c = by_id
                .get(id)
                .unwrap_or_else(|| panic!("change {id} was not to be delivered"));
            assert_eq!(*json, c.json, "change {id} as the server wrote it");
            keys.entry(*id).or_default().insert(d.key.clone());
            *times.entry(*id).or_default() += 1;
        }
    }
    assert_eq!(
        keys.keys().copied().collect::<Vec<_>>(),
        by_id.keys().copied().collect::<Vec<_>>(),
        "every change delivered"
    );
    for (id, k) in &keys {
        assert_eq!(k.len(), 1, "change {id} went with several keys: {k:?}");
    }
    times.values().filter(|&&n| n > 1).count()
}

/// A webhook sink killed with SIGKILL at random, 20 times, while changes
/// arrive, the server fails some requests and the receiver, slow (30 ms a
/// batch), fails a third of them (503, dropped connections, answers lost
/// after it recorded the batch); `--where` leaves out a seventh of the
/// changes. Every selected
/// change is delivered, and all deliveries of a change carry the same
/// idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sink_killed_at_random_delivers_every_change_with_one_key() {
    let server = std::sync::Arc::new(ChangesServer::start(JOB, Some("secret")));
    server.set_faults(50);
    server.push(55);
    let receiver = Receiver::start();
    receiver.set_faults(300);
    receiver.set_delay(Duration::from_millis(30));
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("hook.checkpoint");
    let (base, hook, cp) = (server.base(), receiver.url(), checkpoint.to_str().unwrap().to_string());
    let mut args = webhook_args(&base, &hook, &cp, "25");
    args.extend(["--where", NEW_ONLY, "--token", "secret"]);
    // Small bursts the sink keeps up with: its batches are mostly partial,
    // so one read again after a restart would hold more changes than the
    // one in flight at the kill; only the batch written ahead keeps its key.
    let total = 1000;
    let arrivals = {
        let s = server.clone();
        std::thread::spawn(move || {
            for _ in 0..105 {
                std::thread::sleep(Duration::from_millis(40));
                s.push(9);
            }
        })
    };
    let mut rng = Rng::new(seed() ^ 0x5eed);
    let mut kills = 0;
    let mut progress = Vec::new();
    while kills < 20 {
        let mut sink = Feeder::spawn(&args, &[]);
        std::thread::sleep(Duration::from_millis(60 + rng.below(300)));
        sink.kill();
        kills += 1;
        progress.push(receiver.deliveries().len());
    }
    arrivals.join().unwrap();
    let sink = Feeder::spawn(&args, &[]);
    let last_new = (1..=total).rev().find(|id| fake_change(*id).new).unwrap();
    wait_until(
        "every change delivered",
        40,
        || acked(&checkpoint) == Some(total),
        || format!("{} deliveries\n{}", receiver.deliveries().len(), sink.log()),
    );
    let expected: Vec<FakeChange> = server.changes().into_iter().filter(|c| c.new).collect();
    assert_eq!(expected.last().map(|c| c.id), Some(last_new));
    let again = assert_delivered(&receiver, &expected);
    eprintln!(
        "{kills} kills; deliveries after each: {progress:?}; {} requests, {} deliveries, {again} changes delivered more than once",
        receiver.requests(),
        receiver.deliveries().len()
    );
    assert!(again > 0, "some changes were delivered again (answers lost, kills)");
    let delivered = receiver.deliveries().len();
    assert!(
        progress.iter().any(|&n| n > 0 && n < delivered),
        "kills landed mid-stream: {progress:?}"
    );
}

/// The webhook's crash that matters: the receiver accepted a batch (11 to
/// 15, all there was then), the checkpoint does not record it yet, and more
/// changes arrive meanwhile. On restart exactly that batch goes again, with
/// the same key, before the rest (and not 11 to 20, the batch the stream
/// would give now).
#[test]
fn a_webhook_batch_in_flight_at_a_crash_goes_again_with_the_same_key() {
    let server = ChangesServer::start(JOB, None);
    server.push(15);
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("hook.checkpoint");
    let (base, hook, cp) = (server.base(), receiver.url(), checkpoint.to_str().unwrap().to_string());
    let args = webhook_args(&base, &hook, &cp, "10");
    let mut sink = Feeder::spawn(&args, &[(EXIT_AFTER_SEND_ENV, "15")]);
    assert_eq!(sink.exit_code(20), Some(86), "{}", sink.log());
    let before: Vec<String> = receiver.deliveries().iter().map(|d| d.key.clone()).collect();
    assert_eq!(before, ["timeline-sink-alerts:1-10", "timeline-sink-alerts:11-15"]);
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert_eq!(state["acked"], 10);
    assert_eq!(
        state["in_flight"]["key"], "timeline-sink-alerts:11-15",
        "written ahead: {state}"
    );
    server.push(30);
    let sink = Feeder::spawn(&args, &[]);
    wait_until("change 45", 20, || acked(&checkpoint) == Some(45), || sink.log());
    let keys: Vec<String> = receiver.deliveries().iter().map(|d| d.key.clone()).collect();
    assert_eq!(
        keys,
        [
            "timeline-sink-alerts:1-10",
            "timeline-sink-alerts:11-15",
            "timeline-sink-alerts:11-15",
            "timeline-sink-alerts:16-25",
            "timeline-sink-alerts:26-35",
            "timeline-sink-alerts:36-45",
        ],
        "the batch in flight again, then the rest"
    );
    assert_eq!(assert_delivered(&receiver, &server.changes()), 5);
}

/// A receiver's 400 is final: the sink exits 1 with the receiver's reason.
#[test]
fn a_webhook_400_stops_the_sink_with_the_receivers_message() {
    let server = ChangesServer::start(JOB, None);
    server.push(5);
    let receiver = Receiver::start();
    receiver.answer_always(400, "field `until` is not allowed here");
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("c").to_str().unwrap().to_string();
    let (base, hook) = (server.base(), receiver.url());
    let mut sink = Feeder::spawn(&webhook_args(&base, &hook, &cp, "10"), &[]);
    assert_eq!(sink.exit_code(20), Some(1), "{}", sink.log());
    let log = sink.log();
    assert!(log.contains("400 Bad Request"), "{log}");
    assert!(log.contains("field `until` is not allowed here"), "{log}");
    assert_eq!(receiver.requests(), 1, "not tried again");
}

/// Clear errors, exit 1: an unknown job, a job that does not record its
/// changes, a `where` the server refuses, a wrong token, URLs that are not
/// http(s). A server that is down is waited for.
#[test]
fn unknown_jobs_bad_filters_and_bad_urls_stop_the_sink_and_a_down_server_is_waited_for() {
    let server = ChangesServer::start(JOB, Some("t"));
    server.push(3);
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("c").to_str().unwrap().to_string();
    let (base, hook) = (server.base(), receiver.url());
    let cases: [(&[&str], &str); 6] = [
        (
            &["--job", "nope", "--token", "t"],
            "the timeline server has no job `nope`: no job named `nope`",
        ),
        (
            &["--job", "plain", "--token", "t"],
            "job `plain` does not record its changes (submit it with \"changes\": true)",
        ),
        (
            &["--where", "key ==", "--token", "t"],
            "with --where `key ==`: cannot read the condition `key ==`",
        ),
        (&["--token", "wrong"], "check --token"),
        (&["--from", "localhost:8080"], "is not an http:// or https:// URL"),
        (
            &["--webhook", "ftp://x/hook"],
            "--webhook: `ftp://x/hook` is not an http:// or https:// URL",
        ),
    ];
    for (extra, message) in cases {
        let mut args = webhook_args(&base, &hook, &cp, "10");
        // Later options win: put them first where they replace a default.
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| *a == pair[0]) {
                args[i + 1] = pair[1];
            } else {
                args.extend(pair);
            }
        }
        let mut sink = Feeder::spawn(&args, &[]);
        assert_eq!(sink.exit_code(20), Some(1), "{extra:?}: {}", sink.log());
        assert!(sink.log().contains(message), "{extra:?}: {}", sink.log());
    }
    assert_eq!(receiver.requests(), 0);

    let addr = free_addr();
    let down = format!("http://{addr}");
    let mut sink = Feeder::spawn(&webhook_args(&down, &hook, &cp, "10"), &[]);
    wait_until("a retry", 10, || sink.log().contains("does not answer"), || sink.log());
    assert!(sink.running(), "{}", sink.log());
    let late = ChangesServer::start_on(addr, JOB, None);
    late.push(3);
    wait_until("the changes", 20, || receiver.deliveries().len() == 1, || sink.log());
    assert!(sink.log().contains("answers again"), "{}", sink.log());
}

/// Throughput, from the fake server's stream to the target's
/// acknowledgement and the checkpoint: `SINK_BENCH_CHANGES` changes (100,000)
/// recorded up front, one sink run from the start, timed until its
/// checkpoint holds the last one. With a release sink:
/// `cargo build --release -p timeline-feeder && SINK_FEEDER_BIN=target/release/feeder
/// cargo test -p timeline-feeder --test sink -- --ignored --nocapture sink_throughput`
/// (the broker, the fake server and the receiver run in the test, a debug
/// build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn sink_throughput() {
    let n: u64 = std::env::var("SINK_BENCH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let bin = std::env::var("SINK_FEEDER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_feeder").to_string());
    let server = ChangesServer::start(JOB, None);
    server.push(n);
    let receiver = Receiver::start();
    for batch in ["500", "5000"] {
        for target in ["pulsar", "webhook"] {
            let broker = Broker::start().await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let checkpoint = dir.path().join("c");
            let (base, url, hook, cp) = (
                server.base(),
                broker.url(),
                receiver.url(),
                checkpoint.to_str().unwrap().to_string(),
            );
            let args = match target {
                "pulsar" => pulsar_args(&base, &url, &cp, batch),
                _ => webhook_args(&base, &hook, &cp, batch),
            };
            let start = std::time::Instant::now();
            let sink = Feeder::spawn_bin(&bin, &args, &[]);
            wait_until("the last change", 600, || acked(&checkpoint) == Some(n), || sink.log());
            let secs = start.elapsed().as_secs_f64();
            if target == "pulsar" {
                assert_eq!(broker.messages(TOPIC).len() as u64, n);
            }
            eprintln!(
                "{target}, --batch {batch}: {n} changes in {secs:.2} s, {:.0} changes/s; the sink used {} of CPU",
                n as f64 / secs,
                cpu_seconds(sink.id()).map_or("?".to_string(), |c| format!("{c:.2} s"))
            );
        }
    }
}

/// The CPU time (user and system) process `pid` has used, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The real thing: `timeline serve` records the changes of a card-swipes
/// alert job while events arrive (late ones among them), and `feeder sink`
/// is killed with SIGKILL at random, 15 times, and restarted: at the end the
/// topic holds every change the server recorded, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changes_of_timeline_serve_reach_the_topic_once_across_kills() {
    let broker = Broker::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let base = support::start_server(data.path());
    let query = "from cards key card;\n\
        let overlap = has_existed_within(suburb == \"Newtown\", 10m) && has_existed_within(suburb == \"Parramatta\", 10m);\n\
        alert = overlap || duration_where(overlap) > 0;";
    let job = ureq::post(&format!("{base}/v1/jobs"))
        .send_json(serde_json::json!({"name": JOB, "query": query, "changes": true}))
        .unwrap();
    assert_eq!(job.status(), 201);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("sink.checkpoint");
    let (url, cp) = (broker.url(), checkpoint.to_str().unwrap().to_string());
    let args = pulsar_args(&base, &url, &cp, "7");
    let mut rng = Rng::new(seed());
    let mut post_batch = |round: u64| {
        let lines: Vec<String> = (0..40)
            .map(|i| {
                let card = format!("card-{}", rng.below(25));
                let late = if rng.below(10) == 0 { -900_000 } else { 0 };
                let at = 1_709_283_600_000 + (round * 40 + i) as i64 * 20_000 + late;
                let suburb = if rng.below(2) == 0 { "Newtown" } else { "Parramatta" };
                serde_json::json!({"card": card, "time": at, "event_id": format!("e{round}-{i}"), "suburb": suburb})
                    .to_string()
            })
            .collect();
        let r = ureq::post(&format!("{base}/v1/streams/cards/events")).send_string(&lines.join("\n"));
        assert_eq!(r.unwrap().status(), 200);
    };
    let mut kill_rng = Rng::new(seed() + 1);
    for round in 0..15 {
        post_batch(round);
        let mut sink = Feeder::spawn(&args, &[]);
        post_batch(round + 100);
        std::thread::sleep(Duration::from_millis(30 + kill_rng.below(250)));
        sink.kill();
    }
    // Every change the server recorded, as it gives them.
    let mut recorded: Vec<serde_json::Value> = Vec::new();
    loop {
        let after = recorded.last().map_or(0, |c| c["id"].as_u64().unwrap());
        let page: serde_json::Value = ureq::get(&format!("{base}/v1/jobs/{JOB}/changes?after={after}&limit=10000"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        let changes = page["changes"].as_array().unwrap();
        if changes.is_empty() {
            break;
        }
        recorded.extend(changes.iter().cloned());
    }
    let last = recorded.last().unwrap()["id"].as_u64().unwrap();
    assert!(recorded.len() > 50, "{} changes", recorded.len());
    let sink = Feeder::spawn(&args, &[]);
    wait_until(
        "every change on the topic",
        40,
        || sequence_ids(&broker).last() == Some(&last),
        || format!("topic: {} messages\n{}", broker.messages(TOPIC).len(), sink.log()),
    );
    let published: Vec<serde_json::Value> = broker
        .messages(TOPIC)
        .iter()
        .map(|m| serde_json::from_slice(&m.data).unwrap())
        .collect();
    assert_eq!(
        published, recorded,
        "every change once, in order, as the server gave it"
    );
    let ids: Vec<u64> = sequence_ids(&broker);
    assert_eq!(ids, (1..=last).collect::<Vec<_>>());
}
