//! Events: one JSON object each, with a time, a key, an optional id and columns.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smol_str::SmolStr;

use crate::value::Time;
use crate::value::Value;
use crate::value::bounded_time;

/// The key field used when none is configured.
pub const DEFAULT_KEY_FIELD: &str = "session_id";

/// One event of one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The entity whose timelines the event belongs to.
    pub key: SmolStr,
    /// Event time in milliseconds.
    pub time: Time,
    /// The optional id that makes repeated deliveries count once.
    pub id: Option<SmolStr>,
    /// Every other field with a non-null scalar value, in input order.
    pub columns: Vec<(SmolStr, Value)>,
}

impl Event {
    /// The value of column `name`, if the event has it.
    pub fn column(&self, name: &str) -> Option<&Value> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Renders the event back as a JSON object with `key_field` as its key.
    pub fn to_json(&self, key_field: &str) -> serde_json::Value {
        self.to_json_with(key_field, "time", "event_id")
    }

    /// Renders the event back as a JSON object with its key, time and id in
    /// the fields named.
    pub fn to_json_with(&self, key_field: &str, time_field: &str, id_field: &str) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert(key_field.to_string(), self.key.as_str().into());
        map.insert(time_field.into(), self.time.into());
        if let Some(id) = &self.id {
            map.insert(id_field.into(), id.as_str().into());
        }
        for (name, value) in &self.columns {
            map.insert(name.to_string(), serde_json::to_value(value).unwrap_or_default());
        }
        serde_json::Value::Object(map)
    }
}

