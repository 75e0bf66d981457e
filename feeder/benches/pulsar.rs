//! Sustained events/s from Pulsar to durable acknowledgement: CIRR events are
//! published to the in-memory Pulsar-protocol test broker, then a release
//! `feeder` delivers them to `timeline serve` (fsync on every commit) and the
//! time until the broker holds no unacknowledged message is measured.
//!
//! `cargo bench -p timeline-feeder --bench pulsar [-- SESSIONS]` (default
//! 10000 sessions, about 420k events). For each subscription type (Failover:
//! one cumulative acknowledgement per batch; Shared and Key_Shared: grouped
//! acknowledgements, many ids per frame) it drains the topic with a plain
//! pulsar-rs consumer (receive, acknowledge, nothing else), with a plain
//! consumer on the feeder's own Pulsar client (receive, decode, acknowledge
//! in groups) and then with the feeder in bulk delivery (the local runtime's
//! default), and prints the ratios (each consumer drains each subscription
//! type three times, interleaved; the best round counts); then per-worker
//! delivery (as on Golem) and the feeder from a file.
//!
//! When pulsar-lite and the official Python client are installed (PyPI
//! `pulsar-lite`, `pulsar-client`), the same events are also published to
//! pulsar-lite, and each subscription type is drained by a plain consumer of
//! the official Python client and by the feeder, connected to pulsar-lite
//! directly.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor, producer};
use pulsar_test_broker::Broker;
use timeline_local::generate::{CirrOptions, write_cirr};

const TOPIC: &str = "bench-events";
/// Runs of each consumer on each subscription type; the best counts.
const ROUNDS: usize = 3;
const CIRR: &str = include_str!("../../examples/cirr.tl");

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Starts `timeline serve` in this process on its own runtime.
fn start_server(dir: &std::path::Path) -> String {
    let addr = free_addr();
    let config = timeline_local::http::ServeConfig {
        max_batch_events: 100_000,
        ..timeline_local::http::ServeConfig::new(addr, dir.to_path_buf())
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(timeline_local::http::serve(config))
            .unwrap();
    });
    let base = format!("http://{addr}");
    let start = Instant::now();
    while ureq::get(&format!("{base}/v1/health")).call().is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    ureq::post(&format!("{base}/v1/jobs?name=cirr"))
        .send_string(CIRR)
        .unwrap();
    base
}

