//! Durability figures of `timeline serve`'s writer and recovery, in process
//! (no HTTP): CIRR events through the real writer (group commit, fsync,
//! repeats left out, snapshots), then recovery by full replay against
//! snapshot + tail, the log's bytes per distinct event when every batch
//! is delivered three times, and ingest and the log's size with retention.
//!
//! `cargo bench -p timeline-local --bench recovery [-- EVENTS]` (default
//! 10,000,000 events; about 42 per session).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use timeline::StreamSpec;
use timeline::stream::DEFAULT_STREAM;
use timeline_local::body::parse_body;
use timeline_local::durable::{self, Command, Ingest, RetentionPolicy};
use timeline_local::engine::{Engine, Target};
use timeline_local::generate::{CirrOptions, write_cirr};
use timeline_local::metrics::Metrics;
use timeline_local::snapshot::{self, SnapshotPolicy};
use timeline_local::store::{LogHeader, Store, StoredJob, encode_record};
use tokio::sync::oneshot;

const CIRR: &str = include_str!("../../examples/cirr.tl");
const BATCH_EVENTS: usize = 20_000;

fn spec() -> StreamSpec {
    StreamSpec::new(DEFAULT_STREAM, timeline::event::DEFAULT_KEY_FIELD)
}

fn batches(events: u64, seed: u64) -> Vec<String> {
    let mut data = Vec::new();
    write_cirr(
        &CirrOptions {
            sessions: events / 42,
            seed,
            late: 0.02,
            duplicates: 0.0,
        },
        &mut data,
    )
    .unwrap();
    let text = String::from_utf8(data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines.chunks(BATCH_EVENTS).map(|c| c.join("\n")).collect()
}

/// A store in `dir` with the CIRR job, its engine and its writer.
fn start(
    dir: &std::path::Path,
    policy: SnapshotPolicy,
) -> (tokio::sync::mpsc::Sender<Command>, std::thread::JoinHandle<()>) {
    start_with(dir, policy, RetentionPolicy::default())
}

/// [`start`] with a retention.
fn start_with(
    dir: &std::path::Path,
    policy: SnapshotPolicy,
    retention: RetentionPolicy,
) -> (tokio::sync::mpsc::Sender<Command>, std::thread::JoinHandle<()>) {
    let mut store = Store::open(dir).unwrap();
    store
        .put_job(&StoredJob {
            changes: false,
            name: "cirr".into(),
            query: CIRR.into(),
        })
        .unwrap();
    let mut store = store;
    let (engine, recorder) = durable::recover_with_changes(&mut store, spec()).unwrap();
    durable::spawn_writer(
        store,
        Arc::new(RwLock::new(engine)),
        Arc::new(Metrics::new()),
        policy,
        retention,
        recorder,
    )
    .unwrap()
}

/// Sends `bodies` through the writer, 8 in flight; returns events/s.
fn ingest(writer: &tokio::sync::mpsc::Sender<Command>, bodies: &[&String]) -> f64 {
    let header = LogHeader {
        leaf: None,
        key: None,
        key_field: timeline::event::DEFAULT_KEY_FIELD.into(),
        stream: None,
        restart: Vec::new(),
    };
    let parser = spec().parser();
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    let mut total = 0usize;
    for body in bodies {
        let (events, _) = parse_body(&parser, body.as_bytes(), None);
        total += events.len();
        let (reply, answer) = oneshot::channel();
        writer
            .blocking_send(Command::Ingest(Ingest::new(
                encode_record(&header, body.as_bytes()),
                events,
                0,
                Target::AllLeaves,
                reply,
            )))
            .unwrap();
        pending.push_back(answer);
        if pending.len() >= 8 {
            pending.pop_front().unwrap().blocking_recv().unwrap().unwrap();
        }
    }
    for answer in pending {
        answer.blocking_recv().unwrap().unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn stop(writer: tokio::sync::mpsc::Sender<Command>, thread: std::thread::JoinHandle<()>) {
    drop(writer);
    thread.join().unwrap();
}

/// The bytes of the log's records in `dir`, and the events they hold.
fn log_size(dir: &std::path::Path) -> (usize, u64) {
    let store = Store::open(dir).unwrap();
    let (mut bytes, mut events) = (0usize, 0u64);
    store
        .replay(|_, record| {
            bytes += record.len();
            events += durable::record_events(record).unwrap().1.len() as u64;
            Ok(())
        })
        .unwrap();
    (bytes, events)
}

fn recover_secs(dir: &std::path::Path) -> (f64, Engine) {
    let started = Instant::now();
    let store = Store::open(dir).unwrap();
    let engine = durable::recover(&store, spec()).unwrap();
    (started.elapsed().as_secs_f64(), engine)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let events: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    eprintln!("generating {events} CIRR events ...");
    let bodies = batches(events, 1);
    let all: Vec<&String> = bodies.iter().collect();

    // Ingest with snapshots off, then on (the defaults), each on a fresh store.
    let off_dir = tempfile::tempdir().unwrap();
    let (writer, thread) = start(off_dir.path(), SnapshotPolicy::OFF);
    let rate_off = ingest(&writer, &all);
    stop(writer, thread);
    drop(off_dir);
    let dir = tempfile::tempdir().unwrap();
    // The default policy (every 1,000,000 events) at 10 M events; more often
    // for smaller runs, so that there is a snapshot to recover from.
    let policy = SnapshotPolicy {
        every_events: (events / 10).clamp(1_000, SnapshotPolicy::default().every_events),
        ..SnapshotPolicy::default()
    };
    let (writer, thread) = start(dir.path(), policy);
    let rate_on = ingest(&writer, &all);
    stop(writer, thread);
    println!("ingest, snapshots off: {:.0} events/s", rate_off);
    println!(
        "ingest, snapshots every {} events: {:.0} events/s",
        policy.every_events, rate_on
    );

    // Recovery: snapshot + tail, then (snapshot moved away) the whole log.
    let snap = snapshot::path(dir.path());
    let snap_bytes = std::fs::metadata(&snap).map(|m| m.len()).unwrap_or(0);
    let (read_secs, restore_secs, in_snapshot) = {
        let store = Store::open(dir.path()).unwrap();
        let started = Instant::now();
        let loaded = snapshot::read(dir.path(), store.jobs().unwrap(), store.records())
            .unwrap()
            .expect("a snapshot");
        let read = started.elapsed().as_secs_f64();
        let mut engine = Engine::with_default_stream(spec());
        engine.submit(Some("cirr"), CIRR).unwrap();
        let started = Instant::now();
        engine.restore(loaded.image).unwrap();
        (read, started.elapsed().as_secs_f64(), engine.event_count())
    };
    let (with_snapshot, a) = recover_secs(dir.path());
    let aside = dir.path().join("aside.bin");
    std::fs::rename(&snap, &aside).unwrap();
    let (full, b) = recover_secs(dir.path());
    assert_eq!(a.key_count(), b.key_count());
    assert_eq!(a.event_count(), b.event_count());
    let log_bytes = std::fs::metadata(dir.path().join("timeline.redb")).unwrap().len();
    println!(
        "recovery after {} events ({} keys; log {:.0} MB, snapshot {:.0} MB): snapshot + tail {:.2} s, full replay {:.2} s",
        a.event_count(),
        a.key_count(),
        log_bytes as f64 / 1e6,
        snap_bytes as f64 / 1e6,
        with_snapshot,
        full
    );
    println!(
        "  of which: snapshot read and decoded {read_secs:.2} s, restored {restore_secs:.2} s; tail {} events",
        a.event_count() - in_snapshot
    );
    drop((a, b));
    drop(dir);

    // Retention: the same events with --retention 15min (each group of
    // sessions starts within 10 minutes after the previous one, so older
    // groups expire as newer ones come), snapshots off, looking for keys to
    // forget every 10 s (the default), against the ingest without retention
    // above.
    let dir = tempfile::tempdir().unwrap();
    let retention = RetentionPolicy {
        keep: Some(15 * 60_000),
        ..RetentionPolicy::default()
    };
    let (writer, thread) = start_with(dir.path(), SnapshotPolicy::OFF, retention);
    let rate_retention = ingest(&writer, &all);
    stop(writer, thread);
    let (kept_secs, kept) = recover_secs(dir.path());
    let (record_bytes, logged) = log_size(dir.path());
    let sent_bytes: usize = all.iter().map(|b| b.len()).sum();
    let file = std::fs::metadata(dir.path().join("timeline.redb")).unwrap().len();
    println!(
        "retention 15min: ingest {rate_retention:.0} events/s ({:.2} of without); kept {logged} events of {} keys, \
         {:.0} MB of records of {:.0} MB sent (database file {:.0} MB); full replay {kept_secs:.2} s",
        rate_retention / rate_off,
        kept.key_count(),
        record_bytes as f64 / 1e6,
        sent_bytes as f64 / 1e6,
        file as f64 / 1e6,
    );
    drop(kept);
    drop(dir);

    // At-least-once: every batch three times (the second and third copy
    // after the next batches), identified events only.
    let distinct = (events / 20).clamp(10_000, 500_000);
    let bodies = batches(distinct, 2);
    let mut thrice: Vec<&String> = Vec::new();
    for i in 0..bodies.len() {
        thrice.push(&bodies[i]);
        if i >= 1 {
            thrice.push(&bodies[i - 1]);
        }
        if i >= 2 {
            thrice.push(&bodies[i - 2]);
        }
    }
    thrice.extend(bodies.iter().rev().take(2));
    thrice.push(bodies.last().unwrap());
    let sent_bytes: usize = thrice.iter().map(|b| b.len()).sum();
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = start(dir.path(), SnapshotPolicy::OFF);
    ingest(&writer, &thrice);
    stop(writer, thread);
    let (record_bytes, logged) = log_size(dir.path());
    let distinct_events: usize = bodies.iter().map(|b| b.lines().count()).sum();
    let file = std::fs::metadata(dir.path().join("timeline.redb")).unwrap().len();
    println!(
        "3x redelivery of {distinct_events} distinct events: {logged} logged; record bytes per distinct event {:.1} \
         (sent {:.1}); database file {:.1} bytes per distinct event",
        record_bytes as f64 / distinct_events as f64,
        sent_bytes as f64 / distinct_events as f64,
        file as f64 / distinct_events as f64
    );
}
