//! Hostile queries against the real binary: each is refused with a 400 that
//! names the limit (and the server keeps answering), a long `let` chain is
//! planned in a response linear in its size, and `timeline plan` / `eval`
//! refuse the same queries with exit status 1 and the same message.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `timeline serve` on a free port and a temporary data directory, killed on drop.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_timeline"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start timeline serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            if let Some(at) = line.find("serving on http://") {
                break line[at + "serving on ".len()..].trim().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base, _dir: dir }
    }

    /// Submits `query` as job `name`: status, body as JSON, body length.
    fn submit(&self, name: &str, query: &str) -> (u16, Value, usize) {
        let url = format!("{}/v1/jobs?name={name}", self.base);
        let response = match agent().post(&url).send_string(query) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{name}: {e} (did the server die?)"),
        };
        let status = response.status();
        let text = response.into_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), text.len())
    }

    fn assert_healthy(&self) {
        let response = agent()
            .get(&format!("{}/v1/health", self.base))
            .call()
            .expect("the server still answers");
        assert_eq!(response.status(), 200);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

/// The repros, with the code each must be refused with.
fn repros() -> Vec<(&'static str, String, &'static str)> {
    let chain = |op: &str| format!("duration_where({})", vec!["has_existed(a == 1)"; 1400].join(op));
    let wide: String = (0..30)
        .map(|i| format!("let v{i} = {};\n", vec!["x"; 200].join(" && ")))
        .collect();
    vec![
        (
            "nots",
            format!("duration_where({}has_existed(a == 1))", "!".repeat(1400)),
            "query_too_deep",
        ),
        ("ands", chain(" && "), "query_too_deep"),
        ("ors", chain(" || "), "query_too_deep"),
        ("parens", "(".repeat(60_000), "query_too_deep"),
        ("huge", "(".repeat(100_000), "query_too_large"),
        ("wide", wide, "query_too_complex"),
    ]
}

#[test]
fn each_repro_is_a_400_naming_the_limit_and_the_server_survives() {
    let server = Server::start();
    for (name, query, code) in repros() {
        let (status, body, _) = server.submit(name, &query);
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("query too"), "{name}: {message}");
        assert!(body["error"]["line"].as_u64().is_some_and(|l| l >= 1), "{name}: {body}");
        server.assert_healthy();
    }
    // A query within the limits is still accepted.
    let (status, body, _) = server.submit("fine", "duration_where(has_existed(a == 1))");
    assert_eq!(status, 201, "{body}");
}

#[test]
fn a_long_let_chain_is_planned_in_a_response_linear_in_its_size() {
    // 1,000 lets took over 3 GB and 19 s: every node embedded its subtree.
    let mut query = String::from("let v1 = has_existed(a == 1);\n");
    for i in 2..=1000 {
        query.push_str(&format!("let v{i} = v{} && has_existed(a == {i});\n", i - 1));
    }
    query.push_str("duration_where(v1000)");
    let server = Server::start();
    let started = Instant::now();
    let (status, body, length) = server.submit("chain", &query);
    assert_eq!(status, 201, "{body}");
    let nodes = body["plan"]["nodes"].as_array().map_or(0, Vec::len);
    assert_eq!(nodes, 2000, "{}", &body.to_string()[..500]);
    assert!(length < 400 * nodes, "{length} bytes for {nodes} nodes");
    eprintln!("let chain of 1,000: {length} bytes in {:?}", started.elapsed());
    server.assert_healthy();
}

/// Runs `timeline args...`: exit status and stderr.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_timeline"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn plan_and_eval_refuse_the_repros_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "{\"session_id\":\"k\",\"time\":0,\"a\":1}\n").unwrap();
    let events = events.to_str().unwrap();
    for (name, query, code) in repros() {
        let file = dir.path().join(format!("{name}.tl"));
        std::fs::write(&file, &query).unwrap();
        let at_file = format!("@{}", file.display());
        let wanted = match code {
            "query_too_deep" => "query too deep",
            "query_too_large" => "query too large",
            _ => "query too complex",
        };
        for args in [
            vec!["plan", "--query", &at_file],
            vec!["eval", "--query", &at_file, "--events", events],
        ] {
            let (status, stderr) = run(&args);
            assert_eq!(status, Some(1), "{name} {args:?}: {stderr}");
            assert!(stderr.contains(wanted), "{name} {args:?}: {stderr}");
            assert!(stderr.contains(&format!("{name}.tl:")), "{name}: position: {stderr}");
        }
    }
}
