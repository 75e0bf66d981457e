//! The real Pulsar client (pulsar-rs) against the test broker.

use std::time::Duration;

use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor, producer};
use pulsar_test_broker::Broker;

async fn client(broker: &Broker) -> Pulsar<TokioExecutor> {
    Pulsar::builder(broker.url(), TokioExecutor)
        .build()
        .await
        .expect("connect")
}

async fn produce(pulsar: &Pulsar<TokioExecutor>, topic: &str, range: std::ops::Range<usize>) {
    let mut producer = pulsar.producer().with_topic(topic).build().await.expect("producer");
    for i in range {
        let message = producer::Message {
            payload: format!("m{i}").into_bytes(),
            partition_key: Some(format!("k{}", i % 7)),
            ..Default::default()
        };
        producer
            .send_non_blocking(message)
            .await
            .expect("send")
            .await
            .expect("receipt");
    }
}

async fn consumer(
    pulsar: &Pulsar<TokioExecutor>,
    topic: &str,
    kind: SubType,
    name: &str,
) -> Consumer<Vec<u8>, TokioExecutor> {
    pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription("sub")
        .with_subscription_type(kind)
        .with_consumer_name(name)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .expect("subscribe")
}

async fn receive(c: &mut Consumer<Vec<u8>, TokioExecutor>, n: usize, ack: bool) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("message");
        got.push(String::from_utf8(m.payload.data.clone()).unwrap());
        if ack {
            c.ack(&m).await.expect("ack");
        }
    }
    got
}

#[tokio::test]
async fn produce_consume_ack() {
    let broker = Broker::start().await.unwrap();
    let pulsar = client(&broker).await;
    let mut c = consumer(&pulsar, "t", SubType::Exclusive, "a").await;
    produce(&pulsar, "t", 0..50).await;
    let got = receive(&mut c, 50, true).await;
    assert_eq!(got, (0..50).map(|i| format!("m{i}")).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(broker.backlog("t", "sub"), 0);
    assert_eq!(broker.messages("t").len(), 50);
    assert_eq!(broker.messages("t")[3].key.as_deref(), Some("k3"));
}

#[tokio::test]
async fn unacknowledged_messages_come_back_to_a_new_consumer() {
    let broker = Broker::start().await.unwrap();
    let pulsar = client(&broker).await;
    produce(&pulsar, "t", 0..20).await;
    {
        let mut c = consumer(&pulsar, "t", SubType::Shared, "a").await;
        let got = receive(&mut c, 10, false).await;
        assert_eq!(got.len(), 10);
        c.close().await.unwrap();
    }
    assert_eq!(broker.backlog("t", "sub"), 20);
    let pulsar = client(&broker).await;
    let mut c = consumer(&pulsar, "t", SubType::Shared, "b").await;
    let mut got = receive(&mut c, 20, true).await;
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn dropped_connections_are_recovered_by_the_client() {
    let broker = Broker::start().await.unwrap();
    let pulsar = client(&broker).await;
    let mut c = consumer(&pulsar, "t", SubType::Shared, "a").await;
    produce(&pulsar, "t", 0..10).await;
    let mut got = receive(&mut c, 5, true).await;
    broker.drop_connections();
    produce(&client(&broker).await, "t", 10..20).await;
    got.extend(receive(&mut c, 1, true).await);
    // Everything arrives, unacknowledged ones possibly twice.
    let mut seen: std::collections::BTreeSet<String> = got.into_iter().collect();
    while seen.len() < 20 {
        seen.extend(receive(&mut c, 1, true).await);
    }
    assert_eq!(seen.len(), 20);
}

#[tokio::test]
async fn key_shared_splits_by_key() {
    let broker = Broker::start().await.unwrap();
    let pulsar = client(&broker).await;
    let mut a = consumer(&pulsar, "t", SubType::KeyShared, "a").await;
    let mut b = consumer(&pulsar, "t", SubType::KeyShared, "b").await;
    produce(&pulsar, "t", 0..70).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = broker.consumers("t", "sub");
    assert_eq!(stats.len(), 2);
    let (na, nb) = (stats[0].delivered as usize, stats[1].delivered as usize);
    assert_eq!(na + nb, 70, "{stats:?}");
    assert!(na > 0 && nb > 0, "{stats:?}");
    let ga = receive(&mut a, na, true).await;
    let gb = receive(&mut b, nb, true).await;
    let key = |m: &String| m[1..].parse::<usize>().unwrap() % 7;
    let ka: std::collections::BTreeSet<usize> = ga.iter().map(key).collect();
    let kb: std::collections::BTreeSet<usize> = gb.iter().map(key).collect();
    assert!(ka.is_disjoint(&kb), "a key went to both consumers: {ka:?} {kb:?}");
}

/// Compressed messages pass through untouched: the consumer gets the
/// producer's codec and uncompressed size, and so decodes every message.
#[tokio::test]
async fn compressed_messages_reach_consumers_with_their_codec() {
    use pulsar::compression::{Compression, CompressionLz4, CompressionSnappy, CompressionZlib, CompressionZstd};
    let broker = Broker::start().await.unwrap();
    let pulsar = client(&broker).await;
    let codecs = [
        Compression::Lz4(CompressionLz4::default()),
        Compression::Zlib(CompressionZlib::default()),
        Compression::Zstd(CompressionZstd::default()),
        Compression::Snappy(CompressionSnappy::default()),
    ];
    for (n, codec) in codecs.into_iter().enumerate() {
        let topic = format!("compressed-{n}");
        let mut producer = pulsar
            .producer()
            .with_topic(&topic)
            .with_options(producer::ProducerOptions {
                compression: Some(codec),
                ..Default::default()
            })
            .build()
            .await
            .expect("producer");
        let payload = format!("{{\"text\": \"{}\"}}", "compressible ".repeat(50));
        producer
            .send_non_blocking(payload.clone().into_bytes())
            .await
            .expect("send")
            .await
            .expect("receipt");
        let stored = &broker.messages(&topic)[0];
        assert!(stored.data.len() < payload.len(), "codec {n}: stored compressed");
        let mut c = consumer(&pulsar, &topic, SubType::Exclusive, "c").await;
        assert_eq!(receive(&mut c, 1, true).await, [payload], "codec {n}");
    }
}

/// Refused subscriptions fail the client's subscribe; the next succeeds.
#[tokio::test]
async fn refused_subscribes_then_accepted() {
    let broker = Broker::start().await.unwrap();
    let pulsar = client(&broker).await;
    produce(&pulsar, "refused", 0..3).await;
    broker.refuse_subscribes(1);
    let refused = pulsar
        .consumer()
        .with_topic("refused")
        .with_subscription("sub")
        .build::<Vec<u8>>()
        .await;
    let error = refused.err().expect("the first subscribe is refused").to_string();
    assert!(error.contains("Consumer already exists"), "{error}");
    assert_eq!(broker.subscribes_to_refuse(), 0);
    let mut c = consumer(&pulsar, "refused", SubType::Exclusive, "c").await;
    assert_eq!(receive(&mut c, 3, true).await, ["m0", "m1", "m2"]);
}
