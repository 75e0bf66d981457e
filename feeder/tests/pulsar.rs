//! The feeder against the in-memory Pulsar-protocol broker: compressed
//! messages (raw Snappy too), messages no client can decode, refused
//! subscriptions, grouped acknowledgements, negative acknowledgements,
//! seeks.

mod support;

use prost::Message as _;
use pulsar::compression::{Compression, CompressionLz4, CompressionSnappy, CompressionZlib, CompressionZstd};
use pulsar::message::proto;
use pulsar::producer::ProducerOptions;
use pulsar_test_broker::Broker;
use support::{Feeder, assert_stored, cirr, free_addr, metric, produce, start_server, wait_until};

const SUB: &str = "timeline-feeder";

fn wait_drained(broker: &Broker, topics: &[&str], left: usize, feeder: &Feeder) {
    wait_until(
        "the backlog to drain",
        60,
        || topics.iter().map(|t| broker.backlog(t, SUB)).sum::<usize>() == left,
        || {
            let backlog: Vec<usize> = topics.iter().map(|t| broker.backlog(t, SUB)).collect();
            format!("backlog {backlog:?}\nfeeder log:\n{}", feeder.log())
        },
    );
}

/// An LZ4, a ZLIB, a ZSTD and a Snappy producer (batching, as producers
/// usually do) each deliver every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_delivers_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let codecs = [
        ("lz4", Compression::Lz4(CompressionLz4::default())),
        ("zlib", Compression::Zlib(CompressionZlib::default())),
        ("zstd", Compression::Zstd(CompressionZstd::default())),
        ("snappy", Compression::Snappy(CompressionSnappy::default())),
    ];
    let topics: Vec<&str> = codecs.iter().map(|(name, _)| *name).collect();
    let feeder = Feeder::start(&broker.url(), &topics.join(","), &base, &[]);
    let mut sent = Vec::new();
    for (seed, (name, codec)) in codecs.into_iter().enumerate() {
        let lines = cirr(15, seed as u64, &format!("{name}-"));
        let options = ProducerOptions {
            compression: Some(codec),
            batch_size: Some(25),
            ..Default::default()
        };
        produce(&broker.url(), name, &lines, options).await;
        let stored = broker.messages(name);
        assert!(
            stored.len() < lines.len(),
            "{name}: the producer batched ({} messages for {} events)",
            stored.len(),
            lines.len()
        );
        sent.push((name, lines));
    }
    wait_drained(&broker, &topics, 0, &feeder);
    for (name, lines) in &sent {
        assert_stored(&base, lines, name);
        assert!(broker.messages(&format!("{name}-{SUB}-DLQ")).is_empty(), "{name}");
    }
    assert!(!feeder.log().contains("consumer error"), "{}", feeder.log());
}

/// Metadata of a message stored as a producer would send it.
fn metadata(
    publish_time: u64,
    codec: proto::CompressionType,
    uncompressed: usize,
    batch: Option<i32>,
) -> proto::MessageMetadata {
    proto::MessageMetadata {
        producer_name: "test".into(),
        sequence_id: 0,
        publish_time,
        compression: Some(codec as i32),
        uncompressed_size: Some(uncompressed as u32),
        num_messages_in_batch: batch,
        ..Default::default()
    }
}

