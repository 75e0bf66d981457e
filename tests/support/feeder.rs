//! The feeder as a child process, a producer, and result checks.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pulsar::{Pulsar, TokioExecutor, producer};
use serde_json::Value;

use super::{Server, agent, call, expected};

/// A `feeder` process whose log is kept for assertions and failure reports.
pub struct Feeder {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Feeder {
    /// Starts `feeder` with `args` (plus `--metrics-addr off` unless given).
    pub fn start(args: &[&str]) -> Feeder {
        let mut command = Command::new(env!("CARGO_BIN_EXE_feeder-under-test"));
        command.args(args);
        if !args.contains(&"--metrics-addr") {
            command.args(["--metrics-addr", "off"]);
        }
        let mut child = command
            .env("RUST_LOG", "info,pulsar=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the feeder");
        let log = super::drain(child.stderr.take().unwrap());
        Feeder { child, log }
    }

    /// The arguments that point a feeder at `broker` and `server`.
    pub fn args<'a>(broker: &'a str, server: &'a Server, topic: &'a str) -> Vec<String> {
        [
            "--service-url",
            broker,
            "--topic",
            topic,
            "--target",
            &server.base,
            "--linger",
            "5ms",
            "--refresh",
            "200ms",
            "--max-backoff",
            "500ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: nothing is finished or acknowledged.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit on its own.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        (status, self.log())
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publishes `payloads` in order, keyed by their `session_id` when they have one.
pub async fn produce(url: &str, topic: &str, payloads: &[String]) {
    let pulsar = Pulsar::builder(url, TokioExecutor).build().await.expect("connect");
    let mut producer = pulsar
        .producer()
        .with_topic(topic)
        .with_options(producer::ProducerOptions {
            block_queue_if_full: true,
            ..Default::default()
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
        if receipts.len() >= 500 {
            for r in receipts.drain(..) {
                r.await.expect("receipt");
            }
        }
    }
    for r in receipts {
        r.await.expect("receipt");
    }
}

/// CIRR sessions as JSON lines, late and repeated events included.
pub fn cirr(sessions: u64, seed: u64) -> Vec<String> {
    let options = timeline_local::generate::CirrOptions {
        sessions,
        seed,
        late: 0.05,
        duplicates: 0.03,
    };
    let mut out = Vec::new();
    timeline_local::generate::write_cirr(&options, &mut out).unwrap();
    String::from_utf8(out).unwrap().lines().map(str::to_string).collect()
}

/// The same events without `event_id`, and with ties: every fifth event is
/// followed by another at the same time with another player state. Without
/// ids, delivering an event twice after its tie would change the state the
/// key is in; with the ids the feeder gives, it does not.
pub fn without_ids_with_ties(lines: &[String]) -> Vec<String> {
    let states = ["play", "buffer", "pause"];
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v.as_object_mut().unwrap().remove("event_id");
        out.push(v.to_string());
        if i % 5 == 0 {
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| k == "session_id" || k == "time");
            v["playerStateChange"] = Value::from(states[i % 3]);
            out.push(v.to_string());
        }
    }
    out
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

/// Asserts that every node's timeline for every key of `lines` equals what
/// `timeline eval`'s code computes over the same events.
pub fn assert_results(server: &Server, query: &str, lines: &[String]) {
    if let Err(e) = check_results(server, query, lines) {
        panic!("{e}");
    }
}

/// Compares every node's timeline for every key of `lines` with what
/// `timeline eval`'s code computes; the first difference is the error.
pub fn check_results(server: &Server, query: &str, lines: &[String]) -> Result<(), String> {
    let expected = expected(query, lines);
    assert!(!expected.is_empty());
    for (key, nodes) in &expected {
        for (node, spans) in nodes {
            let (status, body) = call(
                agent()
                    .get(&server.url(&format!("/v1/workers/{node}/{key}/timeline")))
                    .call(),
            );
            if status != 200 {
                return Err(format!("key {key}, node {node}: {status} {body}"));
            }
            if &body["spans"] != spans {
                return Err(format!(
                    "key {key}, node {node}:\n  got      {}\n  expected {spans}",
                    body["spans"]
                ));
            }
        }
    }
    Ok(())
}

/// Submits a job.
pub fn submit(server: &Server, name: &str, query: &str) -> Value {
    let (status, body) = call(
        agent()
            .post(&server.url("/v1/jobs"))
            .send_json(serde_json::json!({"name": name, "query": query})),
    );
    assert!(status == 201 || status == 200, "{body}");
    body
}
