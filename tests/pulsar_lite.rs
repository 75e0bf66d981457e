//! The feeder against pulsar-lite, an independent Pulsar-protocol broker
//! (PyPI), with events produced by the official Python client.

mod support;

use std::time::Duration;

use support::feeder::{Feeder, check_results, cirr, submit, wait_until, without_ids_with_ties};
use support::pulsar_lite::{PulsarLite, checksum_shim, python_produce, python_produce_with};
use support::{CIRR, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cirr_through_pulsar_lite_equals_timeline_eval() {
    let dir = tempfile::tempdir().unwrap();
    let lite = PulsarLite::start(dir.path());
    let shim = checksum_shim(lite.addr).await;
    let server = Server::start(&dir.path().join("serve"), &[]);
    submit(&server, "cirr", CIRR);
    let url = format!("pulsar://{shim}");
    let mut args = Feeder::args(&url, &server, "cirr-events");
    args.extend(["--subscription-type", "shared"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let f = Feeder::start(&args);
    // pulsar-lite: subscribe first, then produce.
    wait_until(
        "the feeder to subscribe",
        30,
        || f.log().contains("consuming"),
        || f.log(),
    );
    std::thread::sleep(Duration::from_millis(300));
    // Without event ids and with ties at one time: pulsar-lite redelivers a
    // lot, and only the message ids the feeder gives events keep the repeats
    // from changing results. A poison message in the middle must not block.
    let mut lines = without_ids_with_ties(&cirr(30, 41));
    let middle = lines.len() / 2;
    lines.insert(middle, "{\"session_id\": \"x\", \"time\": \"soon\"}".to_string());
    python_produce(lite.addr, "persistent://public/default/cirr-events", &lines);
    let poison = lines.remove(middle);
    assert!(poison.contains("soon"));
    wait_until(
        "the feeder to deliver every event",
        90,
        || check_results(&server, CIRR, &lines).is_ok(),
        || format!("{:?}\n{}", check_results(&server, CIRR, &lines), f.log()),
    );
    wait_until(
        "the poison message's dead letter",
        30,
        || f.log().contains("dead letter"),
        || f.log(),
    );
}

/// Every compression codec of the official Python producer (LZ4, ZLIB,
/// ZSTD and Snappy, which it writes as raw blocks), in batches: every event
/// arrives. The feeder talks to pulsar-lite directly (its frames carry no
/// checksum).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_codec_of_the_official_producer_delivers_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let lite = PulsarLite::start(dir.path());
    let server = Server::start(&dir.path().join("serve"), &[]);
    submit(&server, "cirr", CIRR);
    let codecs = ["LZ4", "ZLib", "ZSTD", "SNAPPY"];
    let topics: Vec<String> = codecs.iter().map(|c| format!("codec-{}", c.to_lowercase())).collect();
    let url = format!("pulsar://{}", lite.addr);
    let mut args = Feeder::args(&url, &server, &topics.join(","));
    args.extend(["--subscription-type", "failover"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let f = Feeder::start(&args);
    wait_until(
        "the feeder to subscribe",
        30,
        || f.log().contains("consuming"),
        || f.log(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let lines = cirr(40, 43);
    let share = lines.len().div_ceil(codecs.len());
    for ((codec, topic), part) in codecs.iter().zip(&topics).zip(lines.chunks(share)) {
        python_produce_with(
            lite.addr,
            &format!("persistent://public/default/{topic}"),
            part,
            codec,
            true,
        );
    }
    wait_until(
        "the feeder to deliver every event",
        90,
        || check_results(&server, CIRR, &lines).is_ok(),
        || format!("{:?}\n{}", check_results(&server, CIRR, &lines), f.log()),
    );
    assert!(!f.log().contains("dead letter"), "{}", f.log());
}