/// A batch payload, as producers write it: each event with its
/// `session_id` as key.
fn batch_payload(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        let key = serde_json::from_str::<serde_json::Value>(line).unwrap()["session_id"]
            .as_str()
            .map(str::to_string);
        let single = proto::SingleMessageMetadata {
            partition_key: key,
            payload_size: line.len() as i32,
            ..Default::default()
        };
        out.extend_from_slice(&(single.encoded_len() as u32).to_be_bytes());
        out.extend_from_slice(&single.encode_to_vec());
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// Messages that cannot be decoded (a corrupt LZ4 payload, a broken batch,
/// an unknown codec) go to the dead-letter topic with the reason and their
/// bytes as received, and are acknowledged, even on a cumulatively
/// acknowledged subscription; the events around them are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_go_to_the_dead_letter_topic_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let metrics = free_addr().to_string();
    let lines = cirr(6, 3, "");
    let (before, after) = lines.split_at(lines.len() / 2);
    produce(&broker.url(), "corrupt", before, ProducerOptions::default()).await;
    let corrupt: [(&[u8], proto::MessageMetadata, &str); 3] = [
        (
            b"\xff\xff\xff\xff not lz4 at all",
            metadata(1, proto::CompressionType::Lz4, 100, None),
            "LZ4",
        ),
        (
            b"\x00\x00\x00\x02\x10",
            metadata(1, proto::CompressionType::None, 5, Some(3)),
            "batch member 0 of 3",
        ),
        (
            b"{}",
            {
                let mut m = metadata(1, proto::CompressionType::None, 2, None);
                m.compression = Some(42);
                m
            },
            "unknown compression codec 42",
        ),
    ];
    for (data, metadata, _) in &corrupt {
        broker.inject("corrupt", metadata.clone(), data.to_vec());
    }
    produce(&broker.url(), "corrupt", after, ProducerOptions::default()).await;
    let feeder = Feeder::start(
        &broker.url(),
        "corrupt",
        &base,
        &["--subscription-type", "failover", "--metrics-addr", &metrics],
    );
    wait_drained(&broker, &["corrupt"], 0, &feeder);
    assert_stored(&base, &lines, "the events around the corrupt messages");
    let dead = broker.messages(&format!("corrupt-{SUB}-DLQ"));
    assert_eq!(dead.len(), corrupt.len(), "{}", feeder.log());
    for (dead, (data, _, reason)) in dead.iter().zip(&corrupt) {
        assert_eq!(dead.data, *data, "the bytes as received");
        let said = &dead.properties["reason"];
        assert!(
            said.starts_with("cannot decode the message") && said.contains(reason),
            "{said}"
        );
        assert!(dead.properties["origin"].starts_with("persistent://public/default/corrupt@"));
    }
    let text = ureq::get(&format!("http://{metrics}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(metric(&text, "feeder_undecodable_messages_total"), 3.0, "{text}");
}

/// The Java, C++ and Python clients compress with raw Snappy blocks
/// (pulsar-rs writes framed Snappy): batched or not, every event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_snappy_messages_deliver_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let lines = cirr(8, 21, "");
    let (batched, single) = lines.split_at(lines.len() - 5);
    for chunk in batched.chunks(7) {
        let plain = batch_payload(chunk);
        let packed = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        let m = metadata(1, proto::CompressionType::Snappy, plain.len(), Some(chunk.len() as i32));
        broker.inject("raw-snappy", m, packed);
    }
    for line in single {
        let packed = snap::raw::Encoder::new().compress_vec(line.as_bytes()).unwrap();
        broker.inject(
            "raw-snappy",
            metadata(1, proto::CompressionType::Snappy, line.len(), None),
            packed,
        );
    }
    let feeder = Feeder::start(&broker.url(), "raw-snappy", &base, &[]);
    wait_drained(&broker, &["raw-snappy"], 0, &feeder);
    assert_stored(&base, &lines, "raw Snappy");
    assert!(
        broker.messages(&format!("raw-snappy-{SUB}-DLQ")).is_empty(),
        "{}",
        feeder.log()
    );
}

/// On shared and key-shared subscriptions acknowledgements go several
/// message ids per ACK frame; on failover one cumulative acknowledgement
/// covers many messages. Every message is acknowledged either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_are_grouped() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let lines = cirr(40, 22, "");
    produce(&broker.url(), "grouped", &lines, ProducerOptions::default()).await;
    for kind in ["shared", "key-shared", "failover"] {
        let sub = format!("grouped-{kind}");
        let feeder = Feeder::start(
            &broker.url(),
            "grouped",
            &base,
            &[
                "--subscription",
                &sub,
                "--subscription-type",
                kind,
                "--batch-size",
                "100",
            ],
        );
        wait_until(
            "every message to be acknowledged",
            60,
            || broker.backlog("grouped", &sub) == 0,
            || feeder.log(),
        );
        let frames = broker.ack_frames("grouped", &sub);
        let acked: std::collections::BTreeSet<u64> = frames.iter().flat_map(|f| f.entries.iter().copied()).collect();
        if kind == "failover" {
            assert!(
                frames.iter().all(|f| f.cumulative && f.entries.len() == 1),
                "{frames:?}"
            );
            assert!(acked.contains(&(lines.len() as u64 - 1)), "the last message");
        } else {
            assert!(frames.iter().all(|f| !f.cumulative));
            assert_eq!(acked.len(), lines.len(), "{kind}: every message once");
            let ids: usize = frames.iter().map(|f| f.entries.len()).sum();
            assert_eq!(ids, lines.len(), "{kind}: no message acknowledged twice");
        }
        assert!(
            frames.len() * 20 <= lines.len(),
            "{kind}: {} ACK frames for {} messages",
            frames.len(),
            lines.len()
        );
    }
}

