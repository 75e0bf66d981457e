//! Streams: where a job's events come from, what their key, time and id
//! fields are called, and which columns their events have carried.
//!
//! A job reads one stream, named in its query's header (`from cards key
//! card;`); a query without one reads the default stream. Its keys are that
//! stream's keys: events of other streams never reach its workers, and equal
//! sub-expressions share a worker only within one stream.

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::event::{DEFAULT_KEY_FIELD, Event, EventParser};
use crate::value::{Time, Value};

/// The name of the stream of queries without a `from` header.
pub const DEFAULT_STREAM: &str = "default";

/// The default name of the time field.
pub const DEFAULT_TIME_FIELD: &str = "time";

/// The default name of the id field.
pub const DEFAULT_ID_FIELD: &str = "event_id";

fn default_time() -> SmolStr {
    SmolStr::new_static(DEFAULT_TIME_FIELD)
}

fn default_id() -> SmolStr {
    SmolStr::new_static(DEFAULT_ID_FIELD)
}

/// A named stream and the names of its events' key, time and id fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamSpec {
    /// The stream's name.
    pub name: SmolStr,
    /// The field naming an event's key.
    pub key: SmolStr,
    /// The field holding an event's time.
    #[serde(default = "default_time")]
    pub time: SmolStr,
    /// The field holding an event's optional id.
    #[serde(default = "default_id")]
    pub id: SmolStr,
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec::new(DEFAULT_STREAM, DEFAULT_KEY_FIELD)
    }
}

impl StreamSpec {
    /// Stream `name` keyed by `key`, with the default time and id fields.
    pub fn new(name: &str, key: &str) -> Self {
        StreamSpec {
            name: SmolStr::new(name),
            key: SmolStr::new(key),
            time: default_time(),
            id: default_id(),
        }
    }

    /// Whether this is the default stream (whatever its fields).
    pub fn is_default_stream(&self) -> bool {
        self.name == DEFAULT_STREAM
    }

    /// Whether this is the default stream with the default fields.
    pub fn is_default(&self) -> bool {
        *self == StreamSpec::default()
    }

    /// A parser of this stream's events.
    pub fn parser(&self) -> EventParser {
        EventParser::new(&self.key).with_fields(&self.time, &self.id)
    }

    /// Whether `column` is one of the stream's key, time and id fields.
    pub fn is_field(&self, column: &str) -> bool {
        column == self.key || column == self.time || column == self.id
    }

    /// The header that names this stream in a query (`from cards key card;`),
    /// empty for the default stream with the default key field.
    pub fn header(&self) -> String {
        if *self == StreamSpec::new(DEFAULT_STREAM, &self.key) && self.key == DEFAULT_KEY_FIELD {
            return String::new();
        }
        let mut out = format!("from {}", crate::id::identifier(&self.name));
        if self.key != DEFAULT_KEY_FIELD {
            out.push_str(&format!(" key {}", crate::id::identifier(&self.key)));
        }
        if self.time != DEFAULT_TIME_FIELD {
            out.push_str(&format!(" time {}", crate::id::identifier(&self.time)));
        }
        if self.id != DEFAULT_ID_FIELD {
            out.push_str(&format!(" id {}", crate::id::identifier(&self.id)));
        }
        out.push(';');
        out
    }
}

/// A stream as a query's header names it: the stream and the fields it sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamRef {
    /// The stream; none is the default stream.
    pub name: Option<SmolStr>,
    /// `key <field>`.
    pub key: Option<SmolStr>,
    /// `time <field>`.
    pub time: Option<SmolStr>,
    /// `id <field>`.
    pub id: Option<SmolStr>,
}

impl StreamRef {
    /// The stream's name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_STREAM)
    }

    /// The stream this names, given the stream of that name already known
    /// (if any) and the key field of streams that name none: fields the
    /// header leaves out are the known stream's; a field it names must be
    /// the known stream's.
    pub fn resolve(&self, known: Option<&StreamSpec>, default_key: &str) -> Result<StreamSpec, StreamConflict> {
        let base = known
            .cloned()
            .unwrap_or_else(|| StreamSpec::new(self.name(), default_key));
        let mut spec = base.clone();
        for (given, field, slot) in [
            (&self.key, "key", &mut spec.key),
            (&self.time, "time", &mut spec.time),
            (&self.id, "id", &mut spec.id),
        ] {
            if let Some(given) = given {
                if known.is_some() && given != slot {
                    return Err(StreamConflict {
                        stream: base.name.to_string(),
                        field,
                        known: slot.to_string(),
                        given: given.to_string(),
                    });
                }
                *slot = given.clone();
            }
        }
        Ok(spec)
    }
}

/// A query names a field of a known stream otherwise than the stream does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream `{stream}` has {field} field `{known}`, not `{given}`")]
pub struct StreamConflict {
    /// The stream.
    pub stream: String,
    /// `key`, `time` or `id`.
    pub field: &'static str,
    /// The stream's field.
    pub known: String,
    /// The query's.
    pub given: String,
}

/// The type of a value, as a column's catalogue records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// `true` / `false`.
    Bool,
    /// A whole number.
    Int,
    /// A number with a fraction or an exponent.
    Float,
    /// A string.
    String,
}

