//! A `timeline serve` in this process, the `feeder` binary as a child
//! process, a producer, and polling; [`fake_http`]: a fake changes stream
//! and a webhook receiver.
#![allow(dead_code)]

pub mod fake_http;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pulsar::{Pulsar, TokioExecutor, producer};
use serde_json::Value;

/// A free port of 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `timeline serve` on its own runtime and thread, with its data in `dir`;
/// returns its base URL once it answers.
pub fn start_server(dir: &std::path::Path) -> String {
    let addr = free_addr();
    let config = timeline_local::http::ServeConfig {
        max_batch_events: 100_000,
        ..timeline_local::http::ServeConfig::new(addr, dir.to_path_buf())
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(timeline_local::http::serve(config))
            .unwrap();
    });
    let base = format!("http://{addr}");
    wait_until(
        "the server to start",
        30,
        || ureq::get(&format!("{base}/v1/health")).call().is_ok(),
        String::new,
    );
    base
}

/// The events the runtime stores for `key` of the default stream.
pub fn stored_events(base: &str, key: &str) -> Vec<Value> {
    let body: Value = ureq::get(&format!("{base}/v1/keys/{key}/events"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    match body {
        Value::Array(events) => events,
        other => other["events"].as_array().cloned().unwrap_or_default(),
    }
}

/// A `feeder` process whose standard error is kept.
pub struct Feeder {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Feeder {
    /// Starts `feeder` on `topic` of the broker at `url`, delivering to
    /// `target`, with `extra` arguments.
    pub fn start(url: &str, topic: &str, target: &str, extra: &[&str]) -> Feeder {
        let mut args = vec!["--service-url", url, "--target", target];
        if !topic.is_empty() {
            args.extend(["--topic", topic]);
        }
        args.extend(["--linger", "5ms", "--refresh", "200ms", "--max-backoff", "500ms"]);
        args.extend(extra);
        if !extra.contains(&"--metrics-addr") {
            args.extend(["--metrics-addr", "off"]);
        }
        Feeder::spawn(&args, &[])
    }

    /// Starts `feeder` with exactly `args`, and `env` on top of the tests'.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Feeder {
        Feeder::spawn_bin(env!("CARGO_BIN_EXE_feeder"), args, env)
    }

    /// As [`Feeder::spawn`], with the `feeder` binary at `bin`.
    pub fn spawn_bin(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Feeder {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info,pulsar=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the feeder");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Feeder { child, log }
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its exit code once it has exited, waiting up to `secs`; panics with
    /// its log if it still runs then.
    pub fn exit_code(&mut self, secs: u64) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The log thread reads to the end of standard error.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("the feeder still runs after {secs} s\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `payloads` in order to `topic`, keyed by their `session_id`,
/// with the producer `options` (compression, batching).
pub async fn produce(url: &str, topic: &str, payloads: &[String], options: producer::ProducerOptions) {
    let batching = options.batch_size.is_some();
    let pulsar = Pulsar::builder(url, TokioExecutor).build().await.expect("connect");
    let mut producer = pulsar
        .producer()
        .with_topic(topic)
        .with_options(producer::ProducerOptions {
            block_queue_if_full: true,
            ..options
        })
        .build()
        .await
        .expect("producer");
    let mut receipts = Vec::new();
    for payload in payloads {
        let key = serde_json::from_str::<Value>(payload)
            .ok()
            .and_then(|v| v.get("session_id").and_then(Value::as_str).map(str::to_string));
        let message = producer::Message {
            payload: payload.clone().into_bytes(),
            partition_key: key,
            ..Default::default()
        };
        receipts.push(producer.send_non_blocking(message).await.expect("send"));
    }
    if batching {
        producer.send_batch().await.expect("flush the last batch");
    }
    for r in receipts {
        r.await.expect("receipt");
    }
}

/// CIRR sessions as JSON lines (late and repeated events included), each
/// key prefixed with `prefix`.
pub fn cirr(sessions: u64, seed: u64, prefix: &str) -> Vec<String> {
    let options = timeline_local::generate::CirrOptions {
        sessions,
        seed,
        late: 0.05,
        duplicates: 0.03,
    };
    let mut out = Vec::new();
    timeline_local::generate::write_cirr(&options, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            let key = format!("{prefix}{}", v["session_id"].as_str().unwrap());
            v["session_id"] = Value::from(key);
            v.to_string()
        })
        .collect()
}

/// The distinct event ids of each key of `lines`.
pub fn ids_by_key(lines: &[String]) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap();
        out.entry(v["session_id"].as_str().unwrap().to_string())
            .or_default()
            .insert(v["event_id"].as_str().unwrap().to_string());
    }
    out
}

/// Asserts that the runtime stores every event of `lines`, each once.
pub fn assert_stored(base: &str, lines: &[String], what: &str) {
    for (key, ids) in ids_by_key(lines) {
        let stored: std::collections::BTreeSet<String> = stored_events(base, &key)
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_string))
            .collect();
        assert_eq!(stored, ids, "{what}: the events of key {key}");
    }
}

/// Polls `done` every 50 ms; panics with `what` and `context()` after `secs`.
pub fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("timed out waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of counter `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}
