//! Snapshots: recovery reads the newest snapshot plus the log's tail and
//! gives what a full replay gives; a corrupt snapshot or one taken with other
//! jobs is not used (full replay, with a warning); and a kill -9 loop with
//! snapshots and repeat-dropping on loses nothing and counts nothing twice.

mod support;

use support::Server;
use support::cirr::{CIRR, KillLoop, batch_results, generated, post_all, server_results, snapshot_records};
use timeline_local::snapshot;

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
    let run = KillLoop {
        args: &["--snapshot-every-events", "50"],
        batches: lines.chunks(97).map(|c| c.to_vec()).collect(),
        kills: 50,
        refusals: false,
    }
    .run(batch_results);
    assert!(run.kills >= 50, "{} kills", run.kills);
    assert!(
        run.used_snapshot >= 25,
        "recovery used a snapshot {} times of {}",
        run.used_snapshot,
        run.kills
    );
}
