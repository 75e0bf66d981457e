//! Two small HTTP/1.1 servers on std threads, for `feeder sink`: a fake
//! timeline server with one job's growing changes stream (`after`, `limit`,
//! `wait`, `where`, bearer token), and a webhook receiver that records every
//! batch it accepts. Both can fail at random: 503s and connections dropped
//! (the receiver also after it has recorded a batch, as if its answer was
//! lost).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A small random number generator (xorshift64*), seeded.
pub struct Rng(u64);

impl Rng {
    /// Seeded with `seed` (0 is made 1).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One request.
pub struct Request {
    /// GET, POST...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, decoded.
    pub query: HashMap<String, String>,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// What to do with a request.
pub enum Reply {
    /// Answer with status, extra headers and body.
    Answer(u16, Vec<(String, String)>, String),
    /// Close the connection without an answer.
    Drop,
}

type Handler = Arc<dyn Fn(Request) -> Reply + Send + Sync>;

/// A listening server; it stops accepting when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// Serves `handler` on `addr` (port 0: a free port), a thread per
    /// connection, one request per connection.
    pub fn start(addr: SocketAddr, handler: Handler) -> HttpServer {
        let listener = TcpListener::bind(addr).expect("bind");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &handler);
                });
            }
        });
        HttpServer { addr, stop }
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_one(stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let url = reqwest::Url::parse(&format!("http://x{target}")).expect("a request target");
    let request = Request {
        method: method.to_string(),
        path: url.path().to_string(),
        query: url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        headers,
        body,
    };
    let mut stream = stream;
    match handler(request) {
        Reply::Drop => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Reply::Answer(status, extra, body) => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in extra {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            stream.write_all(body.as_bytes())?;
            stream.flush()?;
        }
    }
    Ok(())
}

fn json_error(status: u16, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    Reply::Answer(status, vec![], body)
}

/// A job the fake server has, without recording its changes.
pub const NOT_RECORDING: &str = "plain";

/// The one filter the fake server understands.
pub const NEW_ONLY: &str = "new == true";

/// One change of the fake stream.
#[derive(Debug, Clone)]
pub struct FakeChange {
    /// Its id.
    pub id: u64,
    /// Its JSON, as the server sends it.
    pub json: String,
    /// Its key or group, as the sink should take it.
    pub key: Option<String>,
    /// Whether `NEW_ONLY` selects it.
    pub new: bool,
}