/// Why a line or message is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Valid JSON, but not an object.
    #[error("an event must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// No time field (named by the stream, `time` by default).
    #[error("missing field `{0}`")]
    MissingTime(String),
    /// A time that is neither whole milliseconds nor RFC 3339.
    #[error("field `{field}`: {reason}")]
    BadTime {
        /// The time field's name.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No key field.
    #[error("missing key field `{0}`")]
    MissingKey(String),
    /// A key that is not a string or an integer.
    #[error("key field `{field}` must be a string or an integer, found {found}")]
    BadKey {
        /// The key field's name.
        field: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// An id that is not a string or an integer.
    #[error("field `{field}` must be a string or an integer, found {found}")]
    BadId {
        /// The id field's name.
        field: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// A column holding an array or an object.
    #[error("column `{column}` must be a string, number, boolean or null, found {found}")]
    BadColumn {
        /// The column's name.
        column: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// The same field twice in one object.
    #[error("field `{0}` appears twice")]
    DuplicateField(String),
}

/// Reads events from JSON with a configurable key field.
#[derive(Debug, Clone)]
pub struct EventParser {
    key_field: SmolStr,
    time_field: SmolStr,
    id_field: SmolStr,
    default_key: Option<SmolStr>,
    /// The columns whose values are kept (`None`: all); others keep their
    /// name and type only.
    read: Option<std::sync::Arc<[SmolStr]>>,
}

impl Default for EventParser {
    fn default() -> Self {
        Self::new(DEFAULT_KEY_FIELD)
    }
}

impl EventParser {
    /// A parser whose events are keyed by `key_field`.
    pub fn new(key_field: &str) -> Self {
        Self {
            key_field: SmolStr::new(key_field),
            time_field: SmolStr::new_static("time"),
            id_field: SmolStr::new_static("event_id"),
            default_key: None,
            read: None,
        }
    }

    /// The same parser, keeping the values of the columns `read` only: any
    /// other column of an event is given with its name and a value of its
    /// type (`""`, `0`, `0.0` or `false`) instead of its own, and the fast
    /// path skips it without building it. For a batch run whose query reads
    /// those columns only; its events' content (and so which delivery of a
    /// repeated id differs from another) then depends on those columns only.
    pub fn reading_only(mut self, read: &[SmolStr]) -> Self {
        self.read = Some(read.into());
        self
    }

    /// The same parser, reading an event's time from `time` and its id from
    /// `id` (a stream's fields).
    pub fn with_fields(mut self, time: &str, id: &str) -> Self {
        self.time_field = SmolStr::new(time);
        self.id_field = SmolStr::new(id);
        self
    }

    /// The same parser, giving events without a key field the key `key`
    /// (for batches addressed to one key).
    pub fn with_default_key(mut self, key: &str) -> Self {
        self.default_key = Some(SmolStr::new(key));
        self
    }

    /// The key field.
    pub fn key_field(&self) -> &str {
        &self.key_field
    }

    /// The id field.
    pub fn id_field(&self) -> &str {
        &self.id_field
    }

    /// Parses one JSON text (a JSONL line, a message payload).
    pub fn parse(&self, text: &str) -> Result<Event, EventError> {
        self.parse_bytes(text.as_bytes())
    }

    /// Parses one JSON text given as bytes (UTF-8 is checked).
    pub fn parse_bytes(&self, bytes: &[u8]) -> Result<Event, EventError> {
        let mut event = Event {
            key: SmolStr::default(),
            time: 0,
            id: None,
            columns: Vec::new(),
        };
        self.parse_into(bytes, &mut event)?;
        Ok(event)
    }

    /// Parses one JSON text into `event`, reusing its column buffer: the
    /// allocation-free path for bulk input. On error `event` is unspecified.
    pub fn parse_into(&self, bytes: &[u8], event: &mut Event) -> Result<(), EventError> {
        let text = std::str::from_utf8(bytes).map_err(|e| EventError::Json(format!("not UTF-8: {e}")))?;
        if flat::parse(self, text, event).is_some() {
            return Ok(());
        }
        self.parse_full(text, event)
    }

    /// [`EventParser::parse_into`] by serde, without the fast path.
    fn parse_full(&self, text: &str, event: &mut Event) -> Result<(), EventError> {
        let mut de = serde_json::Deserializer::from_str(text);
        event.columns.clear();
        let columns = std::mem::take(&mut event.columns);
        let parsed = EventSeed { parser: self, columns }.deserialize(&mut de);
        match parsed {
            Ok(result) => {
                *event = result?;
                de.end().map_err(|e| EventError::Json(e.to_string()))?;
                if self.read.is_some() {
                    for (name, value) in &mut event.columns {
                        if !self.reads(name) {
                            *value = placeholder(value);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => Err(EventError::Json(e.to_string())),
        }
    }

    /// Whether the values of column `name` are kept.
    fn reads(&self, name: &str) -> bool {
        self.read.as_ref().is_none_or(|read| read.iter().any(|r| r == name))
    }

    /// Converts an already parsed JSON value (an element of an HTTP batch).
    pub fn from_json(&self, json: &serde_json::Value) -> Result<Event, EventError> {
        match (EventSeed {
            parser: self,
            columns: Vec::new(),
        })
        .deserialize(json)
        {
            Ok(result) => result,
            Err(e) => Err(EventError::Json(e.to_string())),
        }
    }
}

/// The value that stands for a column's value that is not read: one of
/// its type.
fn placeholder(value: &Value) -> Value {
    match value {
        Value::Bool(_) => Value::Bool(false),
        Value::Int(_) => Value::Int(0),
        Value::Float(_) => Value::Float(0.0),
        Value::Str(_) => Value::Str(SmolStr::default()),
    }
}

/// The fast path of [`EventParser::parse_into`]: a flat object whose
/// field names and strings have no escapes, whose numbers are integers
/// within 18 digits, read without serde. Anything else (an escape, a float,
/// a nested value, a duplicate field, any error) gives `None`, and the full
/// parser reads the text instead: it gives the same event, or the error.
mod flat {
    use smol_str::SmolStr;

    use super::{Event, EventParser, parse_rfc3339_ms};
    use crate::value::{Value, bounded_time};

    /// A scalar as it appears in the text.
    #[derive(Clone, Copy)]
    enum Scalar<'a> {
        Null,
        Bool(bool),
        Int(i64),
        Str(&'a str),
    }

    struct Cursor<'a> {
        text: &'a str,
        at: usize,
    }

    impl<'a> Cursor<'a> {
        fn bytes(&self) -> &'a [u8] {
            self.text.as_bytes()
        }

        fn skip_ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
                self.at += 1;
            }
        }

        fn next(&mut self) -> Option<u8> {
            let b = *self.bytes().get(self.at)?;
            self.at += 1;
            Some(b)
        }

        /// A string without escapes or control characters.
        fn string(&mut self) -> Option<&'a str> {
            if self.next()? != b'"' {
                return None;
            }
            let start = self.at;
            let bytes = self.bytes();
            loop {
                match *bytes.get(self.at)? {
                    b'"' => break,
                    b'\\' | 0..=0x1f => return None,
                    _ => self.at += 1,
                }
            }
            self.at += 1;
            // Quotes are ASCII: the slice lies on character boundaries.
            self.text.get(start..self.at - 1)
        }

        fn literal(&mut self, word: &[u8]) -> Option<()> {
            let end = self.at + word.len();
            (self.bytes().get(self.at..end)? == word).then(|| self.at = end)
        }

        fn scalar(&mut self) -> Option<Scalar<'a>> {
            match *self.bytes().get(self.at)? {
                b'"' => self.string().map(Scalar::Str),
                b't' => self.literal(b"true").map(|_| Scalar::Bool(true)),
                b'f' => self.literal(b"false").map(|_| Scalar::Bool(false)),
                b'n' => self.literal(b"null").map(|_| Scalar::Null),
                b'-' | b'0'..=b'9' => self.integer().map(Scalar::Int),
                _ => None,
            }
        }

        /// An integer of at most 18 digits, without a leading zero (`0`
        /// itself aside), not `-0`, not followed by a fraction or exponent.
        fn integer(&mut self) -> Option<i64> {
            let bytes = self.bytes();
            let negative = bytes[self.at] == b'-';
            if negative {
                self.at += 1;
            }
            let start = self.at;
            let mut n: i64 = 0;
            while let Some(&d @ b'0'..=b'9') = bytes.get(self.at) {
                if self.at - start == 18 {
                    return None;
                }
                n = n * 10 + i64::from(d - b'0');
                self.at += 1;
            }
            let digits = self.at - start;
            if digits == 0 || (digits > 1 && bytes[start] == b'0') || (negative && n == 0) {
                return None;
            }
            if let Some(b'.' | b'e' | b'E') = bytes.get(self.at) {
                return None;
            }
            Some(if negative { -n } else { n })
        }
    }

    fn name(scalar: Scalar<'_>) -> Option<SmolStr> {
        match scalar {
            Scalar::Str(s) => Some(SmolStr::new(s)),
            Scalar::Int(i) => Some(SmolStr::new(i.to_string())),
            _ => None,
        }
    }

    pub(super) fn parse(parser: &EventParser, text: &str, event: &mut Event) -> Option<()> {
        let mut p = Cursor { text, at: 0 };
        p.skip_ws();
        if p.next()? != b'{' {
            return None;
        }
        event.columns.clear();
        let (mut time, mut key, mut id) = (None, None, None);
        p.skip_ws();
        if p.bytes().get(p.at) == Some(&b'}') {
            p.at += 1;
        } else {
            loop {
                p.skip_ws();
                let field = p.string()?;
                p.skip_ws();
                if p.next()? != b':' {
                    return None;
                }
                p.skip_ws();
                let value = p.scalar()?;
                let slot = if field == parser.time_field {
                    Some(&mut time)
                } else if field == parser.key_field {
                    Some(&mut key)
                } else if field == parser.id_field {
                    Some(&mut id)
                } else {
                    None
                };
                match slot {
                    Some(slot) => {
                        if slot.replace(value).is_some() {
                            return None;
                        }
                    }
                    None => {
                        let value = match value {
                            Scalar::Null => None,
                            Scalar::Bool(b) => Some(Value::Bool(b && parser.reads(field))),
                            Scalar::Int(i) if parser.reads(field) => Some(Value::Int(i)),
                            Scalar::Int(_) => Some(Value::Int(0)),
                            Scalar::Str(s) if parser.reads(field) => Some(Value::str(s)),
                            Scalar::Str(_) => Some(Value::Str(SmolStr::default())),
                        };
                        if let Some(value) = value {
                            if event.columns.iter().any(|(n, _)| n == field) {
                                return None;
                            }
                            event.columns.push((SmolStr::new(field), value));
                        }
                    }
                }
                p.skip_ws();
                match p.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        p.skip_ws();
        if p.at != text.len() {
            return None;
        }
        event.time = match time? {
            Scalar::Int(ms) => bounded_time(i128::from(ms)).ok()?,
            Scalar::Str(s) => parse_rfc3339_ms(s).ok()?,
            _ => return None,
        };
        event.key = match key {
            Some(key) => name(key)?,
            None => parser.default_key.clone()?,
        };
        event.id = match id {
            Some(id) => Some(name(id)?),
            None => None,
        };
        Some(())
    }
}

/// Parses milliseconds from an RFC 3339 timestamp.
pub fn parse_rfc3339_ms(text: &str) -> Result<Time, String> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 timestamp ({e})"))?;
    bounded_time(parsed.unix_timestamp_nanos().div_euclid(1_000_000))
}

/// Parses a time given as text (a query parameter, `--at`): whole
/// milliseconds or RFC 3339, within [`MIN_TIME`](crate::value::MIN_TIME) and
/// [`MAX_TIME`](crate::value::MAX_TIME). A whole number too large for any integer
/// type is out of range, not malformed.
pub fn parse_time_text(text: &str) -> Result<Time, String> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i128>() {
            Ok(ms) => bounded_time(ms),
            Err(_) => Err(format!(
                "{text} ms is out of range: times must lie in [-2^62, 2^62] ms ({} to {})",
                crate::value::MIN_TIME,
                crate::value::MAX_TIME
            )),
        };
    }
    parse_rfc3339_ms(text).map_err(|_| format!("expected milliseconds or an RFC 3339 time, found `{text}`"))
}