async fn publish(url: &str, lines: &[&str]) {
    let pulsar = Pulsar::builder(url, TokioExecutor).build().await.unwrap();
    let mut producer = pulsar
        .producer()
        .with_topic(TOPIC)
        .with_options(producer::ProducerOptions {
            block_queue_if_full: true,
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let mut receipts = Vec::new();
    for line in lines {
        let key = line.split("\"session_id\":\"").nth(1).and_then(|r| r.split('"').next());
        let message = producer::Message {
            payload: line.as_bytes().to_vec(),
            partition_key: key.map(str::to_string),
            ..Default::default()
        };
        receipts.push(producer.send_non_blocking(message).await.unwrap());
        if receipts.len() == 1000 {
            for r in receipts.drain(..) {
                r.await.unwrap();
            }
        }
    }
    for r in receipts {
        r.await.unwrap();
    }
}

/// Drains the topic with a plain pulsar-rs consumer that acknowledges each
/// message as it arrives; returns events/s.
async fn plain(broker: &Broker, events: usize, kind: &str, round: usize) -> f64 {
    let sub_type = match kind {
        "failover" => SubType::Failover,
        "shared" => SubType::Shared,
        _ => SubType::KeyShared,
    };
    let subscription = format!("plain-{kind}-{round}");
    let pulsar = Pulsar::builder(broker.url(), TokioExecutor).build().await.unwrap();
    let mut consumer = pulsar
        .consumer()
        .with_topic(TOPIC)
        .with_subscription(&subscription)
        .with_subscription_type(sub_type)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .with_batch_size(2000)
        .build::<Vec<u8>>()
        .await
        .unwrap();
    let mut first: Option<Instant> = None;
    let mut received = 0;
    while received < events {
        let message = consumer.next().await.unwrap().unwrap();
        first.get_or_insert_with(Instant::now);
        consumer.ack(&message).await.unwrap();
        received += 1;
    }
    while broker.backlog(TOPIC, &subscription) > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = first.unwrap().elapsed().as_secs_f64();
    let _ = consumer.close().await;
    let rate = events as f64 / took;
    println!(
        "plain pulsar-rs consumer, {kind:>10} subscription: {events} events acknowledged in {took:.2} s: {rate:.0} events/s"
    );
    rate
}

/// Drains the topic with a plain consumer on the feeder's own Pulsar client
/// (receive, decode, acknowledge in groups of up to 1000 ids per frame,
/// nothing else); returns events/s.
async fn plain_wire(broker: &Broker, events: usize, kind: &str, round: usize) -> f64 {
    use pulsar::message::proto::MessageIdData;
    use pulsar::message::proto::command_subscribe::{InitialPosition as Position, SubType as Kind};
    use timeline_feeder::wire::acks::{Acks, MAX_IDS_PER_FRAME};
    use timeline_feeder::wire::client::Client;
    use timeline_feeder::wire::connection::{Config, Event};
    use timeline_feeder::wire::consumer::{Settings, Subscription};
    use timeline_feeder::wire::payload::unpack;
    let subscription = format!("wire-{kind}-{round}");
    let client = std::sync::Arc::new(Client::new(&broker.url(), Config::default()).unwrap());
    let mut consumer = Subscription::new(
        client,
        Settings {
            subscription: subscription.clone(),
            sub_type: match kind {
                "failover" => Kind::Failover,
                "shared" => Kind::Shared,
                _ => Kind::KeyShared,
            },
            consumer_name: "plain".into(),
            initial_position: Position::Earliest,
            receiver_queue_size: 1000,
            start: None,
        },
    );
    consumer.add_topic(&format!("persistent://public/default/{TOPIC}"));
    consumer.subscribe_missing().await.unwrap();
    let mut acks = Acks::new(kind == "failover");
    let mut first: Option<Instant> = None;
    let mut received = 0;
    let mut unsent = 0;
    while received < events {
        let Some(Event::Message { message, payload, .. }) = consumer.events.recv().await else {
            panic!("the consumer closed");
        };
        first.get_or_insert_with(Instant::now);
        let payload = payload.expect("a payload");
        let metadata = payload.metadata.as_ref().expect("metadata");
        let n = unpack(metadata, &payload.data).expect("decodable").len();
        let id = MessageIdData {
            ledger_id: message.message_id.ledger_id,
            entry_id: message.message_id.entry_id,
            partition: Some(-1),
            ..Default::default()
        };
        let now = std::time::Instant::now();
        let serial = acks.received(0, id, 1, now);
        acks.settle(serial, now);
        consumer.taken(0, 1);
        received += n;
        unsent += 1;
        if unsent >= MAX_IDS_PER_FRAME {
            unsent = 0;
            consumer.acknowledge(acks.take(|_| true, now));
        }
    }
    consumer.acknowledge(acks.take(|_| true, std::time::Instant::now()));
    while broker.backlog(TOPIC, &subscription) > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = first.unwrap().elapsed().as_secs_f64();
    consumer.close().await;
    let rate = events as f64 / took;
    println!(
        "plain consumer on the feeder's client, {kind:>10} subscription: {events} events acknowledged in {took:.2} s: {rate:.0} events/s"
    );
    rate
}

fn run(broker: &Broker, events: usize, delivery: &str, kind: &str, round: usize) -> f64 {
    let subscription = format!("bench-{delivery}-{kind}-{round}");
    let subscription = subscription.as_str();
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let metrics = free_addr().to_string();
    let mut feeder = Command::new(env!("CARGO_BIN_EXE_feeder"))
        .args([
            "--service-url",
            &broker.url(),
            "--topic",
            TOPIC,
            "--subscription",
            subscription,
        ])
        .args(["--target", &base, "--delivery", delivery, "--metrics-addr", &metrics])
        .args(["--subscription-type", kind])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    loop {
        let backlog = broker.backlog(TOPIC, subscription);
        if first.is_none() && backlog < events {
            first = Some(Instant::now());
        }
        if backlog == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "too slow: {backlog} left"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let end = Instant::now();
    let feeder_rss = rss_kib(feeder.id());
    let text = ureq::get(&format!("http://{metrics}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let metric = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let batches = metric("feeder_batches_total");
    let requests = metric("feeder_requests_total");
    let busy = metric("feeder_delivery_seconds_sum");
    let _ = feeder.kill();
    let _ = feeder.wait();
    let sustained = end - first.unwrap();
    println!(
        "{delivery:>6} delivery, {kind:>10} subscription: {events} events acknowledged in {:.2} s after the first ({:.2} s from start): \
         {:.0} events/s; feeder peak RSS {} MiB\n        {batches} batches ({:.0} events each), \
         {requests} requests, {:.1} ms per batch from first message to acknowledgement",
        sustained.as_secs_f64(),
        (end - started).as_secs_f64(),
        events as f64 / sustained.as_secs_f64(),
        feeder_rss / 1024,
        events as f64 / batches,
        busy / batches * 1000.0,
    );
    events as f64 / sustained.as_secs_f64()
}

/// The feeder's own ceiling: the same events from a file, no broker.
fn run_file(text: &str, events: usize) {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, text).unwrap();
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_feeder"))
        .args([
            "--from-file",
            file.to_str().unwrap(),
            "--target",
            &base,
            "--metrics-addr",
            "off",
        ])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    let took = started.elapsed().as_secs_f64();
    println!(
        "  bulk delivery, from a file (no broker): {events} events acknowledged in {took:.2} s: {:.0} events/s",
        events as f64 / took
    );
}

/// The pulsar-lite binary of the installed wheel, if any (with the
/// official Python client beside it).
fn pulsar_lite_binary() -> Option<std::path::PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, pulsar, pulsar_lite; print(os.path.dirname(pulsar_lite.__file__))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| std::path::Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("bin/pulsar-lite"))
}

/// A running pulsar-lite; stopped when dropped.
struct Lite {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Lite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_lite(binary: &std::path::Path) -> Lite {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = dir.path().join("pulsar-lite.toml");
    std::fs::write(&config, "[metrics]\nenabled = false\n").unwrap();
    let child = Command::new(binary)
        .args(["--addr", &addr.to_string(), "--log-level", "error"])
        .arg("--db-path")
        .arg(dir.path().join("db"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "pulsar-lite did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Lite { child, addr, _dir: dir }
}

/// Runs a Python script with the official client; returns its standard output.
fn python(script: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const PY_KINDS: &str = r#"
import pulsar
KINDS = {"failover": pulsar.ConsumerType.Failover, "shared": pulsar.ConsumerType.Shared, "key-shared": pulsar.ConsumerType.KeyShared}
"#;

/// Creates the subscriptions (pulsar-lite delivers to a subscription only
/// what is published after it exists), then publishes `text`'s lines
/// unbatched, keyed by `session_id`, with the official Python producer.
fn lite_publish(lite: &Lite, text: &str, subscriptions: &[(String, &str)]) {
    let script = format!(
        "{PY_KINDS}{}",
        r#"
import json, sys
client = pulsar.Client(sys.argv[1])
topic = sys.argv[2]
for arg in sys.argv[3:]:
    name, kind = arg.split("=")
    client.subscribe(topic, name, consumer_type=KINDS[kind], initial_position=pulsar.InitialPosition.Earliest).close()
producer = client.create_producer(topic, batching_enabled=False, block_if_queue_full=True, max_pending_messages=1000)
for line in sys.stdin:
    line = line.strip()
    if line:
        producer.send_async(line.encode(), None, partition_key=json.loads(line)["session_id"])
producer.flush()
client.close()
"#
    );
    let url = format!("pulsar://{}", lite.addr);
    let topic = format!("persistent://public/default/{TOPIC}");
    let subs: Vec<String> = subscriptions.iter().map(|(n, k)| format!("{n}={k}")).collect();
    let mut args = vec![url.as_str(), topic.as_str()];
    args.extend(subs.iter().map(String::as_str));
    python(&script, &args, text);
}

/// Drains `subscription` with a plain consumer of the official Python
/// client (receive, acknowledge); returns events/s from the first message
/// to the last distinct one.
fn lite_plain(lite: &Lite, events: usize, subscription: &str, kind: &str) -> f64 {
    let script = format!(
        "{PY_KINDS}{}",
        r#"
import sys, time
client = pulsar.Client(sys.argv[1])
consumer = client.subscribe(sys.argv[2], sys.argv[3], consumer_type=KINDS[sys.argv[4]], initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=1000)
want = int(sys.argv[5])
seen = set()
first = None
while len(seen) < want:
    m = consumer.receive(timeout_millis=60000)
    if first is None:
        first = time.monotonic()
    seen.add(m.message_id().serialize())
    consumer.acknowledge(m)
print("took", time.monotonic() - first)
consumer.close()
client.close()
"#
    );
    let url = format!("pulsar://{}", lite.addr);
    let topic = format!("persistent://public/default/{TOPIC}");
    // The client may log to standard output too.
    let out = python(&script, &[&url, &topic, subscription, kind, &events.to_string()], "");
    let took: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("took "))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no time in the Python consumer's output: {out}"));
    let rate = events as f64 / took;
    println!(
        "plain Python consumer (pulsar-lite), {kind:>10} subscription: {events} events received in {took:.2} s: {rate:.0} events/s"
    );
    rate
}

/// Drains `subscription` with the feeder (bulk delivery) connected to
/// pulsar-lite; returns events/s from the first event the runtime holds to
/// the last.
fn lite_feeder(lite: &Lite, events: usize, subscription: &str, kind: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let metrics = free_addr().to_string();
    let mut feeder = Command::new(env!("CARGO_BIN_EXE_feeder"))
        .args(["--service-url", &format!("pulsar://{}", lite.addr), "--topic", TOPIC])
        .args(["--subscription", subscription, "--subscription-type", kind])
        .args(["--target", &base, "--metrics-addr", &metrics])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let held = || -> usize {
        ureq::get(&format!("{base}/v1/streams/default"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<serde_json::Value>().ok())
            .and_then(|v| v["events"].as_u64())
            .unwrap_or(0) as usize
    };
    let started = Instant::now();
    let mut first = None;
    loop {
        let n = held();
        if first.is_none() && n > 0 {
            first = Some(Instant::now());
        }
        if n >= events {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "too slow: {n} of {events}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = first.unwrap().elapsed().as_secs_f64();
    let consumed = ureq::get(&format!("http://{metrics}/metrics"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("feeder_messages_consumed_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN);
    let _ = feeder.kill();
    let _ = feeder.wait();
    let rate = events as f64 / took;
    println!(
        "  bulk delivery (pulsar-lite), {kind:>10} subscription: {events} events held by the runtime in {took:.2} s after the first: {rate:.0} events/s ({consumed} messages read, redeliveries included)"
    );
    rate
}

fn main() {
    let sessions: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut data = Vec::new();
    let events = write_cirr(
        &CirrOptions {
            sessions,
            seed: 1,
            late: 0.02,
            duplicates: 0.01,
        },
        &mut data,
    )
    .unwrap() as usize;
    let text = String::from_utf8(data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let broker = runtime.block_on(Broker::start()).unwrap();
    eprintln!("publishing {events} events of {sessions} sessions to the test broker ...");
    let t = Instant::now();
    runtime.block_on(publish(&broker.url(), &lines));
    eprintln!("published in {:.1} s", t.elapsed().as_secs_f64());
    // Each consumer drains each subscription type ROUNDS times, the rounds
    // interleaved; the best round counts (the machine may be shared).
    let mut table = Vec::new();
    for kind in ["failover", "shared", "key-shared"] {
        let (mut plain_best, mut wire_best, mut feeder_best) = (0f64, 0f64, 0f64);
        for round in 0..ROUNDS {
            plain_best = plain_best.max(runtime.block_on(plain(&broker, events, kind, round)));
            wire_best = wire_best.max(runtime.block_on(plain_wire(&broker, events, kind, round)));
            feeder_best = feeder_best.max(run(&broker, events, "bulk", kind, round));
        }
        table.push((kind, plain_best, wire_best, feeder_best));
    }
    run(&broker, events, "worker", "failover", 0);
    run_file(&text, events);
    // pulsar-lite: without repeated events, so that the runtime holds
    // exactly one event per message once the feeder is done.
    let mut lite_table = Vec::new();
    if let Some(binary) = pulsar_lite_binary() {
        let mut distinct = Vec::new();
        let lite_events = write_cirr(
            &CirrOptions {
                sessions,
                seed: 1,
                late: 0.02,
                duplicates: 0.0,
            },
            &mut distinct,
        )
        .unwrap() as usize;
        let distinct = String::from_utf8(distinct).unwrap();
        let lite = start_lite(&binary);
        let kinds = ["failover", "shared", "key-shared"];
        let mut subscriptions = Vec::new();
        for kind in kinds {
            for round in 0..ROUNDS {
                subscriptions.push((format!("plain-{kind}-{round}"), kind));
                subscriptions.push((format!("feeder-{kind}-{round}"), kind));
            }
        }
        eprintln!("publishing {lite_events} events to pulsar-lite with the official Python producer ...");
        let t = Instant::now();
        lite_publish(&lite, &distinct, &subscriptions);
        eprintln!("published in {:.1} s", t.elapsed().as_secs_f64());
        for kind in kinds {
            let (mut plain_best, mut feeder_best) = (0f64, 0f64);
            for round in 0..ROUNDS {
                plain_best = plain_best.max(lite_plain(&lite, lite_events, &format!("plain-{kind}-{round}"), kind));
                feeder_best = feeder_best.max(lite_feeder(&lite, lite_events, &format!("feeder-{kind}-{round}"), kind));
            }
            lite_table.push((plain_best, feeder_best));
        }
    } else {
        eprintln!("pulsar-lite or the Python client is not installed: the official client is not measured");
    }
    println!(
        "\n| subscription | plain pulsar-rs consumer | plain consumer, feeder's client | feeder | feeder / pulsar-rs | feeder / feeder's client | plain Python consumer (pulsar-lite) | feeder (pulsar-lite) | feeder / Python |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (kind, plain, wire, feeder)) in table.into_iter().enumerate() {
        let lite = match lite_table.get(i) {
            Some((p, f)) => format!("{:.1} k/s | {:.1} k/s | {:.2}", p / 1000.0, f / 1000.0, f / p),
            None => "- | - | -".to_string(),
        };
        println!(
            "| {kind} | {:.1} k/s | {:.1} k/s | {:.1} k/s | {:.2} | {:.2} | {lite} |",
            plain / 1000.0,
            wire / 1000.0,
            feeder / 1000.0,
            feeder / plain,
            feeder / wire
        );
    }
}