/// `--ack-timeout`: messages held past it (their stream has no job) are
/// asked for again (REDELIVER_UNACKNOWLEDGED_MESSAGES with their ids, a
/// negative acknowledgement), and with `--max-redeliveries 1` the redelivered
/// copies go to the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_past_the_ack_timeout_are_asked_for_again() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let lines = cirr(1, 23, "");
    produce(&broker.url(), "slow", &lines[..3], ProducerOptions::default()).await;
    let feeder = Feeder::start(
        &broker.url(),
        "unused",
        &base,
        &[
            "--stream-topic",
            "cards=slow",
            "--ack-timeout",
            "300ms",
            "--max-redeliveries",
            "1",
        ],
    );
    wait_drained(&broker, &["slow"], 0, &feeder);
    let requests = broker.redeliver_requests("slow", SUB);
    let asked: std::collections::BTreeSet<u64> = requests.iter().flatten().copied().collect();
    assert_eq!(
        asked.into_iter().collect::<Vec<_>>(),
        [0, 1, 2],
        "the held messages, by id: {requests:?}\n{}",
        feeder.log()
    );
    assert!(requests.iter().all(|r| !r.is_empty()), "by id, never all: {requests:?}");
    assert_eq!(broker.messages(&format!("slow-{SUB}-DLQ")).len(), 3, "{}", feeder.log());
}

/// `--start-message-id` and `--start-publish-time` move the subscription
/// once at start: only the messages from there on are delivered, and the
/// earlier ones count as acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_starts_at_a_message_id_or_a_publish_time() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let lines = cirr(3, 24, "");
    assert!(lines.len() > 10);
    for (i, line) in lines.iter().enumerate() {
        let m = metadata(1000 * (i as u64 + 1), proto::CompressionType::None, line.len(), None);
        broker.inject("start-id", m.clone(), line.clone().into_bytes());
        broker.inject("start-time", m, line.clone().into_bytes());
    }
    let from = 6usize;
    let by_id = Feeder::start(
        &broker.url(),
        "start-id",
        &base,
        &["--start-message-id", &format!("1:{from}")],
    );
    wait_drained(&broker, &["start-id"], 0, &by_id);
    drop(by_id);
    let by_time = Feeder::start(
        &broker.url(),
        "start-time",
        &base,
        &[
            "--start-publish-time",
            &(1000 * (from as u64 + 1)).to_string(),
            "--subscription",
            "t",
        ],
    );
    wait_until(
        "the backlog to drain",
        60,
        || broker.backlog("start-time", "t") == 0,
        || by_time.log(),
    );
    assert_eq!(
        broker.dispatched("start-time", "t"),
        (lines.len() - from) as u64,
        "{}",
        by_time.log()
    );
    assert_eq!(broker.dispatched("start-id", SUB), (lines.len() - from) as u64);
    assert_stored(&base, &lines[from..], "from the start position");
    let before: Vec<String> = lines[..from]
        .iter()
        .filter(|l| {
            !lines[from..].iter().any(|m| {
                let (a, b): (serde_json::Value, serde_json::Value) =
                    (serde_json::from_str(l).unwrap(), serde_json::from_str(m).unwrap());
                a["session_id"] == b["session_id"]
            })
        })
        .cloned()
        .collect();
    for line in &before {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["session_id"].as_str().unwrap();
        assert!(
            support::stored_events(&base, key).is_empty(),
            "{key} was before the start"
        );
    }
}

