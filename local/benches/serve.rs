//! Load test of `timeline serve`: CIRR sessions posted in batches with
//! durability on, then single-key result reads; server memory per key.
//! Twice, on fresh servers: with the CIRR job as usual, and with it
//! recording the changes of its result (`"changes": true`), to give the
//! changes recorded per second and the ingest cost of recording them as a
//! ratio measured in one run.
//!
//! `cargo bench -p timeline-local --bench serve [-- SESSIONS [CLIENTS]]` (more
//! `timeline serve` flags in `SERVE_ARGS`; `ROUNDS` pairs of runs, 3;
//! `CHANGES=off` or `only` runs once, without or with) (default 100000 sessions, 2 client
//! threads). Loopback only.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timeline_local::generate::{CirrOptions, write_cirr};

const BATCH_EVENTS: usize = 20_000;
const READS: usize = 5_000;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let sessions: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);

    eprintln!("generating {sessions} CIRR sessions ...");
    let mut data = Vec::new();
    let events = write_cirr(
        &CirrOptions {
            sessions,
            seed: 1,
            late: 0.02,
            duplicates: 0.01,
        },
        &mut data,
    )
    .unwrap();
    let text = String::from_utf8(data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let batches: Vec<String> = lines.chunks(BATCH_EVENTS).map(|c| c.join("\n")).collect();
    if let Ok(once @ ("off" | "only")) = std::env::var("CHANGES").as_deref() {
        run(&batches, sessions, clients, events, once == "only");
        return;
    }
    // Pairs of runs, without and with changes, in turn: on a noisy machine
    // the ratio within a pair is what can be trusted.
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let plain = run(&batches, sessions, clients, events, false);
        let recorded = run(&batches, sessions, clients, events, true);
        let ratio = recorded.events_per_sec / plain.events_per_sec;
        println!(
            "round {}: with changes recorded, ingest {ratio:.2} of without ({:.0} vs {:.0} events/s)",
            round + 1,
            recorded.events_per_sec,
            plain.events_per_sec
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "with changes recorded: ingest {:.2} of without (median of {rounds} pairs; {:.2} to {:.2})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

/// What a run measured.
struct Figures {
    events_per_sec: f64,
}

/// Starts a server, submits the CIRR job (recording its changes if
/// `changes`), posts `batches` from `clients` threads, reads results.
fn run(batches: &[String], sessions: u64, clients: usize, events: u64, changes: bool) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_timeline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        // More `timeline serve` flags to compare, e.g. SERVE_ARGS="--snapshot-every-events 0 --snapshot-every-secs 0".
        .args(std::env::var("SERVE_ARGS").unwrap_or_default().split_whitespace())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    let base = loop {
        let line = log.next().expect("server exited").unwrap();
        if let Some(at) = line.find("serving on ") {
            break line[at + "serving on ".len()..].trim().to_string();
        }
    };
    std::thread::spawn(move || {
        for l in log.map_while(Result::ok) {
            if l.starts_with("PROBE") {
                eprintln!("{l}");
            }
        }
    });
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
    let cirr = include_str!("../../examples/cirr.tl");
    agent
        .post(&format!("{base}/v1/jobs"))
        .send_json(ureq::json!({"name": "cirr", "query": cirr, "changes": changes}))
        .unwrap();
    let rss_before = rss_kib(server.id());

    eprintln!(
        "posting {events} events in {} batches of {BATCH_EVENTS} from {clients} clients ...",
        batches.len()
    );
    let next = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(batches.to_vec());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (next, batches, agent, base, latencies) = (
                next.clone(),
                batches.clone(),
                agent.clone(),
                base.clone(),
                latencies.clone(),
            );
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = batches.get(i) else { break };
                    let t = Instant::now();
                    agent
                        .post(&format!("{base}/v1/events"))
                        .send_string(body)
                        .expect("batch accepted");
                    latencies.lock().unwrap().push(t.elapsed());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ingest = started.elapsed();
    let rss_after = rss_kib(server.id());
    let mut acks = latencies.lock().unwrap().clone();
    acks.sort();

    // Single-key reads of the job's result, keys spread over the whole range.
    let mut reads = Vec::with_capacity(READS);
    for i in 0..READS {
        let key = format!("session-{:06}", (i as u64 * 7919) % sessions);
        let t = Instant::now();
        let body = agent
            .get(&format!("{base}/v1/jobs/cirr/keys/{key}/result"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        reads.push(t.elapsed());
        assert!(body.contains("\"value\""));
    }
    reads.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let metrics = agent
        .get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let commits = metrics
        .lines()
        .find(|l| l.starts_with("timeline_commits_total"))
        .unwrap_or("")
        .to_string();
    let state = metrics
        .lines()
        .find(|l| l.starts_with("timeline_state_bytes"))
        .unwrap_or("")
        .to_string();
    let recorded: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("timeline_changes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "timeline serve, {sessions} keys, {events} events, batches of {BATCH_EVENTS}, {clients} clients, fsync per commit{}",
        if changes { ", the job recording its changes" } else { "" }
    );
    if changes {
        println!(
            "  changes recorded: {recorded} ({:.0} per s of ingest, {:.2} per event)",
            recorded as f64 / ingest.as_secs_f64(),
            recorded as f64 / events as f64
        );
    }
    println!(
        "  ingest: {:.2} s, {:.0} events/s durable; batch ack p50 {:?} p99 {:?}; {commits}",
        ingest.as_secs_f64(),
        events as f64 / ingest.as_secs_f64(),
        pct(&acks, 0.5),
        pct(&acks, 0.99)
    );
    println!(
        "  result read (one key): p50 {:?}, p99 {:?}, max {:?}",
        pct(&reads, 0.5),
        pct(&reads, 0.99),
        reads[reads.len() - 1]
    );
    println!(
        "  server memory: RSS {} MiB -> {} MiB, {:.0} bytes per key ({state})",
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / sessions as f64
    );
    Figures {
        events_per_sec: events as f64 / ingest.as_secs_f64(),
    }
}