/// Deserializes one event; the outer `Result` is the JSON syntax, the inner one the
/// event's shape, so that shape errors are reported as such.
struct EventSeed<'p> {
    parser: &'p EventParser,
    /// A buffer to fill, so that bulk parsing does not allocate per event.
    columns: Vec<(SmolStr, Value)>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Result<Event, EventError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(EventVisitor {
            parser: self.parser,
            columns: self.columns,
        })
    }
}

struct EventVisitor<'p> {
    parser: &'p EventParser,
    columns: Vec<(SmolStr, Value)>,
}

macro_rules! not_an_object {
    ($($method:ident: $ty:ty => $name:expr),* $(,)?) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Ok(Err(EventError::NotAnObject($name)))
        })*
    };
}

impl<'de> Visitor<'de> for EventVisitor<'_> {
    type Value = Result<Event, EventError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    not_an_object! {
        visit_bool: bool => "a boolean",
        visit_i64: i64 => "a number",
        visit_u64: u64 => "a number",
        visit_f64: f64 => "a number",
        visit_str: &str => "a string",
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(EventError::NotAnObject("null")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(EventError::NotAnObject("an array")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let key_field = self.parser.key_field.as_str();
        let mut time: Option<Result<Time, EventError>> = None;
        let mut key: Option<Result<SmolStr, EventError>> = None;
        let mut id: Option<Result<SmolStr, EventError>> = None;
        let mut columns = self.columns;
        let mut problem: Option<EventError> = None;
        while let Some(StrKey(name)) = map.next_key::<StrKey<'de>>()? {
            let scalar = map.next_value::<Scalar>()?;
            if problem.is_some() {
                continue;
            }
            let seen_twice = |slot_filled: bool| slot_filled.then(|| EventError::DuplicateField(name.to_string()));
            if name == self.parser.time_field.as_str() {
                problem = seen_twice(time.is_some());
                time = Some(scalar.into_time().map_err(|reason| EventError::BadTime {
                    field: name.to_string(),
                    reason,
                }));
            } else if name == key_field {
                problem = seen_twice(key.is_some());
                key = Some(scalar.into_name().map_err(|found| EventError::BadKey {
                    field: key_field.to_string(),
                    found,
                }));
            } else if name == self.parser.id_field.as_str() {
                problem = seen_twice(id.is_some());
                id = Some(scalar.into_name().map_err(|found| EventError::BadId {
                    field: name.to_string(),
                    found,
                }));
            } else {
                match scalar {
                    Scalar::Null => {}
                    Scalar::Value(value) => {
                        if columns.iter().any(|(n, _)| n == name.as_ref()) {
                            problem = Some(EventError::DuplicateField(name.to_string()));
                        }
                        columns.push((SmolStr::new(name.as_ref()), value));
                    }
                    Scalar::Invalid(found) => {
                        problem = Some(EventError::BadColumn {
                            column: name.to_string(),
                            found,
                        })
                    }
                }
            }
        }
        if let Some(problem) = problem {
            return Ok(Err(problem));
        }
        let event = (|| {
            let time = time.ok_or_else(|| EventError::MissingTime(self.parser.time_field.to_string()))??;
            let key = match (key, &self.parser.default_key) {
                (Some(key), _) => key?,
                (None, Some(default)) => default.clone(),
                (None, None) => return Err(EventError::MissingKey(key_field.to_string())),
            };
            let id = id.transpose()?;
            Ok(Event { key, time, id, columns })
        })();
        Ok(event)
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct StrKey<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for StrKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = StrKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrKey(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrKey(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrKey(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A field's value: a scalar, null, or the name of the JSON type that a column
/// cannot hold.
enum Scalar {
    Null,
    Value(Value),
    Invalid(&'static str),
}

impl Scalar {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Value(v) => v.type_name(),
            Scalar::Invalid(found) => found,
        }
    }

    fn into_time(self) -> Result<Time, String> {
        match self {
            Scalar::Value(Value::Int(ms)) => bounded_time(i128::from(ms)),
            // Whole floats, and integers beyond i64 (read as floats), are
            // range-checked exactly; `1e300 as i128` saturates, still out of range.
            Scalar::Value(Value::Float(x)) if x.fract() == 0.0 => bounded_time(x as i128),
            Scalar::Value(Value::Float(x)) => Err(format!("{x} is not a whole number of milliseconds")),
            Scalar::Value(Value::Str(s)) => parse_rfc3339_ms(&s),
            other => Err(format!(
                "expected milliseconds or an RFC 3339 string, found {}",
                other.type_name()
            )),
        }
    }

    fn into_name(self) -> Result<SmolStr, &'static str> {
        match self {
            Scalar::Value(Value::Str(s)) => Ok(s),
            Scalar::Value(Value::Int(i)) => Ok(SmolStr::new(i.to_string())),
            other => Err(other.type_name()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Value(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Value(Value::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Value(match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Float(v as f64),
                }))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Value(Value::Float(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Value(Value::str(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Invalid("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Invalid("an object"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Event, EventError> {
        EventParser::default().parse(text)
    }

    #[test]
    fn reads_key_time_id_and_columns() {
        let e = parse(r#"{"session_id":"s1","time":7000,"event_id":"e-17","playerStateChange":"buffer","bitrate":1.5,"ad":true,"gone":null}"#).unwrap();
        assert_eq!(e.key, "s1");
        assert_eq!(e.time, 7000);
        assert_eq!(e.id.as_deref(), Some("e-17"));
        assert_eq!(e.column("playerStateChange"), Some(&Value::str("buffer")));
        assert_eq!(e.column("bitrate"), Some(&Value::Float(1.5)));
        assert_eq!(e.column("ad"), Some(&Value::Bool(true)));
        assert_eq!(e.column("gone"), None, "null means absent");
    }

    #[test]
    fn reads_rfc3339_times_as_unix_milliseconds() {
        let e = parse(r#"{"session_id":"s","time":"1970-01-01T00:00:01.5Z"}"#).unwrap();
        assert_eq!(e.time, 1500);
        let e = parse(r#"{"session_id":"s","time":"2024-01-01T01:00:00+01:00"}"#).unwrap();
        assert_eq!(e.time, 1_704_067_200_000);
    }

    #[test]
    fn key_field_is_configurable() {
        let p = EventParser::new("user");
        let e = p.parse(r#"{"user":42,"time":1,"session_id":"x"}"#).unwrap();
        assert_eq!(e.key, "42");
        assert_eq!(e.column("session_id"), Some(&Value::str("x")));
    }

    #[test]
    fn bad_events_say_why() {
        let cases = [
            ("{", "invalid JSON"),
            ("[1,2]", "must be a JSON object, found an array"),
            (r#"{"session_id":"s"}"#, "missing field `time`"),
            (r#"{"time":1}"#, "missing key field `session_id`"),
            (r#"{"session_id":"s","time":"yesterday"}"#, "not an RFC 3339"),
            (r#"{"session_id":"s","time":1.5}"#, "whole number"),
            (r#"{"session_id":"s","time":1,"x":[1]}"#, "column `x`"),
            (r#"{"session_id":{},"time":1}"#, "key field `session_id`"),
            (r#"{"session_id":"s","time":1,"time":2}"#, "appears twice"),
            (r#"{"session_id":"s","time":1} trailing"#, "invalid JSON"),
            (r#"{"session_id":"s","time":-9000000000000000000}"#, "out of range"),
            (r#"{"session_id":"s","time":9223372036854775808}"#, "out of range"),
            (r#"{"session_id":"s","time":4611686018427387905}"#, "[-2^62, 2^62]"),
            (r#"{"session_id":"s","time":1e300}"#, "out of range"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn times_at_the_bounds_are_events() {
        let e = parse(r#"{"session_id":"s","time":4611686018427387904}"#).unwrap();
        assert_eq!(e.time, crate::value::MAX_TIME);
        let e = parse(r#"{"session_id":"s","time":-4611686018427387904}"#).unwrap();
        assert_eq!(e.time, crate::value::MIN_TIME);
    }

    #[test]
    fn time_text_is_bounded_and_says_so() {
        assert_eq!(parse_time_text("-4611686018427387904"), Ok(crate::value::MIN_TIME));
        assert_eq!(parse_time_text("1970-01-01T00:00:01Z"), Ok(1000));
        for text in [
            "9223372036854775808",
            "4611686018427387905",
            "-99999999999999999999999999999999999999999",
        ] {
            let err = parse_time_text(text).unwrap_err();
            assert!(err.contains("out of range") && err.contains("2^62"), "{text}: {err}");
        }
        assert!(parse_time_text("soon").unwrap_err().contains("RFC 3339"));
        assert!(parse_time_text("-").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn the_fast_path_gives_what_serde_gives_or_leaves_the_line_to_it() {
        let lines = [
            r#"{"session_id":"s1","time":7000,"event_id":"e-17","state":"buffer","n":-3,"ad":true,"gone":null}"#,
            r#" { "session_id" : 42 , "time" : "2024-01-01T01:00:00+01:00" ,"event_id":7} "#,
            r#"{"time":0,"session_id":"k","a":0,"b":false,"c":""}"#,
            r#"{"time":1,"session_id":"k","a":1.5}"#,
            r#"{"time":1,"session_id":"k","a":1e3}"#,
            r#"{"time":1,"session_id":"k","a":-0}"#,
            r#"{"time":1,"session_id":"k","a":01}"#,
            r#"{"time":1,"session_id":"k","a":-}"#,
            r#"{"time":1,"session_id":"k","a":123456789012345678}"#,
            r#"{"time":1,"session_id":"k","a":-123456789012345678}"#,
            r#"{"time":1,"session_id":"k","a":1234567890123456789}"#,
            r#"{"time":1,"session_id":"k","a":99999999999999999999}"#,
            r#"{"time":1,"session_id":"k","a":"x\"y"}"#,
            r#"{"time":1,"session_id":"k","a\u0062":"x"}"#,
            "{\"time\":1,\"session_id\":\"k\",\"a\":\"tab\there\"}",
            r#"{"time":1,"session_id":"k","a":[1]}"#,
            r#"{"time":1,"session_id":"k","a":{}}"#,
            r#"{"time":1,"session_id":"k","a":1,"a":2}"#,
            r#"{"time":1,"session_id":"k","a":null,"a":2}"#,
            r#"{"time":1,"session_id":"k","time":2}"#,
            r#"{"time":1,"session_id":null}"#,
            r#"{"time":1,"session_id":"k","event_id":null}"#,
            r#"{"time":1,"session_id":true}"#,
            r#"{"time":null,"session_id":"k"}"#,
            r#"{"time":"soon","session_id":"k"}"#,
            r#"{"time":4611686018427387905,"session_id":"k"}"#,
            r#"{"time":1,"session_id":"k"} x"#,
            r#"{"time":1,"session_id":"k",}"#,
            r#"{"time":1,"session_id":"k""#,
            r#"{"time":1 "session_id":"k"}"#,
            r#"{"time":tru,"session_id":"k"}"#,
            r#"{"time":1,"session_id":"k","b":truex}"#,
            r#"{"time":1,"session_id":"k","b":nul}"#,
            r#"{}"#,
            r#"{"time":1}"#,
            r#"[1]"#,
            r#""text""#,
            "",
            "\u{feff}{\"time\":1,\"session_id\":\"k\"}",
            "{\"time\":1,\"session_id\":\"\u{43a}\u{43b}\",\"\u{441}\":\"\u{431}\"}",
        ];
        let plain = EventParser::default();
        let projected = EventParser::default().reading_only(&[SmolStr::new("a")]);
        let default_key = EventParser::default().with_default_key("d");
        let blank = || Event {
            key: SmolStr::default(),
            time: 0,
            id: None,
            columns: Vec::new(),
        };
        let mut fast_lines = 0;
        for parser in [&plain, &projected, &default_key] {
            for line in lines {
                let mut full = blank();
                let by_serde = parser.parse_full(line, &mut full).map(|_| full);
                let mut fast = blank();
                if flat::parse(parser, line, &mut fast).is_some() {
                    fast_lines += 1;
                    assert_eq!(Ok(fast), by_serde, "{line}");
                }
                // The public parser gives serde's answer either way.
                let mut got = blank();
                let public = parser.parse_into(line.as_bytes(), &mut got).map(|_| got);
                assert_eq!(public, by_serde, "{line}");
            }
        }
        assert!(fast_lines >= 15, "the plain lines take the fast path ({fast_lines})");
        let mut e = blank();
        assert!(flat::parse(&plain, lines[0], &mut e).is_some());
        assert!(flat::parse(&plain, lines[1], &mut e).is_some());
        assert!(flat::parse(&plain, lines[3], &mut e).is_none(), "floats go to serde");
        // Columns not read keep their name and type, on either path.
        for extra in ["", r#","f":1.5"#] {
            let line = format!(r#"{{"session_id":"s","time":0,"a":"kept","b":"dropped","c":7,"d":true{extra}}}"#);
            let e = projected.parse(&line).unwrap();
            assert_eq!(
                &e.columns[..4],
                &[
                    (SmolStr::new("a"), Value::str("kept")),
                    (SmolStr::new("b"), Value::str("")),
                    (SmolStr::new("c"), Value::Int(0)),
                    (SmolStr::new("d"), Value::Bool(false)),
                ]
            );
            if !extra.is_empty() {
                assert_eq!(e.columns[4], (SmolStr::new("f"), Value::Float(0.0)));
            }
        }
    }

    proptest::proptest! {
        /// Lines pieced together from valid and broken fragments: whenever
        /// the fast path reads one, it reads what serde reads.
        #[test]
        fn the_fast_path_agrees_with_serde_on_pieced_lines(
            pieces in proptest::collection::vec(0usize..FRAGMENTS.len(), 0..12)
        ) {
            let line: String = pieces.iter().map(|&i| FRAGMENTS[i]).collect();
            for parser in [EventParser::default(), EventParser::default().reading_only(&[SmolStr::new("a")])] {
                let blank = Event { key: SmolStr::default(), time: 0, id: None, columns: Vec::new() };
                let mut full = blank.clone();
                let by_serde = parser.parse_full(&line, &mut full).map(|_| full);
                let mut fast = blank.clone();
                if flat::parse(&parser, &line, &mut fast).is_some() {
                    proptest::prop_assert_eq!(Ok(fast), by_serde.clone(), "{}", line);
                }
                let mut got = blank;
                let public = parser.parse_into(line.as_bytes(), &mut got).map(|_| got);
                proptest::prop_assert_eq!(public, by_serde, "{}", line);
            }
        }
    }

    const FRAGMENTS: &[&str] = &[
        "{",
        "}",
        ",",
        ":",
        " ",
        "\t",
        "\"session_id\"",
        "\"time\"",
        "\"event_id\"",
        "\"a\"",
        "\"b\"",
        "\"x\"",
        "\"\"",
        "\"a\\\"b\"",
        "\"\\u0061\"",
        "0",
        "-0",
        "7",
        "-12",
        "007",
        "1.5",
        "1e2",
        "-",
        "123456789012345678",
        "9999999999999999999",
        "true",
        "false",
        "null",
        "tru",
        "[1]",
        "{}",
        "\"2024-01-01T00:00:00Z\"",
        "\"soon\"",
        "\u{e9}",
        "\"\u{e9}\"",
        "\"\n\"",
        "{\"session_id\":\"k\",\"time\":1",
        "{\"time\":5,\"session_id\":3",
    ];

    #[test]
    fn from_json_value_matches_text_parsing() {
        let text = r#"{"session_id":"s","time":5,"a":"x","b":2}"#;
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let p = EventParser::default();
        assert_eq!(p.from_json(&json).unwrap(), p.parse(text).unwrap());
        assert_eq!(
            p.parse(&p.parse(text).unwrap().to_json("session_id").to_string())
                .unwrap(),
            p.parse(text).unwrap()
        );
    }
}
