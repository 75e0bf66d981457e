//! A `timeline serve` process for tests, on a free loopback port.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod feeder;
pub mod golem;
pub mod pulsar_lite;

use serde_json::Value;
use timeline::{CompiledPlan, ExecutionPlan};

pub struct Server {
    child: Child,
    pub base: String,
    pub dir: PathBuf,
}

impl Server {
    /// Starts the server on `dir` and waits until it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_at(dir, "127.0.0.1:0", extra)
    }

    /// Starts the server on `dir`, listening on `listen`.
    pub fn start_at(dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_timeline-under-test"))
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start timeline serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            if let Some(at) = line.find("serving on http://") {
                break line[at + "serving on ".len()..].trim().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base,
            dir: dir.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

/// Status and JSON body of a response, errors included.
pub fn call(result: Result<ureq::Response, ureq::Error>) -> (u16, serde_json::Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, body)
}

pub const CIRR: &str = include_str!("../../examples/cirr.tl");

/// Every temporal operator beyond the article over the orders example's
/// stream (`examples/unpaid-orders.jsonl`).
pub const ORDERS: &str = r#"from orders key order;
let placed = status == "placed";
let paid = status == "paid";
unpaid = absent_after(placed, paid, 10m);
in_time = sequence(placed, paid, within(10m));
quiet = time_since(placed || paid) > 5m;
was = previous(latest_event_to_state(status));
recently_paid = true_within(has_existed(paid), 2m);
let waiting = has_existed(placed) && !has_existed(paid);
waited = duration_where(waiting, sliding(10m));
waits = count_where(waiting, tumbling(10m));
waited_per_window = duration_where(waiting, tumbling(10m));"#;

/// The lines of the orders example.
pub fn order_lines() -> Vec<String> {
    include_str!("../../examples/unpaid-orders.jsonl")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The card-swipes example: a job on the stream `cards`, keyed by `card`.
pub const CARDS: &str = include_str!("../../examples/card-swipes.tl");

/// Generated card swipes keyed by `card`, on the same key values as
/// [`generated_cirr`]'s sessions (`session-000000`, ...).
pub fn generated_swipes(cards: u64, seed: u64) -> Vec<String> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut lines = Vec::new();
    for card in 0..cards {
        for i in 0..rng.random_range(1..6) {
            let suburb = ["Newtown", "Parramatta", "Bondi"][rng.random_range(0..3)];
            let kind = if rng.random_bool(0.8) { "swipe" } else { "refund" };
            let time = rng.random_range(0..3_600_000);
            lines.push(format!(
                r#"{{"card":"session-{card:06}","time":{time},"event_id":"w{card}-{i}","kind":"{kind}","suburb":"{suburb}"}}"#
            ));
        }
    }
    lines
}

/// Generated CIRR sessions (5% late and 5% repeated events), one JSON line each.
pub fn generated_cirr(sessions: u64, seed: u64) -> Vec<String> {
    let mut data = Vec::new();
    timeline_local::generate::write_cirr(
        &timeline_local::generate::CirrOptions {
            sessions,
            seed,
            late: 0.05,
            duplicates: 0.05,
        },
        &mut data,
    )
    .unwrap();
    String::from_utf8(data).unwrap().lines().map(str::to_string).collect()
}

/// Every per-key node's output for every key, as `timeline eval`'s code
/// computes them from `lines`: per key, (node, output) in plan order.
pub fn per_key_outputs(query: &str, lines: &[String]) -> BTreeMap<String, Vec<(String, timeline::Output)>> {
    let plan = plan_of(query);
    let parser = plan.stream.parser();
    let plan = CompiledPlan::new(plan);
    let mut keys: BTreeMap<String, Vec<timeline::LeafState>> = BTreeMap::new();
    for line in lines {
        let e = parser.parse(line).unwrap();
        let states = keys.entry(e.key.to_string()).or_insert_with(|| plan.new_leaf_states());
        plan.apply(states, &e);
    }
    keys.into_iter()
        .map(|(k, states)| {
            let nodes = plan
                .evaluation()
                .nodes()
                .iter()
                .map(|n| n.to_string())
                .zip(plan.evaluate(&states))
                .collect();
            (k, nodes)
        })
        .collect()
}

/// The plan a server gives `query` (on its stream, with its node ids) when no
/// other job runs.
pub fn plan_of(query: &str) -> ExecutionPlan {
    timeline::registry::JobRegistry::new()
        .submit(Some("q"), query)
        .unwrap()
        .job()
        .plan
        .clone()
}

/// Every node's timeline per key, as `timeline eval`'s code computes it.
pub fn expected(query: &str, lines: &[String]) -> BTreeMap<String, Vec<(String, Value)>> {
    per_key_outputs(query, lines)
        .into_iter()
        .map(|(k, nodes)| {
            let nodes = nodes
                .into_iter()
                .map(|(n, o)| (n, serde_json::to_value(o.timeline.clip(None, None)).unwrap()))
                .collect();
            (k, nodes)
        })
        .collect()
}

/// Keeps reading `stream` (a child's stderr) into the returned log, so the
/// child never blocks on a full pipe.
pub fn drain(stream: impl std::io::Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}