/// The change with id `id`: alerts keyed by card, an aggregate by group
/// now and then, odd spacing and escapes (forwarded byte for byte), and
/// every seventh with `"new":false`.
pub fn fake_change(id: u64) -> FakeChange {
    let new = !id.is_multiple_of(7);
    let (json, key) = match id % 10 {
        3 => (
            format!(
                r#"{{"id":{id},"output":"by_country","group":"fr","from":{},"until":null,"old":{},"new":{new}}}"#,
                id * 1000,
                !new
            ),
            Some("fr".to_string()),
        ),
        6 => (
            format!(
                r#"{{ "id": {id}, "output": "alert", "key": "card-{}", "note": "caf\u00e9 \"x\"", "from": {}, "until": {}, "old": {}, "new": {new} }}"#,
                id % 37,
                id * 1000,
                id * 1000 + 500,
                !new
            ),
            Some(format!("card-{}", id % 37)),
        ),
        9 => (
            format!(r#"{{"id":{id},"output":"total","value":{},"new":{new}}}"#, id * 3),
            None,
        ),
        _ => (
            format!(
                r#"{{"id":{id},"output":"alert","key":"card-{}","from":{},"until":null,"old":{},"new":{new}}}"#,
                id % 37,
                id * 1000,
                !new
            ),
            Some(format!("card-{}", id % 37)),
        ),
    };
    FakeChange { id, json, key, new }
}

#[derive(Default)]
struct StreamState {
    changes: Vec<FakeChange>,
    /// Per mille of requests that fail (half 503, half a dropped connection).
    faults: u64,
    rng: Option<Rng>,
    requests: u64,
    failed: u64,
}

/// A fake timeline server with one job and its changes stream.
pub struct ChangesServer {
    http: HttpServer,
    state: Arc<(Mutex<StreamState>, Condvar)>,
}

impl ChangesServer {
    /// Serves job `job` on a free port; `token`: the bearer token it
    /// requires.
    pub fn start(job: &str, token: Option<&str>) -> ChangesServer {
        ChangesServer::start_on("127.0.0.1:0".parse().unwrap(), job, token)
    }

    /// As [`ChangesServer::start`], on `addr`.
    pub fn start_on(addr: SocketAddr, job: &str, token: Option<&str>) -> ChangesServer {
        let state: Arc<(Mutex<StreamState>, Condvar)> = Arc::default();
        state.0.lock().unwrap().rng = Some(Rng::new(7));
        let (job, token) = (job.to_string(), token.map(str::to_string));
        let shared = state.clone();
        let handler: Handler = Arc::new(move |r: Request| changes(&shared, &job, token.as_deref(), r));
        ChangesServer {
            http: HttpServer::start(addr, handler),
            state,
        }
    }

    /// Its base URL.
    pub fn base(&self) -> String {
        self.http.base()
    }

    /// Records the next `n` changes.
    pub fn push(&self, n: u64) {
        let mut s = self.state.0.lock().unwrap();
        let first = s.changes.len() as u64 + 1;
        s.changes.extend((first..first + n).map(fake_change));
        self.state.1.notify_all();
    }

    /// Makes `per_mille` of the requests from now on fail.
    pub fn set_faults(&self, per_mille: u64) {
        self.state.0.lock().unwrap().faults = per_mille;
    }

    /// Every change so far.
    pub fn changes(&self) -> Vec<FakeChange> {
        self.state.0.lock().unwrap().changes.clone()
    }

    /// (requests, failed on purpose).
    pub fn requests(&self) -> (u64, u64) {
        let s = self.state.0.lock().unwrap();
        (s.requests, s.failed)
    }
}

fn changes(state: &(Mutex<StreamState>, Condvar), job: &str, token: Option<&str>, r: Request) -> Reply {
    let (lock, wake) = state;
    {
        let mut s = lock.lock().unwrap();
        s.requests += 1;
        let faults = s.faults;
        let roll = s.rng.as_mut().unwrap().below(1000);
        if roll < faults {
            s.failed += 1;
            return if roll.is_multiple_of(2) {
                json_error(503, "unavailable", "the server is busy")
            } else {
                Reply::Drop
            };
        }
    }
    if let Some(token) = token
        && r.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {token}"))
    {
        return json_error(401, "unauthorized", "a bearer token is needed");
    }
    let segments: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let ["v1", "jobs", name, "changes"] = segments[..] else {
        return json_error(404, "not_found", "no such route");
    };
    if r.method != "GET" {
        return json_error(405, "method", "GET only");
    }
    if name == NOT_RECORDING {
        return json_error(
            409,
            "changes_not_recorded",
            &format!("job `{name}` does not record changes"),
        );
    }
    if name != job {
        return json_error(404, "unknown_job", &format!("no job named `{name}`"));
    }
    let new_only = match r.query.get("where").map(String::as_str) {
        None => false,
        Some(NEW_ONLY) => true,
        Some(other) => return json_error(400, "bad_where", &format!("cannot read the condition `{other}`")),
    };
    let number = |name: &str, default: u64| -> Result<u64, Reply> {
        match r.query.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| json_error(400, "bad_request", &format!("`{name}` is not a number"))),
        }
    };
    let (after, limit, wait) = match (number("after", 0), number("limit", 1000), number("wait", 0)) {
        (Ok(a), Ok(l), Ok(w)) => (a, l.clamp(1, 10_000), w.min(60)),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return e,
    };
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut s = lock.lock().unwrap();
    loop {
        let mut out = Vec::new();
        let mut next = after;
        for c in s.changes.iter().skip(after as usize) {
            if out.len() as u64 >= limit {
                break;
            }
            next = c.id;
            if c.new || !new_only {
                out.push(c.json.as_str());
            }
        }
        let now = Instant::now();
        if !out.is_empty() || now >= deadline {
            let body = format!(
                r#"{{"job":{},"changes":[{}],"next":{next},"last":{}}}"#,
                serde_json::Value::from(job),
                out.join(","),
                s.changes.len()
            );
            return Reply::Answer(200, vec![], body);
        }
        s = wake.wait_timeout(s, deadline - now).unwrap().0;
    }
}

