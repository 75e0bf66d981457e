//! Storage faults: after a failed write (a full disk) the server refuses
//! writes with 503, reports degraded storage on `/v1/health`, and works again
//! without a restart once the cause is gone.
//!
//! Faults come from the store's test seam: with `TIMELINE_STORAGE_FAULTS`
//! set, every write to the database fails with ENOSPC while a marker file
//! exists in the data directory.

mod support;

use serde_json::Value;
use support::Server;

const QUERY: &str = "has_existed(x == 1)";

fn events(key: &str, from: i64, n: i64) -> String {
    (from..from + n)
        .map(|t| format!(r#"{{"session_id":"{key}","time":{t},"x":1,"event_id":"e{t}"}}"#))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_full_disk_degrades_health_and_writes_work_again_once_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.call("POST", "/v1/jobs?name=c", Some(QUERY)).0, 201);
    assert_eq!(server.call("POST", "/v1/events", Some(&events("k", 0, 3))).0, 200);
    assert_eq!(server.call("GET", "/v1/health", None).0, 200);

    let marker = dir.path().join(timeline_local::store::FAIL_MARKER);
    std::fs::write(&marker, b"").unwrap();
    let (status, body) = server.call("POST", "/v1/events", Some(&events("k", 3, 2)));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage");
    let (status, health) = server.call("GET", "/v1/health", None);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded");
    assert!(
        health["storage"].as_str().unwrap().contains("No space left"),
        "{health}"
    );
    let (status, body) = server.call("POST", "/v1/jobs?name=d", Some("has_existed(x == 2)"));
    assert_eq!(status, 503, "job submission: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("job not stored"),
        "{body}"
    );
    // Still failing: still degraded, still refused.
    assert_eq!(server.call("POST", "/v1/events", Some(&events("k", 3, 2))).0, 503);

    std::fs::remove_file(&marker).unwrap();
    // Still degraded until a write succeeds.
    assert_eq!(server.call("GET", "/v1/health", None).1["status"], "degraded");
    assert_eq!(server.call("POST", "/v1/events", Some(&events("k", 5, 2))).0, 200);
    let (status, health) = server.call("GET", "/v1/health", None);
    assert_eq!((status, &health["status"]), (200, &Value::from("ok")), "{health}");
    assert!(health.get("storage").is_none());
    assert_eq!(
        server.call("POST", "/v1/jobs?name=d", Some("has_existed(x == 2)")).0,
        201
    );
    // The refused batches count nothing; the accepted ones count once.
    assert_eq!(server.call("GET", "/v1/health", None).1["events"], 5);

    // And all of it survives a restart.
    drop(server);
    let server = Server::start(dir.path());
    assert_eq!(server.call("GET", "/v1/health", None).1["events"], 5);
    assert_eq!(server.call("GET", "/v1/jobs/d", None).0, 200);
}