impl ValueType {
    /// The type of `value`.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::Bool(_) => ValueType::Bool,
            Value::Int(_) => ValueType::Int,
            Value::Float(_) => ValueType::Float,
            Value::Str(_) => ValueType::String,
        }
    }

    /// Whether a column of this type can equal a literal of type `other`
    /// (integers and floats compare as numbers).
    pub fn compares_with(self, other: ValueType) -> bool {
        self == other
            || matches!(
                (self, other),
                (ValueType::Int, ValueType::Float) | (ValueType::Float, ValueType::Int)
            )
    }

    /// The type's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Bool => "boolean",
            ValueType::Int => "integer",
            ValueType::Float => "float",
            ValueType::String => "string",
        }
    }
}

/// What a stream's events carried of one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// The column's name.
    pub name: SmolStr,
    /// The types of its values, sorted.
    pub types: Vec<ValueType>,
    /// How many events had it.
    pub events: u64,
    /// The earliest event time it was seen at.
    pub first: Time,
    /// The latest.
    pub last: Time,
}

/// The catalogue of a stream's columns: every column its events carried.
/// Kept small and flat: streams have few columns, and the catalogue is
/// updated for every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    columns: Vec<ColumnStats>,
}

impl Columns {
    /// An empty catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one event's columns.
    pub fn observe(&mut self, event: &Event) {
        for (name, value) in &event.columns {
            let ty = ValueType::of(value);
            match self.columns.iter_mut().find(|c| c.name == *name) {
                Some(c) => {
                    c.events += 1;
                    c.first = c.first.min(event.time);
                    c.last = c.last.max(event.time);
                    if !c.types.contains(&ty) {
                        c.types.push(ty);
                        c.types.sort();
                    }
                }
                None => self.columns.push(ColumnStats {
                    name: name.clone(),
                    types: vec![ty],
                    events: 1,
                    first: event.time,
                    last: event.time,
                }),
            }
        }
    }

    /// Adds another catalogue of the same stream.
    pub fn merge(&mut self, other: &Columns) {
        for o in &other.columns {
            match self.columns.iter_mut().find(|c| c.name == o.name) {
                Some(c) => {
                    c.events += o.events;
                    c.first = c.first.min(o.first);
                    c.last = c.last.max(o.last);
                    for t in &o.types {
                        if !c.types.contains(t) {
                            c.types.push(*t);
                        }
                    }
                    c.types.sort();
                }
                None => self.columns.push(o.clone()),
            }
        }
    }

    /// The column named `name`.
    pub fn get(&self, name: &str) -> Option<&ColumnStats> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Every column, by name.
    pub fn sorted(&self) -> Vec<&ColumnStats> {
        let mut all: Vec<&ColumnStats> = self.columns.iter().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Whether no event was seen.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_resolves_against_the_known_stream() {
        let cards = StreamRef {
            name: Some("cards".into()),
            key: Some("card".into()),
            ..Default::default()
        };
        let spec = cards.resolve(None, DEFAULT_KEY_FIELD).unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.key.as_str(), spec.time.as_str()),
            ("cards", "card", "time")
        );
        assert_eq!(spec.header(), "from cards key card;");
        let bare = StreamRef {
            name: Some("cards".into()),
            ..Default::default()
        };
        assert_eq!(bare.resolve(Some(&spec), DEFAULT_KEY_FIELD).unwrap(), spec);
        let other = StreamRef {
            name: Some("cards".into()),
            key: Some("cardId".into()),
            ..Default::default()
        };
        let err = other.resolve(Some(&spec), DEFAULT_KEY_FIELD).unwrap_err();
        assert_eq!(err.to_string(), "stream `cards` has key field `card`, not `cardId`");
        let default = StreamRef::default().resolve(None, "viewer").unwrap();
        assert_eq!(
            (default.name.as_str(), default.key.as_str()),
            (DEFAULT_STREAM, "viewer")
        );
        assert!(StreamSpec::default().header().is_empty());
    }

    #[test]
    fn the_catalogue_counts_columns_and_their_types() {
        let p = StreamSpec::default().parser();
        let mut c = Columns::new();
        for line in [
            r#"{"session_id":"a","time":5,"cdn":"CDN1","n":1}"#,
            r#"{"session_id":"b","time":2,"n":1.5}"#,
        ] {
            c.observe(&p.parse(line).unwrap());
        }
        let n = c.get("n").unwrap();
        assert_eq!((n.events, n.first, n.last), (2, 2, 5));
        assert_eq!(n.types, [ValueType::Int, ValueType::Float]);
        assert!(c.get("session_id").is_none(), "the key is not a column");
        let mut other = Columns::new();
        other.observe(&p.parse(r#"{"session_id":"c","time":9,"cdn":true}"#).unwrap());
        c.merge(&other);
        assert_eq!(c.get("cdn").unwrap().types, [ValueType::Bool, ValueType::String]);
        assert_eq!(
            c.sorted().iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["cdn", "n"]
        );
        assert!(ValueType::Int.compares_with(ValueType::Float));
        assert!(!ValueType::String.compares_with(ValueType::Int));
    }
}
