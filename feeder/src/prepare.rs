//! From source messages to events ready to deliver: validation, the key,
//! and the stable event id.

use serde_json::{Map, Value};
use timeline::EventParser;

/// One message of a source.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message body: one JSON event.
    pub payload: Vec<u8>,
    /// The message's stable id in its source (for Pulsar, its message id);
    /// it becomes the event's id (its stream's id field, `event_id` by
    /// default) when the event has none.
    pub source_id: Option<String>,
    /// The message key (Pulsar's partition key); it names the event's key
    /// when the event has no key field.
    pub key: Option<String>,
    /// Where the message came from, for reports (`line 12`, `events@1:5`).
    pub origin: String,
    /// The message's own time in ms since the epoch (Pulsar's event or
    /// publish time, as `--time-from` says); it becomes the event's time
    /// when the event has none.
    pub time: Option<u64>,
    /// Why the message cannot be read at all (corrupt or unknown
    /// compression, a broken batch): it goes to the dead-letter topic
    /// with this reason, as received.
    pub undecodable: Option<String>,
}

/// A valid event, serialized as it is delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    /// Position of its message in the batch.
    pub index: usize,
    /// The event's key.
    pub key: String,
    /// The event as JSON, with its key and id fields filled in.
    pub json: String,
}

/// A message that cannot be delivered, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Position of its message in the batch.
    pub index: usize,
    /// Why it was refused.
    pub reason: String,
}

/// A batch split into deliverable events and dead letters.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Valid events, in batch order.
    pub ready: Vec<Ready>,
    /// Invalid messages, in batch order.
    pub dead: Vec<DeadLetter>,
}

/// Validates every message of a batch with the same rules as the runtime;
/// `time_field` is the stream's time field.
pub fn prepare(parser: &EventParser, time_field: &str, batch: &[Incoming]) -> Prepared {
    let mut out = Prepared::default();
    for (index, message) in batch.iter().enumerate() {
        match prepare_one(parser, time_field, message) {
            Ok((key, json)) => out.ready.push(Ready { index, key, json }),
            Err(reason) => out.dead.push(DeadLetter { index, reason }),
        }
    }
    out
}

