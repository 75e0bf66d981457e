//! The real `timeline` binary, started on a data directory and killed on drop.

#![allow(dead_code)]

use std::io::Write;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub mod cirr;

pub struct Server {
    child: Child,
    pub base: String,
    /// What the server logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `timeline serve` on `dir` with `extra` arguments.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Starts `timeline serve` on `dir` with `extra` arguments.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(dir, extra, &[])
    }

    /// Starts `timeline serve` on `dir` with `extra` arguments and
    /// environment variables `env`.
    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_timeline"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .envs(env.iter().copied())
            .env(timeline_local::store::FAULTS_ENV, "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start timeline serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let base = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            log.lock().unwrap().push(line.clone());
            if let Some(at) = line.find("serving on http://") {
                break line[at + "serving on ".len()..].trim().to_string();
            }
        };
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        Server { child, base, log }
    }

    /// A request; the status and the JSON body (null if none).
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let response = self.send(method, path, body);
        (response.status(), response.into_json().unwrap_or(Value::Null))
    }

    /// A request; the status and the body as sent, errors included.
    pub fn raw(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let response = self.send(method, path, body);
        (response.status(), response.into_string().unwrap())
    }

    /// A request; its status and body, or none when the connection failed.
    pub fn call_lenient(&self, method: &str, path: &str, body: Option<&str>) -> (Option<u16>, Value) {
        let request = ureq::request(method, &format!("{}{path}", self.base));
        let response = match body {
            Some(b) => request.send_string(b),
            None => request.call(),
        };
        match response {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (Some(r.status()), r.into_json().unwrap_or(Value::Null)),
            Err(_) => (None, Value::Null),
        }
    }

    /// A request's response, whatever its status.
    fn send(&self, method: &str, path: &str, body: Option<&str>) -> ureq::Response {
        let request = ureq::request(method, &format!("{}{path}", self.base));
        let response = match body {
            Some(b) => request.send_string(b),
            None => request.call(),
        };
        match response {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
}

impl Server {
    /// The logged lines that contain `text`.
    pub fn logged(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }

    /// SIGTERM, then waits for the server to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
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

/// Runs `command` with `input` on its standard input; its output.
pub fn output_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}
