//! Producer deduplication, over raw protocol frames: per topic and producer
//! name the broker remembers the highest sequence id it stored, answers a
//! SEND at or below it with a receipt without storing it, and tells a new
//! producer of that name the id (`last_sequence_id`).

use futures::{SinkExt, StreamExt};
use pulsar::message::proto::{self, base_command::Type};
use pulsar::message::{Codec, Message, Payload};
use pulsar_test_broker::Broker;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const TOPIC: &str = "persistent://public/default/changes";

struct Client(Framed<TcpStream, Codec>);

fn command(kind: Type, fill: impl FnOnce(&mut proto::BaseCommand)) -> Message {
    let mut command = proto::BaseCommand {
        r#type: kind as i32,
        ..Default::default()
    };
    fill(&mut command);
    Message { command, payload: None }
}

impl Client {
    async fn connect(broker: &Broker) -> Client {
        let stream = TcpStream::connect(broker.addr()).await.unwrap();
        let mut c = Client(Framed::new(stream, Codec));
        c.0.send(command(Type::Connect, |c| {
            c.connect = Some(proto::CommandConnect {
                client_version: "test".into(),
                protocol_version: Some(12),
                ..Default::default()
            })
        }))
        .await
        .unwrap();
        assert_eq!(c.next().await.command.r#type, Type::Connected as i32);
        c
    }

    async fn next(&mut self) -> Message {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.0.next())
            .await
            .expect("an answer in time")
            .expect("the connection open")
            .expect("a frame")
    }

    /// Makes producer `id` named `name`: its `last_sequence_id`, or the
    /// broker's error.
    async fn producer(&mut self, id: u64, name: &str) -> Result<i64, (i32, String)> {
        self.0
            .send(command(Type::Producer, |c| {
                c.producer = Some(proto::CommandProducer {
                    topic: TOPIC.into(),
                    producer_id: id,
                    request_id: id,
                    producer_name: Some(name.into()),
                    ..Default::default()
                })
            }))
            .await
            .unwrap();
        let answer = self.next().await.command;
        match (answer.producer_success, answer.error) {
            (Some(s), _) => {
                assert_eq!(s.producer_name, name);
                Ok(s.last_sequence_id.unwrap())
            }
            (None, Some(e)) => Err((e.error, e.message)),
            _ => panic!("neither PRODUCER_SUCCESS nor ERROR"),
        }
    }

    /// Sends `data` as sequence id `sequence_id`; returns the receipt's
    /// message id (ledger, entry).
    async fn send(&mut self, producer: u64, name: &str, sequence_id: u64, data: &str) -> (u64, u64) {
        let mut m = command(Type::Send, |c| {
            c.send = Some(proto::CommandSend {
                producer_id: producer,
                sequence_id,
                num_messages: Some(1),
                ..Default::default()
            })
        });
        m.payload = Some(Payload {
            metadata: proto::MessageMetadata {
                producer_name: name.into(),
                sequence_id,
                publish_time: 1,
                ..Default::default()
            },
            data: data.as_bytes().to_vec(),
        });
        self.0.send(m).await.unwrap();
        let receipt = self.next().await.command.send_receipt.expect("a receipt");
        assert_eq!((receipt.producer_id, receipt.sequence_id), (producer, sequence_id));
        let id = receipt.message_id.unwrap();
        (id.ledger_id, id.entry_id)
    }
}

fn stored(broker: &Broker) -> Vec<(u64, String)> {
    broker
        .messages(TOPIC)
        .iter()
        .map(|m| (m.sequence_id(), String::from_utf8(m.data.clone()).unwrap()))
        .collect()
}

#[tokio::test]
async fn a_producer_name_resends_nothing_twice_and_learns_where_it_stopped() {
    let broker = Broker::start().await.unwrap();
    let mut first = Client::connect(&broker).await;
    assert_eq!(
        first.producer(1, "sink").await,
        Ok(-1),
        "nothing stored from `sink` yet"
    );
    for seq in [1, 2, 5] {
        assert_eq!(first.send(1, "sink", seq, &format!("m{seq}")).await.0, 1, "stored");
    }
    assert_eq!(
        first.send(1, "sink", 5, "again").await,
        (u64::MAX, u64::MAX),
        "a duplicate"
    );
    assert_eq!(
        first.send(1, "sink", 3, "late").await,
        (u64::MAX, u64::MAX),
        "below the highest"
    );

    let mut second = Client::connect(&broker).await;
    let (code, message) = second.producer(7, "sink").await.unwrap_err();
    assert_eq!(code, proto::ServerError::ProducerBusy as i32);
    assert!(message.contains("already connected"), "{message}");
    assert_eq!(
        second.producer(8, "other").await,
        Ok(-1),
        "another name is another producer"
    );
    assert_eq!(second.send(8, "other", 1, "o1").await.0, 1, "its own sequence");

    drop(first);
    let mut last = Err((0, String::new()));
    for _ in 0..100 {
        last = second.producer(9, "sink").await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(last, Ok(5), "the highest sequence id stored from `sink`");
    assert_eq!(second.send(9, "sink", 5, "resent").await, (u64::MAX, u64::MAX));
    assert_eq!(second.send(9, "sink", 6, "m6").await.0, 1);
    assert_eq!(
        stored(&broker),
        [(1, "m1"), (2, "m2"), (5, "m5"), (1, "o1"), (6, "m6")].map(|(s, d)| (s, d.to_string()))
    );
    assert_eq!(broker.duplicates(TOPIC), 3);
    assert_eq!(broker.last_sequence_id(TOPIC, "sink"), 6);
    assert_eq!(broker.last_sequence_id(TOPIC, "nobody"), -1);
}

#[tokio::test]
async fn without_deduplication_every_send_is_stored() {
    let broker = Broker::start().await.unwrap();
    broker.set_deduplication(false);
    let mut c = Client::connect(&broker).await;
    assert_eq!(c.producer(1, "sink").await, Ok(-1));
    c.send(1, "sink", 1, "a").await;
    c.send(1, "sink", 1, "a").await;
    drop(c);
    let mut c = Client::connect(&broker).await;
    let mut answer = c.producer(2, "sink").await;
    while answer.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        answer = c.producer(2, "sink").await;
    }
    assert_eq!(answer, Ok(-1), "a broker without deduplication tells no sequence id");
    c.send(2, "sink", 1, "a").await;
    assert_eq!(stored(&broker).len(), 3);
    assert_eq!(broker.duplicates(TOPIC), 0);
}
