//! Aggregates at scale, in process: many keys into one job with `group_by`.
//!
//! `cargo bench -p timeline-local --bench aggregate [-- KEYS]` (default
//! 1,000,000 keys, about 9 events each, 3 CDNs, 20% of keys switch CDN).
//! Events arrive in batches of 100,000, in time order across keys, and the
//! aggregators take in each batch's keys before the next (as `timeline
//! serve` does per commit). Reports ingestion with aggregation, the
//! aggregators' memory per key, and the latency of reading every group.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use smol_str::SmolStr;
use timeline::{AggFn, Event, Value};
use timeline_local::engine::{Engine, Target};

const BATCH: usize = 100_000;
const READS: usize = 30;
const JOB: &str = r#"
let cirr = duration_where(
  has_existed(playerStateChange == "play")
  && !has_existed_within(userAction == "seek", 5s)
  && latest_event_to_state(playerStateChange) == "buffer");
rebuffering = cirr | aggregate(group_by(cdnChange), count, avg, p90, max);
attempts = count_where(has_existed(playerStateChange == "play")) | aggregate(group_by(cdnChange), sum);
completed = has_existed(playerStateChange == "complete") | aggregate(group_by(cdnChange), count_true);
completion_rate = completed / attempts;
"#;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn event(key: &SmolStr, time: i64, seq: u32, column: &str, value: &str) -> Event {
    Event {
        key: key.clone(),
        time,
        id: Some(SmolStr::new(format!("{seq}"))),
        columns: vec![(SmolStr::new(column), Value::str(value))],
    }
}

/// A short playback session per key, starting within the first 10 minutes.
fn sessions(keys: usize) -> Vec<Event> {
    const CDNS: [&str; 3] = ["CDN1", "CDN2", "CDN3"];
    let mut rng = Pcg64::seed_from_u64(7);
    let mut events = Vec::with_capacity(keys * 9);
    for k in 0..keys {
        let key = SmolStr::new(format!("session-{k:07}"));
        let mut t = rng.random_range(0..600_000);
        let mut seq = 0;
        let mut push = |events: &mut Vec<Event>, t: i64, column: &str, value: &str| {
            events.push(event(&key, t, seq, column, value));
            seq += 1;
        };
        let cdn = CDNS[rng.random_range(0..3)];
        push(&mut events, t, "cdnChange", cdn);
        push(&mut events, t, "playerStateChange", "init");
        t += rng.random_range(300..3_000);
        push(&mut events, t, "playerStateChange", "play");
        for _ in 0..2 {
            t += rng.random_range(5_000..60_000);
            if rng.random_bool(0.3) {
                push(&mut events, t, "userAction", "seek");
            }
            push(&mut events, t, "playerStateChange", "buffer");
            t += rng.random_range(200..10_000);
            push(&mut events, t, "playerStateChange", "play");
        }
        if rng.random_bool(0.2) {
            t += rng.random_range(1_000..30_000);
            push(
                &mut events,
                t,
                "cdnChange",
                CDNS[(CDNS.iter().position(|c| *c == cdn).unwrap() + 1) % 3],
            );
        }
        t += rng.random_range(1_000..30_000);
        push(
            &mut events,
            t,
            "playerStateChange",
            if rng.random_bool(0.6) { "complete" } else { "stop" },
        );
    }
    events.sort_by_key(|e| e.time);
    events
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(p * sorted.len()).div_ceil(100).max(1) - 1]
}

fn main() {
    let keys: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    eprintln!("generating {keys} sessions ...");
    let events = sessions(keys);
    let mut engine = Engine::new();
    let (submitted, _) = engine.submit(Some("bench"), JOB).unwrap();
    let plan = submitted.job().plan.clone();
    let rebuffering = plan.output("rebuffering").unwrap().clone();
    let rate = plan.output("completion_rate").unwrap().clone();

    let rss_before = rss_kib();
    let started = Instant::now();
    let mut refresh = Duration::ZERO;
    let mut batches = 0;
    for batch in events.chunks(BATCH) {
        engine.apply(0, batch, &Target::AllLeaves, None);
        let t = Instant::now();
        engine.refresh_aggregates();
        refresh += t.elapsed();
        batches += 1;
    }
    let took = started.elapsed();
    // What a job recording changes reads of its aggregates and metric after
    // each commit (on the changes thread; the writer waits for it before it
    // applies the next commit): every output's groups at the latest event
    // time.
    let outputs: Vec<_> = plan.outputs.clone();
    let started_reads = Instant::now();
    for _ in 0..READS {
        for output in &outputs {
            match output.worker {
                timeline::WorkerKind::Aggregator => {
                    engine.aggregate(&output.node, None, &output.functions, None).unwrap();
                }
                timeline::WorkerKind::Metric => {
                    engine.metric(&output.node, None, None).unwrap();
                }
                _ => {}
            }
        }
    }
    let per_commit = started_reads.elapsed() / READS as u32;
    let rss_after = rss_kib();
    let bytes = engine.aggregator_bytes();
    let counts = engine.worker_counts();
    println!(
        "{} events of {keys} keys ingested and aggregated in {:.2} s: {:.0} events/s, {:.0} keys/s \
         ({:.2} s of it taking keys into the aggregators)",
        events.len(),
        took.as_secs_f64(),
        events.len() as f64 / took.as_secs_f64(),
        keys as f64 / took.as_secs_f64(),
        refresh.as_secs_f64(),
    );
    println!(
        "recording changes: reading every aggregate and metric output at the latest time takes {:.1} ms; \
         once per commit, {batches} commits here: {:.2} s, {:.0}% of the ingest above",
        per_commit.as_secs_f64() * 1e3,
        (per_commit * batches).as_secs_f64(),
        (per_commit * batches).as_secs_f64() / took.as_secs_f64() * 100.0,
    );
    println!(
        "aggregators: {} ({} aggregate nodes x groups), {} bytes = {:.0} bytes per key ({:.0} per key and aggregate node); \
         all worker state {:.0} bytes per key; process RSS grew {:.0} bytes per key",
        counts.aggregators,
        3,
        bytes,
        bytes as f64 / keys as f64,
        bytes as f64 / keys as f64 / 3.0,
        engine.state_bytes() as f64 / keys as f64,
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / keys as f64,
    );

    let functions = [AggFn::Count, AggFn::Avg, AggFn::Percentile(90), AggFn::Max];
    let end = engine.latest(0).unwrap();
    let mut reads = Vec::with_capacity(READS);
    let mut groups = 0;
    for i in 0..READS {
        // Alternate the end and earlier instants.
        let t = end - (i as i64 % 3) * 60_000;
        let started = Instant::now();
        let read = engine.aggregate(&rebuffering.node, Some(t), &functions, None).unwrap();
        reads.push(started.elapsed());
        groups = read.groups.len();
    }
    reads.sort();
    let mut metric_reads = Vec::with_capacity(READS);
    for _ in 0..READS {
        let started = Instant::now();
        let read = engine.metric(&rate.node, None, None).unwrap();
        metric_reads.push(started.elapsed());
        assert_eq!(read.groups.len(), 3);
    }
    metric_reads.sort();
    println!(
        "read every group ({groups}) of `rebuffering` (count, avg, p90, max over {keys} keys): p50 {:.1} ms, p99 {:.1} ms; \
         completion_rate (two aggregates): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&reads, 50).as_secs_f64() * 1e3,
        percentile(&reads, 99).as_secs_f64() * 1e3,
        percentile(&metric_reads, 50).as_secs_f64() * 1e3,
        percentile(&metric_reads, 99).as_secs_f64() * 1e3,
    );
}