/// A broker that refuses subscriptions ("Consumer already exists", right
/// after a restart) does not stop the feeder: it retries with backoff and
/// then delivers everything. Its log has no colour codes (not a terminal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_is_retried_until_everything_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let lines = cirr(6, 4, "");
    produce(&broker.url(), "refused", &lines, ProducerOptions::default()).await;
    broker.refuse_subscribes(4);
    let mut feeder = Feeder::start(&broker.url(), "refused", &base, &[]);
    wait_drained(&broker, &["refused"], 0, &feeder);
    assert_eq!(broker.subscribes_to_refuse(), 0);
    assert!(feeder.running(), "{}", feeder.log());
    assert_stored(&base, &lines, "after refused subscriptions");
    let log = feeder.log();
    assert!(log.contains("cannot subscribe; retrying"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is not a terminal:\n{log}"
    );
}

/// The broker closes the feeder's connections and consumers and refuses the
/// next subscriptions: the feeder subscribes again and delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_errors_mid_stream_only_make_the_feeder_subscribe_again() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    broker.set_dispatch_delay(std::time::Duration::from_micros(300));
    let lines = cirr(20, 5, "");
    produce(&broker.url(), "faults", &lines, ProducerOptions::default()).await;
    let mut feeder = Feeder::start(&broker.url(), "faults", &base, &["--batch-size", "50"]);
    for round in 0..3 {
        wait_until(
            "some progress",
            30,
            || broker.backlog("faults", SUB) < lines.len() * (3 - round) / 4,
            || feeder.log(),
        );
        broker.refuse_subscribes(3);
        if round % 2 == 0 {
            broker.drop_connections();
        } else {
            broker.close_consumers();
        }
    }
    broker.set_dispatch_delay(std::time::Duration::ZERO);
    wait_drained(&broker, &["faults"], 0, &feeder);
    assert!(feeder.running(), "{}", feeder.log());
    assert_stored(&base, &lines, "after broker faults");
}

/// `--pulsar-token-file` is read again when the feeder connects again (a
/// rotated token is sent after the broker dropped the connections) and when
/// the broker challenges it on an open connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_is_read_again_on_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(&dir.path().join("data"));
    let broker = Broker::start().await.unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let feeder = Feeder::start(
        &broker.url(),
        "tokens",
        &base,
        &["--pulsar-token-file", token.to_str().unwrap()],
    );
    let sent = |data: &str| {
        broker
            .authentications()
            .iter()
            .any(|(method, d)| method == "token" && d == data.as_bytes())
    };
    wait_until("the first token", 30, || sent("first-token"), || feeder.log());
    std::fs::write(&token, "second-token").unwrap();
    broker.drop_connections();
    wait_until("the rotated token", 30, || sent("second-token"), || feeder.log());
    // An authentication challenge on the open connection is answered with
    // the file as it is now, without connecting again.
    std::fs::write(&token, "third-token").unwrap();
    let connects = broker.authentications().len();
    broker.challenge_auth();
    wait_until(
        "the challenge's answer",
        30,
        || {
            broker
                .auth_responses()
                .iter()
                .any(|(method, d)| method == "token" && d == b"third-token")
        },
        || feeder.log(),
    );
    assert_eq!(broker.authentications().len(), connects, "no new connection");
    let lines = cirr(3, 11, "");
    produce(&broker.url(), "tokens", &lines, ProducerOptions::default()).await;
    wait_drained(&broker, &["tokens"], 0, &feeder);
    assert_stored(&base, &lines, "after the token changed");
}

/// `--max-redeliveries`: messages the broker delivered that often without an
/// acknowledgement (here: held while no job reads their stream, then the
/// broker closed the consumer) go to the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_redelivered_too_often_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let lines = cirr(1, 12, "");
    produce(&broker.url(), "held", &lines[..3], ProducerOptions::default()).await;
    let feeder = Feeder::start(
        &broker.url(),
        "unused",
        &base,
        &["--stream-topic", "cards=held", "--max-redeliveries", "1"],
    );
    wait_until("dispatch", 30, || broker.dispatched("held", SUB) >= 3, || feeder.log());
    assert_eq!(broker.backlog("held", SUB), 3, "held, not acknowledged");
    broker.close_consumers();
    wait_drained(&broker, &["held"], 0, &feeder);
    assert_eq!(broker.messages(&format!("held-{SUB}-DLQ")).len(), 3, "{}", feeder.log());
}

