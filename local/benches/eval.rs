//! Throughput of `timeline eval` on CIRR data, in process: parsing, leaf
//! updates and per-key evaluation, separately and together.
//!
//! `cargo bench -p timeline-local --bench eval`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use timeline_local::batch::Batch;
use timeline_local::generate::{CirrOptions, write_cirr};

const CIRR: &str = include_str!("../../examples/cirr.tl");

fn data(sessions: u64) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let n = write_cirr(
        &CirrOptions {
            sessions,
            seed: 1,
            late: 0.02,
            duplicates: 0.01,
        },
        &mut out,
    )
    .unwrap();
    (out, n)
}

fn bench(c: &mut Criterion) {
    let query = CIRR;
    let (bytes, events) = data(5_000);
    let mut group = c.benchmark_group("cirr");
    group.throughput(Throughput::Elements(events));
    group.sample_size(20);

    group.bench_function("parse_only", |b| {
        let parser = timeline::EventParser::default();
        b.iter(|| {
            let mut event = parser.parse_bytes(br#"{"session_id":"s","time":0}"#).unwrap();
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                parser.parse_into(line, &mut event).unwrap();
            }
        })
    });

    group.bench_function("ingest", |b| {
        b.iter_batched(
            || Batch::new(query, "session_id").unwrap(),
            |mut batch| {
                batch.read(&bytes[..], |bad| panic!("{bad:?}"), |_| {}).unwrap();
                batch
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("ingest_and_evaluate", |b| {
        b.iter(|| {
            let mut batch = Batch::new(query, "session_id").unwrap();
            batch.read(&bytes[..], |bad| panic!("{bad:?}"), |_| {}).unwrap();
            batch.results().len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
