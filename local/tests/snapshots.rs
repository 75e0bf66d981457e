//! Snapshots: recovery reads the newest snapshot plus the log's tail and
//! gives what a full replay gives; a corrupt snapshot or one taken with other
//! jobs is not used (full replay, with a warning); and a kill -9 loop with
//! snapshots and repeat-dropping on loses nothing and counts nothing twice.

mod support;

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::Server;
use timeline::{CompiledPlan, EventParser, ExecutionPlan};
use timeline_local::snapshot;

const CIRR: &str = include_str!("../../examples/cirr.tl");

fn generated(sessions: u64, seed: u64) -> Vec<String> {
    let mut data = Vec::new();
    timeline_local::generate::write_cirr(
        &timeline_local::generate::CirrOptions {
            sessions,
            seed,
            late: 0.05,
            duplicates: 0.02,
        },
        &mut data,
    )
    .unwrap();
    String::from_utf8(data).unwrap().lines().map(str::to_string).collect()
}

/// Every key's CIRR at its end, from the server.
fn server_results(server: &Server) -> BTreeMap<String, Value> {
    let (_, keys) = server.call("GET", "/v1/jobs/cirr/keys?limit=100000", None);
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let k = k.as_str().unwrap();
            let (_, r) = server.call("GET", &format!("/v1/jobs/cirr/keys/{k}/result"), None);
            (k.to_string(), r["value"].clone())
        })
        .collect()
}

/// Every key's CIRR at its end, evaluated in process from `lines`.
fn batch_results(lines: &[String]) -> BTreeMap<String, Value> {
    let plan = CompiledPlan::new(ExecutionPlan::new(&timeline::dsl::parse(CIRR).unwrap()).unwrap());
    let parser = EventParser::default();
    let mut keys: BTreeMap<String, Vec<timeline::LeafState>> = BTreeMap::new();
    for line in lines {
        let e = parser.parse(line).unwrap();
        plan.apply(
            keys.entry(e.key.to_string()).or_insert_with(|| plan.new_leaf_states()),
            &e,
        );
    }
    keys.into_iter()
        .map(|(k, s)| {
            (
                k,
                serde_json::to_value(plan.evaluate_result(&s).value_at_end()).unwrap(),
            )
        })
        .collect()
}

fn snapshot_records(server: &Server) -> u64 {
    let line = server.logged("recovered in").pop().expect("a recovery line");
    let at = line.find("snapshot_records=").expect("snapshot_records logged") + "snapshot_records=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn post_all(server: &Server, lines: &[String]) {
    for chunk in lines.chunks(50) {
        assert_eq!(server.call("POST", "/v1/events", Some(&chunk.join("\n"))).0, 200);
    }
}

const SMALL: [&str; 2] = ["--snapshot-every-events", "100"];

#[test]
fn recovery_reads_the_snapshot_and_the_tail() {
    let lines = generated(40, 5);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &SMALL);
    assert_eq!(server.call("POST", "/v1/jobs?name=cirr", Some(CIRR)).0, 201);
    post_all(&server, &lines);
    let live = server_results(&server);
    assert_eq!(live, batch_results(&lines));
    server.kill();
    assert!(snapshot::path(dir.path()).exists());

    let server = Server::start(dir.path());
    let covered = snapshot_records(&server);
    assert!(covered > 0, "the snapshot was used");
    assert_eq!(server_results(&server), live);
    // Repeats are still recognised after a recovery from a snapshot.
    post_all(&server, &lines);
    assert_eq!(server_results(&server), live);
    drop(server);

    // A corrupt snapshot: full replay, same results.
    let path = snapshot::path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let server = Server::start(dir.path());
    assert_eq!(snapshot_records(&server), 0);
    assert!(!server.logged("corrupt").is_empty(), "a warning names the cause");
    assert_eq!(server_results(&server), live);
}

