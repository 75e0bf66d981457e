//! The HTTP surface of `timeline serve` against hostile clients, over real
//! HTTP on the real binary: foreign hosts (DNS rebinding), cross-site
//! requests, empty tokens, slow clients, bad parameters and oversized keys.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `timeline serve` on a free loopback port and a temporary data dir,
/// killed when dropped.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_timeline"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("TIMELINE_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start timeline serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            if let Some(at) = line.find("serving on http://") {
                break line[at + "serving on http://".len()..].trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, headers' access and JSON body of a response, errors included.
fn call(request: ureq::Request, body: Option<&str>) -> (u16, ureq::Response) {
    let result = match body {
        Some(body) => request.send_string(body),
        None => request.call(),
    };
    match result {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(status, r)) => (status, r),
        Err(e) => panic!("request failed: {e}"),
    }
}

fn json(response: ureq::Response) -> Value {
    let text = response.into_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn error_code(response: ureq::Response) -> String {
    let body = json(response);
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error envelope: {body}"))
        .to_string()
}

const QUERY: &str = "has_existed(a == 1)";

#[test]
fn a_foreign_host_is_refused_and_an_allowed_one_served() {
    let server = Server::start(&[]);
    let (status, r) = call(ureq::get(&server.url("/v1/health")).set("Host", "evil.example"), None);
    assert_eq!(status, 403);
    let body = json(r);
    assert_eq!(body["error"]["code"], "forbidden_host");
    assert!(body["error"]["message"].as_str().unwrap().contains("--allow-host"));
    let rebinding = format!("evil.example:{}", server.port());
    let (status, _) = call(
        ureq::post(&server.url("/v1/jobs?name=j")).set("Host", &rebinding),
        Some(QUERY),
    );
    assert_eq!(status, 403);
    for host in [format!("localhost:{}", server.port()), server.addr.clone()] {
        let (status, _) = call(ureq::get(&server.url("/v1/health")).set("Host", &host), None);
        assert_eq!(status, 200, "{host}");
    }

    let allowed = Server::start(&["--allow-host", "timeline.internal"]);
    let (status, _) = call(
        ureq::get(&allowed.url("/v1/health")).set("Host", "timeline.internal:443"),
        None,
    );
    assert_eq!(status, 200);
    let any = Server::start(&["--allow-host", "*"]);
    let (status, _) = call(ureq::get(&any.url("/v1/health")).set("Host", "evil.example"), None);
    assert_eq!(status, 200);
}

#[test]
fn cross_origin_writes_are_refused_while_same_origin_and_plain_clients_work() {
    let server = Server::start(&[]);
    // What a page on another site can send without a preflight.
    for path in ["/v1/jobs?name=evil", "/v1/events"] {
        let (status, r) = call(
            ureq::post(&server.url(path))
                .set("Origin", "http://evil.example")
                .set("Content-Type", "text/plain"),
            Some(QUERY),
        );
        assert_eq!(status, 403, "{path}");
        let body = json(r);
        assert_eq!(body["error"]["code"], "cross_origin");
        assert!(body["error"]["message"].as_str().unwrap().contains("--allow-origin"));
    }
    let (status, r) = call(
        ureq::get(&server.url("/v1/jobs")).set("Sec-Fetch-Site", "cross-site"),
        None,
    );
    assert_eq!((status, error_code(r).as_str()), (403, "cross_origin"));
    // Nothing was created.
    let (_, r) = call(ureq::get(&server.url("/v1/jobs")), None);
    assert_eq!(json(r)["jobs"].as_array().unwrap().len(), 0);

    // The dashboard's own requests (same origin) and curl (no Origin) work.
    let own = server.url("");
    let (status, _) = call(
        ureq::post(&server.url("/v1/jobs?name=mine"))
            .set("Origin", &own)
            .set("Sec-Fetch-Site", "same-origin"),
        Some(QUERY),
    );
    assert_eq!(status, 201);
    // Behind a TLS proxy the page's origin is https, its host the same.
    let (status, _) = call(
        ureq::post(&server.url("/v1/jobs?name=proxied")).set("Origin", &format!("https://{}", server.addr)),
        Some(QUERY),
    );
    assert_eq!(status, 201);
    let (status, _) = call(ureq::post(&server.url("/v1/jobs?name=curl")), Some(QUERY));
    assert_eq!(status, 201);
    let (status, r) = call(
        ureq::post(&server.url("/v1/events")),
        Some(r#"{"session_id": "s", "time": 1, "a": 1}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(json(r)["accepted"], 1);
    // A link followed from another site still opens the dashboard.
    let (status, _) = call(
        ureq::get(&server.url("/"))
            .set("Sec-Fetch-Site", "cross-site")
            .set("Sec-Fetch-Mode", "navigate"),
        None,
    );
    assert_eq!(status, 200);
}

#[test]
fn an_allowed_origin_gets_cors_headers_and_its_preflight_answered() {
    let origin = "https://app.example";
    let server = Server::start(&["--allow-origin", origin]);
    let (status, r) = call(
        ureq::request("OPTIONS", &server.url("/v1/jobs?name=j"))
            .set("Origin", origin)
            .set("Access-Control-Request-Method", "POST")
            .set("Access-Control-Request-Headers", "content-type"),
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert!(r.header("access-control-allow-methods").unwrap().contains("POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("content-type"));

    let (status, r) = call(
        ureq::post(&server.url("/v1/jobs?name=j"))
            .set("Origin", origin)
            .set("Content-Type", "text/plain"),
        Some(QUERY),
    );
    assert_eq!(status, 201);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    // Another origin still is not.
    let (status, r) = call(
        ureq::post(&server.url("/v1/jobs?name=k")).set("Origin", "https://other.example"),
        Some(QUERY),
    );
    assert_eq!(status, 403);
    assert!(r.header("access-control-allow-origin").is_none());
}

#[test]
fn an_empty_token_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env) in [
        (vec!["--token", ""], None),
        (vec![], Some("")),
        (vec!["--token", "  "], None),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_timeline"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(&args);
        match env {
            Some(value) => command.env("TIMELINE_TOKEN", value),
            None => command.env_remove("TIMELINE_TOKEN"),
        };
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server started with an empty token: {args:?} {env:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{args:?} {env:?}");
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(stderr.contains("token") && stderr.contains("empty"), "{stderr}");
    }
}

#[test]
fn the_token_is_checked() {
    let server = Server::start(&["--token", "s3cret"]);
    for given in [None, Some("Bearer s3cre"), Some("Bearer s3cret2"), Some("Bearer ")] {
        let mut request = ureq::get(&server.url("/v1/jobs"));
        if let Some(given) = given {
            request = request.set("Authorization", given);
        }
        let (status, r) = call(request, None);
        assert_eq!((status, error_code(r).as_str()), (401, "unauthorized"), "{given:?}");
    }
    let (status, _) = call(
        ureq::get(&server.url("/v1/jobs")).set("Authorization", "Bearer s3cret"),
        None,
    );
    assert_eq!(status, 200);
}

/// Reads until the server closes the connection; how long that took.
fn time_to_close(mut stream: TcpStream) -> (Duration, Vec<u8>) {
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    (start.elapsed(), got)
}

#[test]
fn slow_and_idle_clients_are_cut_off() {
    let server = Server::start(&["--header-timeout", "1", "--idle-timeout", "3", "--body-timeout", "1"]);
    let host = &server.addr;
    // Headers that never end.
    let mut slow = TcpStream::connect(host).unwrap();
    write!(slow, "GET /v1/health HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").unwrap();
    let (took, got) = time_to_close(slow);
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));

    // An idle keep-alive connection outlives the header timeout, not the
    // idle one.
    let mut idle = TcpStream::connect(host).unwrap();
    write!(idle, "GET /v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut first = [0; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    std::thread::sleep(Duration::from_millis(1500));
    write!(
        idle,
        "GET /v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (_, got) = time_to_close(idle);
    assert_eq!(String::from_utf8_lossy(&got).matches("HTTP/1.1 200").count(), 1);
    let idle = TcpStream::connect(host).unwrap();
    let (took, _) = time_to_close(idle);
    assert!(
        took > Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // A body that trickles.
    let mut trickle = TcpStream::connect(host).unwrap();
    write!(
        trickle,
        "POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    let (took, got) = time_to_close(trickle);
    let got = String::from_utf8_lossy(&got);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains(r#""code":"timeout""#), "{got}");
}

#[test]
fn bad_query_parameters_get_the_json_envelope() {
    let server = Server::start(&[]);
    let (status, _) = call(ureq::post(&server.url("/v1/jobs?name=j")), Some(QUERY));
    assert_eq!(status, 201);
    for path in [
        "/v1/jobs/j/keys?limit=-1",
        "/v1/jobs/j/keys?limit=x",
        "/v1/jobs/j/results?limit=-1",
        "/v1/jobs?name=j&strict=maybe",
    ] {
        let request = if path.starts_with("/v1/jobs?") {
            call(ureq::post(&server.url(path)), Some(QUERY))
        } else {
            call(ureq::get(&server.url(path)), None)
        };
        let (status, r) = request;
        assert_eq!(status, 400, "{path}");
        let body = json(r);
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("limit") || message.contains("strict"), "{message}");
    }
}

#[test]
fn a_query_error_without_help_has_no_null_help() {
    let server = Server::start(&[]);
    let (status, r) = call(ureq::post(&server.url("/v1/jobs?name=j")), Some("has_existed(a == "));
    assert_eq!(status, 400);
    let body = json(r);
    assert_eq!(body["error"]["code"], "bad_query");
    assert!(body["error"].get("help").is_none_or(Value::is_string), "{body}");
}

#[test]
fn a_too_long_key_is_refused_and_the_good_events_kept() {
    let server = Server::start(&[]);
    let (status, _) = call(ureq::post(&server.url("/v1/jobs?name=j")), Some(QUERY));
    assert_eq!(status, 201);
    let long = "k".repeat(1025);
    let longest = "k".repeat(1024);
    let body = format!(
        "{{\"session_id\": \"{long}\", \"time\": 1, \"a\": 1}}\n\
         {{\"session_id\": \"{longest}\", \"time\": 1, \"a\": 1}}\n\
         {{\"session_id\": \"s\", \"time\": 2, \"a\": 1}}\n"
    );
    let (status, r) = call(ureq::post(&server.url("/v1/events")), Some(&body));
    assert_eq!(status, 200);
    let body = json(r);
    assert_eq!(body["accepted"], 2, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["line"], 1);
    assert!(rejected[0]["error"].as_str().unwrap().contains("1024"), "{body}");
    // Every stored key reads back, the longest included.
    for key in [longest.as_str(), "s"] {
        let (status, r) = call(ureq::get(&server.url(&format!("/v1/jobs/j/keys/{key}/result"))), None);
        assert_eq!(status, 200, "key of {} bytes", key.len());
        assert_eq!(json(r)["value"], true);
    }
    // A long key in the URL is refused the same way.
    let (status, r) = call(
        ureq::post(&server.url(&format!("/v1/keys/{long}/events"))),
        Some(r#"{"time": 3, "a": 1}"#),
    );
    assert_eq!((status, error_code(r).as_str()), (400, "bad_events"));
}
