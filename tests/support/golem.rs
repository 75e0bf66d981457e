//! The Golem host (`golem-host`) as a child process serving the built
//! components, and the calls tests make to it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{agent, call};

/// A `golem-host` process on a free loopback port.
pub struct GolemHost {
    child: Child,
    /// `http://localhost:PORT`: requests name the deployment's host.
    pub base: String,
    log: Arc<Mutex<String>>,
}

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl GolemHost {
    /// Starts the host on the workspace's `golem.yaml` and built components.
    pub fn start() -> GolemHost {
        let root = root();
        let mut child = Command::new(env!("CARGO_BIN_EXE_golem-host-under-test"))
            .args(["--listen", "127.0.0.1:0", "--manifest"])
            .arg(root.join("golem.yaml"))
            .arg("--target-dir")
            .arg(std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into))
            .env("RUST_LOG", "golem_host=info,warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start golem-host");
        let log = super::drain(child.stderr.take().unwrap());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(at) = line.find("serving on http://") {
                        break line[at + "serving on http://".len()..].trim().to_string();
                    }
                }
                _ => {
                    let _ = child.wait();
                    panic!(
                        "golem-host exited before serving (are the components built? scripts/build-components.sh):\n{}",
                        log.lock().unwrap()
                    );
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let port = addr.rsplit(':').next().unwrap().to_string();
        GolemHost {
            child,
            base: format!("http://localhost:{port}"),
            log,
        }
    }

    /// What the host logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path`: status and JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        call(agent().get(&self.url(path)).call())
    }

    /// `POST path` with a JSON body: status and JSON body.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        call(agent().post(&self.url(path)).send_json(body))
    }

    /// Starts job `name` through its `Driver` agent; its plan.
    pub fn submit(&self, name: &str, query: &str) -> Value {
        let (status, plan) = self.post(&format!("/v1/driver/{name}"), json!({ "query": query }));
        assert_eq!(status, 200, "{plan}");
        plan
    }

    /// Restarts every agent from its snapshot: (agents, from a snapshot).
    pub fn restart(&self) -> (u64, u64) {
        let (status, body) = self.post("/_golem-host/restart", json!({}));
        assert_eq!(status, 200, "{body}\n{}", self.log());
        (
            body["restarted"].as_u64().unwrap(),
            body["from_snapshot"].as_u64().unwrap(),
        )
    }

    /// What the agents did so far (`golem_host::Stats` as JSON).
    pub fn stats(&self) -> Value {
        self.get("/_golem-host/stats").1
    }
}

impl Drop for GolemHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A timeline value as Golem's JSON mapping shows it (`{"Int": "13000"}`:
/// 64-bit integers are strings), as the local runtime's JSON shows it.
pub fn scalar(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Object(o) if o.len() == 1 => {
            let (case, v) = o.iter().next().unwrap();
            match (case.as_str(), v) {
                ("Int", Value::String(s)) => json!(s.parse::<i64>().unwrap()),
                ("Int" | "Float" | "Bool" | "Str", v) => v.clone(),
                _ => panic!("not a scalar value: {value}"),
            }
        }
        other => panic!("not a scalar value: {other}"),
    }
}

/// A 64-bit integer of Golem's JSON (a string), or null.
pub fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.parse().unwrap()),
        Value::Number(n) => n.as_i64(),
        other => panic!("not an integer: {other}"),
    }
}