#[test]
fn a_snapshot_taken_with_other_jobs_is_not_used() {
    let lines = generated(20, 6);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &SMALL);
    assert_eq!(server.call("POST", "/v1/jobs?name=cirr", Some(CIRR)).0, 201);
    post_all(&server, &lines);
    let live = server_results(&server);
    drop(server);
    let kept = std::fs::read(snapshot::path(dir.path())).unwrap();
    // Another job submitted with snapshots off: the snapshot on disk is the
    // old one, taken without it.
    let server = Server::start_with(
        dir.path(),
        &["--snapshot-every-events", "0", "--snapshot-every-secs", "0"],
    );
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/jobs?name=other",
                Some("has_existed(event_type == \"play\")")
            )
            .0,
        201
    );
    drop(server);
    assert_eq!(std::fs::read(snapshot::path(dir.path())).unwrap(), kept);
    let server = Server::start(dir.path());
    assert_eq!(snapshot_records(&server), 0);
    assert!(!server.logged("jobs changed").is_empty());
    assert_eq!(server_results(&server), live);
}

/// kill -9 at random points with snapshots every few events, the client
/// resending what was not acknowledged and some of what was.
#[test]
fn kill_9_with_snapshots_and_resends_loses_nothing_and_counts_nothing_twice() {
    let lines = generated(150, 3);
    let batches: Vec<Vec<String>> = lines.chunks(97).map(|c| c.to_vec()).collect();
    let dir = tempfile::tempdir().unwrap();
    let args = ["--snapshot-every-events", "50"];
    let mut rng = rand_pcg::Pcg64::seed_from_u64(42);
    let mut acked = 0usize;
    let mut kills = 0;
    let mut used_snapshot = 0;
    {
        let server = Server::start_with(dir.path(), &args);
        assert_eq!(server.call("POST", "/v1/jobs?name=cirr", Some(CIRR)).0, 201);
    }
    while kills < 50 || acked < batches.len() {
        let server = Server::start_with(dir.path(), &args);
        if snapshot_records(&server) > 0 {
            used_snapshot += 1;
        }
        let n = acked.min(batches.len());
        let with_acked = batch_results(&batches[..n].concat());
        let recovered = server_results(&server);
        let with_in_flight = batch_results(&batches[..(n + 1).min(batches.len())].concat());
        assert!(
            recovered == with_acked || recovered == with_in_flight,
            "after {kills} kills, {acked} batches acknowledged"
        );
        // At least once: some acknowledged batches again.
        for _ in 0..2 {
            if acked > 0 {
                let i = rng.random_range(0..acked.min(batches.len()));
                assert_eq!(server.call("POST", "/v1/events", Some(&batches[i].join("\n"))).0, 200);
            }
        }
        if acked >= batches.len() {
            // Everything is in: keep killing, with resends only.
            let base = server.base.clone();
            let mut again: Vec<String> = batches.iter().map(|b| b.join("\n")).collect();
            again.shuffle(&mut rng);
            again.truncate(4);
            let sender = std::thread::spawn(move || {
                for body in again {
                    if ureq::post(&format!("{base}/v1/events")).send_string(&body).is_err() {
                        break;
                    }
                }
            });
            std::thread::sleep(std::time::Duration::from_millis(rng.random_range(0..20)));
            server.kill();
            kills += 1;
            sender.join().unwrap();
            continue;
        }
        assert_eq!(
            server.call("POST", "/v1/events", Some(&batches[acked].join("\n"))).0,
            200
        );
        acked += 1;
        let run = rng.random_range(1..4);
        let base = server.base.clone();
        let to_send: Vec<String> = batches[acked..(acked + run).min(batches.len())]
            .iter()
            .map(|b| b.join("\n"))
            .collect();
        let sender = std::thread::spawn(move || {
            let mut ok = 0;
            for body in to_send {
                match ureq::post(&format!("{base}/v1/events")).send_string(&body) {
                    Ok(_) => ok += 1,
                    Err(_) => break,
                }
            }
            ok
        });
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(0..20)));
        server.kill();
        kills += 1;
        acked += sender.join().unwrap();
    }
    let server = Server::start_with(dir.path(), &args);
    assert_eq!(server_results(&server), batch_results(&lines));
    assert!(kills >= 50, "{kills} kills");
    assert!(
        used_snapshot >= 25,
        "recovery used a snapshot {used_snapshot} times of {kills}"
    );
}
