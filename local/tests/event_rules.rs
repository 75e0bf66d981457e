//! The contract's event rules through `timeline eval` and `timeline serve`:
//! event times bounded to [-2^62, 2^62] ms, durations that saturate, and
//! equal values as one state.

use std::io::Write;
use std::process::{Command, Output};

/// Runs `timeline eval` over `lines` with `args`.
fn eval(query: &str, lines: &[&str], args: &[&str]) -> Output {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_timeline"))
        .args(["eval", "-q", query, "-e"])
        .arg(file.path())
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const BUFFERING: &str = r#"duration_where(latest_event_to_state(s) == "buffer")"#;

#[test]
fn times_beyond_the_bounds_are_rejected_per_line_and_the_rest_is_kept() {
    let out = eval(
        BUFFERING,
        &[
            r#"{"session_id":"k","time":-9000000000000000000,"s":"buffer"}"#,
            r#"{"session_id":"k","time":9000000000000000000,"s":"stop"}"#,
            r#"{"session_id":"k","time":9223372036854775808,"s":"stop"}"#,
            r#"{"session_id":"k","time":0,"s":"buffer"}"#,
            r#"{"session_id":"k","time":10,"s":"stop"}"#,
        ],
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    for line in ["line 1", "line 2", "line 3"] {
        assert!(stderr.contains(line), "{stderr}");
    }
    assert_eq!(stderr.matches("out of range").count(), 3, "{stderr}");
    assert!(stderr.contains("[-2^62, 2^62]"), "{stderr}");
    assert!(!stderr.contains("whole number"), "{stderr}");
    assert!(stdout.contains(r#""value":10"#), "{stdout}");
}

#[test]
fn durations_at_the_bounds_saturate() {
    let out = eval(
        BUFFERING,
        &[
            r#"{"session_id":"k","time":-4611686018427387904,"s":"buffer"}"#,
            r#"{"session_id":"k","time":4611686018427387904,"s":"stop"}"#,
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!(r#""value":{}"#, i64::MAX)), "{stdout}");
}

#[test]
fn an_at_beyond_the_bounds_is_refused_naming_them() {
    let out = eval(
        BUFFERING,
        &[r#"{"session_id":"k","time":0,"s":"buffer"}"#],
        &["--at", "9223372036854775808"],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("out of range") && stderr.contains("2^62"), "{stderr}");
}

#[test]
fn equal_values_are_one_state_through_eval() {
    // 2 then 2.0 keeps the state; 1 then true changes it.
    let query = "duration_in_cur_state(latest_event_to_state(x))";
    let equal = [
        r#"{"session_id":"k","time":0,"x":2}"#,
        r#"{"session_id":"k","time":10,"x":2.0}"#,
    ];
    let stdout = text(&eval(query, &equal, &["--at", "15"]).stdout);
    assert!(stdout.contains(r#""value":15"#), "{stdout}");
    let other_types = [
        r#"{"session_id":"k","time":0,"x":1}"#,
        r#"{"session_id":"k","time":10,"x":true}"#,
    ];
    let stdout = text(&eval(query, &other_types, &["--at", "15"]).stdout);
    assert!(stdout.contains(r#""value":5"#), "{stdout}");
}

/// A `timeline serve` on a free port with a temporary data directory, killed on drop.
struct Server {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_timeline"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    for _ in 0..200 {
        if ureq::get(&format!("{}/v1/health", server.base)).call().is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the server did not come up");
}

/// The status and body of a request, errors included.
fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn serve_rejects_times_beyond_the_bounds_in_events_and_parameters() {
    let server = serve();
    let (status, body) = answer(ureq::post(&format!("{}/v1/jobs?name=b", server.base)).send_string(BUFFERING));
    assert!(status < 300, "{status} {body}");
    let events = [
        r#"{"session_id":"k","time":-9000000000000000000,"s":"buffer"}"#,
        r#"{"session_id":"k","time":0,"s":"buffer"}"#,
        r#"{"session_id":"k","time":10,"s":"stop"}"#,
    ]
    .join("\n");
    let (_, body) = answer(ureq::post(&format!("{}/v1/events", server.base)).send_string(&events));
    assert!(body.contains("out of range"), "{body}");
    let result = format!("{}/v1/jobs/b/keys/k/result", server.base);
    let (status, body) = answer(ureq::get(&result).call());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""value":10"#), "{body}");
    let (status, body) = answer(ureq::get(&format!("{result}?t=9223372036854775808")).call());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("out of range") && body.contains("2^62"), "{body}");
}
