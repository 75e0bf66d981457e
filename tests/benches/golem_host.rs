//! The Golem components on the test Golem host against the native local
//! runtime, on the same data in one run: events/s into the leaf workers (the
//! feeder's per-worker delivery to both), result-read latency, and how many
//! agent calls an event batch and a read cost on Golem.
//!
//! `cargo bench -p timeline-tests --bench golem_host [-- SESSIONS]` (default
//! 300 CIRR sessions, 2% late and 1% repeated events). Loopback only.

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::feeder::Feeder;
use support::golem::GolemHost;
use support::{CIRR, Server, agent, call};

const READS: usize = 400;

struct Figures {
    ingest: Duration,
    reads: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn feed(base: &str, file: &std::path::Path) -> Duration {
    let started = Instant::now();
    let feeder = Feeder::start(&[
        "--from-file",
        file.to_str().unwrap(),
        "--target",
        base,
        "--delivery",
        "worker",
    ]);
    let (status, log) = feeder.wait();
    assert!(status.success(), "{log}");
    started.elapsed()
}

fn reads(base: &str, result: &str, keys: &[String]) -> Vec<Duration> {
    let http = agent();
    let mut times: Vec<Duration> = keys
        .iter()
        .take(READS)
        .map(|key| {
            let started = Instant::now();
            let (status, body) = call(
                http.get(&format!("{base}/v1/timeline-processor/{result}/{key}/result?t=end"))
                    .call(),
            );
            assert_eq!(status, 200, "{body}");
            started.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn calls(host: &GolemHost) -> u64 {
    host.stats()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["http"].as_u64().unwrap() + c["rpc"].as_u64().unwrap())
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let sessions: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut data = Vec::new();
    let events = timeline_local::generate::write_cirr(
        &timeline_local::generate::CirrOptions {
            sessions,
            seed: 1,
            late: 0.02,
            duplicates: 0.01,
        },
        &mut data,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cirr.jsonl");
    std::fs::write(&file, &data).unwrap();
    let parser = timeline::EventParser::default();
    let mut keys: Vec<String> = String::from_utf8(data)
        .unwrap()
        .lines()
        .map(|l| parser.parse(l).unwrap().key.to_string())
        .collect();
    keys.sort();
    keys.dedup();
    eprintln!("{events} events of {} sessions", keys.len());

    // Golem: the built components on the host.
    let host = GolemHost::start();
    let plan = host.submit("cirr", CIRR);
    let result = plan["result"].as_str().unwrap().to_string();
    let leaves = plan["leaves"].as_array().unwrap().len() as u64;
    let before = calls(&host);
    let ingest = feed(&host.base, &file);
    let ingest_calls = calls(&host) - before;
    let before = calls(&host);
    let golem = Figures {
        ingest,
        reads: reads(&host.base, &result, &keys),
    };
    let read_calls = (calls(&host) - before) as f64 / golem.reads.len() as f64;
    drop(host);

    // The local runtime, fed and read the same way.
    let local_dir = tempfile::tempdir().unwrap();
    let server = Server::start(local_dir.path(), &[]);
    let (status, body): (u16, Value) = call(agent().post(&server.url("/v1/jobs?name=cirr")).send_string(CIRR));
    assert_eq!(status, 201, "{body}");
    let local = Figures {
        ingest: feed(&server.base, &file),
        reads: reads(&server.base, &result, &keys),
    };

    let rate = |f: &Figures| events as f64 / f.ingest.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "CIRR, {events} events of {} keys, `feeder --delivery worker` to each runtime",
        keys.len()
    );
    println!("| | Golem host | local runtime | local / Golem |");
    println!("|---|---:|---:|---:|");
    println!(
        "| events/s into the leaves | {:.0} | {:.0} | {:.1}x |",
        rate(&golem),
        rate(&local),
        rate(&local) / rate(&golem)
    );
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (g, l) = (percentile(&golem.reads, p), percentile(&local.reads, p));
        println!(
            "| result read {name} (ms) | {:.2} | {:.2} | {:.1}x |",
            ms(g),
            ms(l),
            ms(g) / ms(l)
        );
    }
    println!(
        "Golem agent calls: {ingest_calls} for the events ({:.3} per event; one add_events per leaf and key batch, \
         plus Core.node at each leaf's first batch); {read_calls:.1} per read (the HTTP call to the timeline processor, then Core.evaluation and the {leaves} leaves, concurrently).",
        ingest_calls as f64 / events as f64
    );
}
