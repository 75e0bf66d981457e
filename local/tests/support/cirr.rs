//! The CIRR example through the server and in process: generated events,
//! every key's result from each, for tests that compare the two.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use timeline::{CompiledPlan, EventParser, ExecutionPlan};

use super::Server;

/// The CIRR query of the examples.
pub const CIRR: &str = include_str!("../../../examples/cirr.tl");

/// `sessions` generated CIRR sessions (late and repeated events included),
/// as JSON lines.
pub fn generated(sessions: u64, seed: u64) -> Vec<String> {
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
pub fn server_results(server: &Server) -> BTreeMap<String, Value> {
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
pub fn batch_results(lines: &[String]) -> BTreeMap<String, Value> {
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

pub fn post_all(server: &Server, lines: &[String]) {
    for chunk in lines.chunks(50) {
        assert_eq!(server.call("POST", "/v1/events", Some(&chunk.join("\n"))).0, 200);
    }
}

/// The number of log records the snapshot used by the server's last
/// recovery covered (0: none used).
pub fn snapshot_records(server: &Server) -> u64 {
    let line = server.logged("recovered in").pop().expect("a recovery line");
    let at = line.find("snapshot_records=").expect("snapshot_records logged") + "snapshot_records=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A kill -9 loop: `timeline serve` (with `args`) gets the CIRR job and
/// `batches` in order, one client at a time, and is killed at random points
/// (at least `kills` times) while the client resends what was not
/// acknowledged and some of what was (at least once). After every restart
/// the results must be what the batches acknowledged (or those plus the one
/// in flight) give, and at the end what all of them give.
pub struct KillLoop<'a> {
    /// `timeline serve`'s arguments.
    pub args: &'a [&'a str],
    /// The batches, in the order they are sent.
    pub batches: Vec<Vec<String>>,
    /// How many kills at least.
    pub kills: usize,
    /// Whether a batch sent again may be refused as a whole (400: its
    /// events are all behind the retention horizon by then).
    pub refusals: bool,
}

/// What a [`KillLoop`] did.
pub struct KillRun {
    /// Kills.
    pub kills: usize,
    /// Recoveries that used a snapshot.
    pub used_snapshot: usize,
}

impl KillLoop<'_> {
    /// Runs the loop; `expected` gives the results of the first batches sent
    /// in order (as their lines).
    pub fn run(&self, expected: impl Fn(&[String]) -> BTreeMap<String, Value>) -> KillRun {
        let batches = &self.batches;
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(42);
        let mut acked = 0usize;
        let mut kills = 0;
        let mut used_snapshot = 0;
        {
            let server = Server::start_with(dir.path(), self.args);
            assert_eq!(server.call("POST", "/v1/jobs?name=cirr", Some(CIRR)).0, 201);
        }
        while kills < self.kills || acked < batches.len() {
            let server = Server::start_with(dir.path(), self.args);
            if snapshot_records(&server) > 0 {
                used_snapshot += 1;
            }
            let n = acked.min(batches.len());
            let with_acked = expected(&batches[..n].concat());
            let recovered = server_results(&server);
            let with_in_flight = expected(&batches[..(n + 1).min(batches.len())].concat());
            assert!(
                recovered == with_acked || recovered == with_in_flight,
                "after {kills} kills, {acked} batches acknowledged"
            );
            // At least once: some acknowledged batches again.
            for _ in 0..2 {
                if acked > 0 {
                    let i = rng.random_range(0..acked.min(batches.len()));
                    let status = server.call("POST", "/v1/events", Some(&batches[i].join("\n"))).0;
                    assert!(status == 200 || (self.refusals && status == 400), "{status}");
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
                        if let Err(ureq::Error::Transport(_)) =
                            ureq::post(&format!("{base}/v1/events")).send_string(&body)
                        {
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
        let server = Server::start_with(dir.path(), self.args);
        assert_eq!(server_results(&server), expected(&batches.concat()));
        KillRun { kills, used_snapshot }
    }
}