/// `--topic-pattern` consumes every matching topic, including one created
/// while the feeder runs, and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_pattern_picks_up_new_topics() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let first = cirr(3, 13, "a-");
    let later = cirr(3, 14, "b-");
    let other = cirr(1, 15, "other-");
    produce(&broker.url(), "region-a", &first, ProducerOptions::default()).await;
    produce(&broker.url(), "elsewhere", &other, ProducerOptions::default()).await;
    let mut args = vec![
        "--topic-pattern",
        "persistent://public/default/region-.*",
        "--topic-refresh",
        "300ms",
    ];
    args.extend(["--dead-letter-topic", "regions-DLQ"]);
    let feeder = Feeder::start(&broker.url(), "", &base, &args[..]);
    wait_drained(&broker, &["region-a"], 0, &feeder);
    produce(&broker.url(), "region-b", &later, ProducerOptions::default()).await;
    wait_drained(&broker, &["region-b"], 0, &feeder);
    assert_stored(&base, &first, "region-a");
    assert_stored(&base, &later, "region-b, created later");
    assert_eq!(broker.backlog("elsewhere", SUB), other.len(), "nothing acknowledged");
    assert_eq!(broker.dispatched("elsewhere", SUB), 0, "never subscribed");
}

/// `--time-from event-time`: an event without a time gets its message's
/// event time; a message without one either is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_event_time_is_the_time_of_events_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let pulsar = pulsar::Pulsar::builder(broker.url(), pulsar::TokioExecutor)
        .build()
        .await
        .unwrap();
    let mut producer = pulsar.producer().with_topic("timed").build().await.unwrap();
    for (i, event_time) in [Some(5000u64), Some(7000), None, Some(6000)].into_iter().enumerate() {
        let message = pulsar::producer::Message {
            payload: format!(r#"{{"session_id":"timed","event_id":"e{i}","x":{i}}}"#).into_bytes(),
            event_time,
            ..Default::default()
        };
        producer.send_non_blocking(message).await.unwrap().await.unwrap();
    }
    let feeder = Feeder::start(&broker.url(), "timed", &base, &["--time-from", "event-time"]);
    wait_drained(&broker, &["timed"], 0, &feeder);
    let stored = support::stored_events(&base, "timed");
    let got: Vec<(String, String)> = stored
        .iter()
        .map(|e| (e["event_id"].as_str().unwrap().to_string(), e["time"].to_string()))
        .collect();
    assert_eq!(got.len(), 3, "{stored:?}");
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["e0", "e3", "e1"], "in event-time order: {got:?}");
    let dead = broker.messages(&format!("timed-{SUB}-DLQ"));
    assert_eq!(dead.len(), 1);
    assert!(String::from_utf8_lossy(&dead[0].data).contains("\"e2\""));
}

