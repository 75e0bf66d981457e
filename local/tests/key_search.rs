//! `GET /v1/jobs/{job}/keys?contains=`: the key view's search, over real
//! HTTP on the real binary: a substring ignoring case, sorted, paged with
//! `after`/`next_after` like the unfiltered list.

mod support;

use serde_json::Value;
use support::Server;

fn keys(server: &Server, query: &str) -> (Vec<String>, Value) {
    let (status, body) = server.call("GET", &format!("/v1/jobs/j/keys{query}"), None);
    assert_eq!(status, 200, "{query}: {body}");
    let keys = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    (keys, body["next_after"].clone())
}

#[test]
fn keys_are_searched_by_substring_ignoring_case_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        server.call("POST", "/v1/jobs?name=j", Some("has_existed(x == 1)")).0,
        201
    );
    let names = ["alpha-1", "Alpha-2", "beta-1", "gamma-alpha", "delta"];
    let events: Vec<String> = names
        .iter()
        .map(|k| format!(r#"{{"session_id":"{k}","time":1,"x":1}}"#))
        .collect();
    assert_eq!(server.call("POST", "/v1/events", Some(&events.join("\n"))).0, 200);

    // Sorted by bytes, as the unfiltered list is; the case is ignored.
    assert_eq!(
        keys(&server, "?contains=ALPHA").0,
        ["Alpha-2", "alpha-1", "gamma-alpha"]
    );
    assert_eq!(keys(&server, "?contains=-1").0, ["alpha-1", "beta-1"]);
    assert!(keys(&server, "?contains=zeta").0.is_empty());
    // An empty search is no filter.
    assert_eq!(keys(&server, "?contains=").0.len(), names.len());

    // Pages of the matches: next_after continues where the page ended.
    let (first, next) = keys(&server, "?contains=alpha&limit=2");
    assert_eq!(first, ["Alpha-2", "alpha-1"]);
    assert_eq!(next, "alpha-1");
    let (second, next) = keys(&server, "?contains=alpha&limit=2&after=alpha-1");
    assert_eq!(second, ["gamma-alpha"]);
    assert!(next.is_null(), "{next}");
}