fn prepare_one(parser: &EventParser, time_field: &str, message: &Incoming) -> Result<(String, String), String> {
    if let Some(reason) = &message.undecodable {
        return Err(reason.clone());
    }
    let mut object: Map<String, Value> = match serde_json::from_slice(&message.payload) {
        Ok(Value::Object(object)) => object,
        Ok(other) => return Err(format!("an event must be a JSON object, found {}", kind(&other))),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    let key_field = parser.key_field();
    if !object.contains_key(key_field)
        && let Some(key) = &message.key
    {
        object.insert(key_field.to_string(), Value::String(key.clone()));
    }
    if !object.contains_key(time_field)
        && let Some(time) = message.time
    {
        object.insert(time_field.to_string(), Value::from(time));
    }
    let id_field = parser.id_field();
    if !object.contains_key(id_field)
        && let Some(id) = &message.source_id
    {
        object.insert(id_field.to_string(), Value::String(id.clone()));
    }
    let value = Value::Object(object);
    let event = parser.from_json(&value).map_err(|e| e.to_string())?;
    Ok((event.key.to_string(), value.to_string()))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The event id a Pulsar message gives an event that has none:
/// `pulsar:<ledger>:<entry>:<partition>:<batch index>`, zero-padded so that ids
/// sort in publication order (the order ties at one time are broken by).
pub fn pulsar_event_id(ledger: u64, entry: u64, partition: i32, batch_index: i32) -> String {
    format!(
        "pulsar:{ledger:020}:{entry:020}:{:05}:{:06}",
        partition.max(-1) + 1,
        batch_index.max(-1) + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: &str, id: Option<&str>, key: Option<&str>) -> Incoming {
        Incoming {
            payload: payload.as_bytes().to_vec(),
            source_id: id.map(str::to_string),
            key: key.map(str::to_string),
            origin: "test".into(),
            time: None,
            undecodable: None,
        }
    }

    #[test]
    fn the_message_time_is_the_event_time_only_when_the_event_has_none() {
        let parser = EventParser::new("session_id").with_fields("ts", "event_id");
        let mut with = msg(r#"{"session_id":"a","ts":5}"#, Some("m1"), None);
        with.time = Some(99);
        let mut without = msg(r#"{"session_id":"a"}"#, Some("m2"), None);
        without.time = Some(99);
        let bare = msg(r#"{"session_id":"a"}"#, Some("m3"), None);
        let p = prepare(&parser, "ts", &[with, without, bare]);
        let times: Vec<Value> = p
            .ready
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.json).unwrap()["ts"].clone())
            .collect();
        assert_eq!(times, [Value::from(5), Value::from(99)]);
        assert_eq!(p.dead.len(), 1, "no time at all: {:?}", p.dead);
        assert_eq!(p.dead[0].index, 2);
    }

    #[test]
    fn fills_in_the_event_id_and_the_key_and_keeps_good_events_around_bad_ones() {
        let parser = EventParser::new("session_id");
        let batch = [
            msg(r#"{"session_id":"a","time":5,"x":1}"#, Some("m1"), None),
            msg("not json", Some("m2"), None),
            msg(r#"{"time":6,"x":"y"}"#, Some("m3"), Some("b")),
            msg(r#"{"session_id":"c","time":7,"event_id":"own"}"#, Some("m4"), None),
            msg(r#"{"session_id":"c","x":1}"#, Some("m5"), None),
            msg(r#"{"time":8}"#, Some("m6"), None),
            msg(r#"[1,2]"#, Some("m7"), None),
            msg(r#"{"session_id":"c","time":9,"x":[1]}"#, Some("m8"), None),
        ];
        let p = prepare(&parser, "time", &batch);
        let ready: Vec<(usize, &str)> = p.ready.iter().map(|r| (r.index, r.key.as_str())).collect();
        assert_eq!(ready, [(0, "a"), (2, "b"), (3, "c")]);
        let first: Value = serde_json::from_str(&p.ready[0].json).unwrap();
        assert_eq!(first["event_id"], "m1");
        let second: Value = serde_json::from_str(&p.ready[1].json).unwrap();
        assert_eq!(second["session_id"], "b", "the message key names the event's key");
        let third: Value = serde_json::from_str(&p.ready[2].json).unwrap();
        assert_eq!(third["event_id"], "own", "an event's own id is kept");
        let dead: Vec<usize> = p.dead.iter().map(|d| d.index).collect();
        assert_eq!(dead, [1, 4, 5, 6, 7]);
        assert!(p.dead[0].reason.starts_with("not JSON"), "{}", p.dead[0].reason);
        assert!(p.dead[1].reason.contains("time"), "{}", p.dead[1].reason);
        assert!(p.dead[2].reason.contains("session_id"), "{}", p.dead[2].reason);
        assert!(p.dead[3].reason.contains("array"), "{}", p.dead[3].reason);
    }

    #[test]
    fn a_streams_own_key_and_id_fields_are_filled_in() {
        let parser = timeline::StreamSpec {
            name: "cards".into(),
            key: "card".into(),
            time: "at".into(),
            id: "swipe".into(),
        }
        .parser();
        let batch = [
            msg(r#"{"at":5,"x":1}"#, Some("m1"), Some("c1")),
            msg(r#"{"session_id":"a","at":5}"#, Some("m2"), None),
        ];
        let p = prepare(&parser, "time", &batch);
        assert_eq!(p.ready.len(), 1, "{:?}", p.dead);
        let event: Value = serde_json::from_str(&p.ready[0].json).unwrap();
        assert_eq!(
            (&event["card"], &event["swipe"]),
            (&Value::from("c1"), &Value::from("m1"))
        );
        assert!(event.get("event_id").is_none());
        assert!(p.dead[0].reason.contains("card"), "{}", p.dead[0].reason);
    }

    #[test]
    fn pulsar_ids_sort_in_publication_order() {
        let mut ids = vec![
            pulsar_event_id(7, 10, -1, -1),
            pulsar_event_id(7, 9, -1, -1),
            pulsar_event_id(8, 0, -1, -1),
            pulsar_event_id(7, 9, -1, 3),
            pulsar_event_id(7, 9, -1, 0),
        ];
        ids.sort();
        assert_eq!(
            ids,
            [
                pulsar_event_id(7, 9, -1, -1),
                pulsar_event_id(7, 9, -1, 0),
                pulsar_event_id(7, 9, -1, 3),
                pulsar_event_id(7, 10, -1, -1),
                pulsar_event_id(8, 0, -1, -1),
            ]
        );
    }
}