/// A minimal OAuth2 issuer: OpenID discovery, an empty key set, and a token
/// endpoint that hands out `token` and records each request's form.
async fn oauth2_issuer(token: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::header;
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let json = |body: String| ([(header::CONTENT_TYPE, "application/json")], body);
    let metadata = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}authorize"),
        "token_endpoint": format!("{issuer}token"),
        "jwks_uri": format!("{issuer}jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
    .to_string();
    let seen = requests.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let metadata = metadata.clone();
                async move { json(metadata) }
            }),
        )
        .route("/jwks", get(move || async move { json(r#"{"keys": []}"#.to_string()) }))
        .route(
            "/token",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let authorization = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push(format!("{authorization} {body}"));
                    json(format!(
                        r#"{{"access_token": "{token}", "token_type": "Bearer", "expires_in": 3600}}"#
                    ))
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (issuer, requests)
}

/// OAuth2 client credentials: the feeder discovers the issuer's token
/// endpoint, asks it for a token with the client's credentials and the
/// audience, and connects to the broker with that token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_client_credentials_authenticate_the_feeder() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(&dir.path().join("data"));
    let broker = Broker::start().await.unwrap();
    let (issuer, requests) = oauth2_issuer("token-from-the-issuer").await;
    let credentials = dir.path().join("credentials.json");
    std::fs::write(&credentials, r#"{"client_id": "feeder", "client_secret": "s3cret"}"#).unwrap();
    let credentials_url = format!("file://{}", credentials.display());
    let feeder = Feeder::start(
        &broker.url(),
        "oauth",
        &base,
        &[
            "--oauth2-issuer-url",
            &issuer,
            "--oauth2-credentials-url",
            &credentials_url,
            "--oauth2-audience",
            "urn:pulsar:test",
        ],
    );
    let lines = cirr(3, 25, "");
    produce(&broker.url(), "oauth", &lines, ProducerOptions::default()).await;
    wait_drained(&broker, &["oauth"], 0, &feeder);
    assert_stored(&base, &lines, "with OAuth2");
    let feeder_auth: Vec<(String, Vec<u8>)> = broker
        .authentications()
        .into_iter()
        .filter(|(method, _)| !method.is_empty())
        .collect();
    assert!(!feeder_auth.is_empty());
    assert!(
        feeder_auth
            .iter()
            .all(|(method, data)| method == "token" && data == b"token-from-the-issuer"),
        "{feeder_auth:?}"
    );
    let asked = requests.lock().unwrap().clone();
    assert!(!asked.is_empty(), "{}", feeder.log());
    assert!(
        asked[0].contains("grant_type=client_credentials") && asked[0].contains("audience=urn%3Apulsar%3Atest"),
        "{asked:?}"
    );
    assert!(
        asked[0].contains("s3cret") || asked[0].starts_with("Basic "),
        "the client's credentials: {asked:?}"
    );
}

/// A partitioned topic is consumed partition by partition, its lookups
/// redirected by the broker (and asked again, authoritatively): every event
/// arrives, and an event without an id gets one that names its partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_topic_through_redirected_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    broker.set_partitions("parted", 3);
    let partitions: Vec<String> = (0..3).map(|i| format!("parted-partition-{i}")).collect();
    let lines = cirr(9, 26, "");
    for (i, line) in lines.iter().enumerate() {
        let m = metadata(1, proto::CompressionType::None, line.len(), None);
        broker.inject(&partitions[i % 3], m, line.clone().into_bytes());
    }
    let bare = br#"{"session_id": "no-id", "time": 5}"#;
    let entry = broker.inject(
        &partitions[2],
        metadata(1, proto::CompressionType::None, bare.len(), None),
        bare.to_vec(),
    );
    broker.redirect_lookups(2);
    let feeder = Feeder::start(&broker.url(), "parted", &base, &[]);
    let topics: Vec<&str> = partitions.iter().map(String::as_str).collect();
    wait_drained(&broker, &topics, 0, &feeder);
    assert_stored(&base, &lines, "from three partitions");
    let stored = support::stored_events(&base, "no-id");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        stored[0]["event_id"],
        timeline_feeder::prepare::pulsar_event_id(1, entry, 2, -1),
        "the id names partition 2"
    );
    let lookups = broker.lookups();
    let authoritative = lookups.iter().filter(|(_, a)| *a).count();
    assert_eq!(authoritative, 2, "each redirect followed once: {lookups:?}");
    for partition in &partitions {
        assert!(
            lookups.iter().any(|(t, _)| t.ends_with(partition.as_str())),
            "{partition}: {lookups:?}"
        );
    }
}

/// A message whose payload does not match its frame's checksum goes to the
/// dead-letter topic with the reason; the others are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_with_a_wrong_checksum_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_server(dir.path());
    let broker = Broker::start().await.unwrap();
    let lines = cirr(3, 27, "");
    produce(&broker.url(), "checksum", &lines, ProducerOptions::default()).await;
    broker.corrupt_next_messages(1);
    let feeder = Feeder::start(&broker.url(), "checksum", &base, &["--subscription-type", "failover"]);
    wait_drained(&broker, &["checksum"], 0, &feeder);
    let dead = broker.messages(&format!("checksum-{SUB}-DLQ"));
    assert_eq!(dead.len(), 1, "{}", feeder.log());
    let reason = &dead[0].properties["reason"];
    assert!(reason.contains("checksum mismatch"), "{reason}");
    assert_eq!(dead[0].properties["origin"], "persistent://public/default/checksum@1:0");
    assert_stored(&base, &lines[1..], "every message but the spoilt first");
}
