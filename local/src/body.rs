//! Event batches as HTTP bodies carry them: a JSON array, JSON lines, or
//! Golem's envelope `{"events": [...]}`; each bad event reported by its
//! position, the good ones kept.

use serde::Deserialize;
use timeline::{Event, EventError, EventParser};

/// A rejected event of a batch: its position (0-based index; 1-based line for
/// JSONL) and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected {
    /// 0-based position in the batch.
    pub index: usize,
    /// 1-based line, for JSON lines bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The reason.
    pub error: String,
}

/// The body Golem's `EventProcessor.add_events` takes: `{"events": [...]}`,
/// each element an event object or its JSON text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    events: Vec<&'a serde_json::value::RawValue>,
}

/// Longest event key accepted, in bytes: every stored key can be read back
/// through a URL.
pub const MAX_KEY_BYTES: usize = 1024;

/// Parses a batch: a JSON array of events, JSON lines, or the envelope
/// `{"events": [...]}`. Good events are kept whatever their neighbours;
/// `url_key` must match every event's key.
pub fn parse_body(parser: &EventParser, body: &[u8], url_key: Option<&str>) -> (Vec<Event>, Vec<Rejected>) {
    let parsed = parse_body_at(parser, body, url_key);
    (parsed.events, parsed.rejected)
}

/// A batch parsed: its good events with where each stood, and the bad ones.
#[derive(Debug, Default)]
pub struct ParsedBody {
    /// The good events, in order.
    pub events: Vec<Event>,
    /// Where each good event stood: 0-based position and, for JSON lines,
    /// its 1-based line.
    pub positions: Vec<(usize, Option<usize>)>,
    /// The bad events.
    pub rejected: Vec<Rejected>,
}

/// [`parse_body`], keeping each good event's position (to report those the
/// writer refuses later).
pub fn parse_body_at(parser: &EventParser, body: &[u8], url_key: Option<&str>) -> ParsedBody {
    let mut events = Vec::new();
    let mut positions = Vec::new();
    let mut rejected = Vec::new();
    let mut accept = |index: usize, line: Option<usize>, result: Result<Event, EventError>| match result {
        Ok(event) if url_key.is_some_and(|k| k != event.key) => rejected.push(Rejected {
            index,
            line,
            error: format!(
                "event key `{}` does not match the key `{}` in the URL",
                event.key,
                url_key.unwrap_or_default()
            ),
        }),
        Ok(event) if event.key.len() > MAX_KEY_BYTES => rejected.push(Rejected {
            index,
            line,
            error: format!(
                "the event's key is {} bytes long; keys are at most {MAX_KEY_BYTES} bytes",
                event.key.len()
            ),
        }),
        Ok(event) => {
            events.push(event);
            positions.push((index, line));
        }
        Err(e) => rejected.push(Rejected {
            index,
            line,
            error: e.to_string(),
        }),
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let envelope = match first {
        Some(b'{') => serde_json::from_slice::<Envelope>(body).ok(),
        _ => None,
    };
    if let Some(envelope) = envelope {
        for (i, item) in envelope.events.iter().enumerate() {
            let text = match serde_json::from_str::<String>(item.get()) {
                Ok(inner) => inner,
                Err(_) => item.get().to_string(),
            };
            accept(i, None, parser.parse(&text));
        }
    } else if first == Some(&b'[') {
        match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body) {
            Ok(items) => {
                for (i, item) in items.iter().enumerate() {
                    accept(i, None, parser.parse(item.get()));
                }
            }
            Err(e) => rejected.push(Rejected {
                index: 0,
                line: Some(e.line()),
                error: format!("invalid JSON array: {e}"),
            }),
        }
    } else {
        let mut index = 0;
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            accept(index, Some(n + 1), parser.parse_bytes(line));
            index += 1;
        }
    }
    ParsedBody {
        events,
        positions,
        rejected,
    }
}