/// One batch a receiver accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its `Idempotency-Key`.
    pub key: String,
    /// Its `job`.
    pub job: String,
    /// Its changes, each as JSON text.
    pub changes: Vec<String>,
    /// Their ids.
    pub ids: Vec<u64>,
}

#[derive(Default)]
struct ReceiverState {
    deliveries: Vec<Delivery>,
    faults: u64,
    rng: Option<Rng>,
    /// Answers every request with this, without recording.
    fixed: Option<(u16, String)>,
    /// How long a batch it records waits for its answer.
    delay: Duration,
    requests: u64,
}

/// A webhook receiver.
pub struct Receiver {
    http: HttpServer,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    /// A receiver on a free port.
    pub fn start() -> Receiver {
        let state: Arc<Mutex<ReceiverState>> = Arc::default();
        state.lock().unwrap().rng = Some(Rng::new(11));
        let shared = state.clone();
        let handler: Handler = Arc::new(move |r: Request| receive(&shared, r));
        Receiver {
            http: HttpServer::start("127.0.0.1:0".parse().unwrap(), handler),
            state,
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("{}/hook", self.http.base())
    }

    /// Makes `per_mille` of the requests fail: a third 503 (some with
    /// `Retry-After: 0`), a third dropped before recording, a third
    /// recorded and then dropped (the answer lost).
    pub fn set_faults(&self, per_mille: u64) {
        self.state.lock().unwrap().faults = per_mille;
    }

    /// Makes every batch it records wait `delay` for its answer (a slow
    /// receiver: a sink killed meanwhile has the batch in flight).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Answers every request with `status` and `body`.
    pub fn answer_always(&self, status: u16, body: &str) {
        self.state.lock().unwrap().fixed = Some((status, body.to_string()));
    }

    /// Every batch accepted, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }
}

fn receive(state: &Mutex<ReceiverState>, r: Request) -> Reply {
    let mut s = state.lock().unwrap();
    s.requests += 1;
    if let Some((status, body)) = s.fixed.clone() {
        return Reply::Answer(status, vec![], body);
    }
    if r.method != "POST" || r.path != "/hook" {
        return Reply::Answer(404, vec![], "no such hook".into());
    }
    if r.headers.get("content-type").map(String::as_str) != Some("application/json") {
        return Reply::Answer(415, vec![], "application/json only".into());
    }
    let Some(key) = r.headers.get("idempotency-key").cloned() else {
        return Reply::Answer(422, vec![], "no Idempotency-Key".into());
    };
    let faults = s.faults;
    let roll = s.rng.as_mut().unwrap().below(1000);
    let kind = roll % 3;
    if roll < faults && kind == 0 {
        let headers = if roll.is_multiple_of(2) {
            vec![("retry-after".to_string(), "0".to_string())]
        } else {
            vec![]
        };
        return Reply::Answer(503, headers, "busy".into());
    }
    if roll < faults && kind == 1 {
        return Reply::Drop;
    }
    let body: serde_json::Value = match serde_json::from_slice(&r.body) {
        Ok(b) => b,
        Err(e) => return Reply::Answer(422, vec![], format!("not JSON: {e}")),
    };
    // The changes as sent, byte for byte: the raw array elements.
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        changes: Vec<&'a serde_json::value::RawValue>,
    }
    let raw: Raw = serde_json::from_slice(&r.body).unwrap();
    s.deliveries.push(Delivery {
        key,
        job: body["job"].as_str().unwrap_or_default().to_string(),
        changes: raw.changes.iter().map(|c| c.get().to_string()).collect(),
        ids: body["changes"]
            .as_array()
            .map(|a| a.iter().map(|c| c["id"].as_u64().unwrap()).collect())
            .unwrap_or_default(),
    });
    let delay = s.delay;
    drop(s);
    std::thread::sleep(delay);
    if roll < faults {
        return Reply::Drop;
    }
    Reply::Answer(200, vec![], "{}".into())
}
