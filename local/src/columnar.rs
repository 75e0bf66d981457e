//! Events from Parquet and Arrow IPC files, for `timeline eval`: typed
//! columns are read straight into events, without going through JSON, and
//! only the columns a query reads are decoded.
//!
//! A row is the event the same fields would make as a JSON object: the key
//! is text or an integer, the time is whole milliseconds, an RFC 3339 text, a
//! timestamp or a date; the id is text or an integer; every other column
//! read is a boolean, an integer, a number or text (a null is absent). A
//! timestamp or date in another column is its milliseconds since the Unix
//! epoch; a decimal is an integer when its scale is 0 and a number otherwise.
//! A row that cannot be an event (a time out of range, a list in a column the
//! query reads, a NaN) is rejected with its row number, and the rest are
//! kept.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Float16Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema, TimeUnit};
use smol_str::SmolStr;
use timeline::value::bounded_time;
use timeline::{Columns, Event, EventError, Time, Value};

/// A columnar file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnarFormat {
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC, as a file (Feather v2) or a stream.
    ArrowIpc,
}

/// Rows per batch decoded.
const BATCH_ROWS: usize = 8192;

/// What to read of a file: the event's fields, and which other columns.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// The key field.
    pub key: &'a str,
    /// The time field.
    pub time: &'a str,
    /// The id field.
    pub id: &'a str,
    /// The columns to read besides those (`None`: every column).
    pub columns: Option<&'a [SmolStr]>,
}

/// An open columnar file: its batches of rows, and where each field is in
/// them.
pub struct ColumnarFile {
    batches: Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>,
    layout: Layout,
    unread: Columns,
}

/// Where the event's fields are in a batch.
#[derive(Debug, Clone)]
pub struct Layout {
    key: usize,
    time: usize,
    id: Option<usize>,
    /// (index in the batch, name) of every other column read.
    columns: Vec<(usize, SmolStr)>,
}

impl ColumnarFile {
    /// Opens `path` and reads the fields `fields` asks for. A file without
    /// the key or time column, or with one of a type no row could use, is
    /// refused here, whole.
    pub fn open(path: &Path, format: ColumnarFormat, fields: Fields<'_>) -> std::io::Result<Self> {
        guarded(|| match format {
            ColumnarFormat::Parquet => open_parquet(path, fields),
            ColumnarFormat::ArrowIpc => open_ipc(path, fields),
        })
        .unwrap_or_else(|why| Err(invalid(format!("{}: the file is corrupt ({why})", format.name()))))
    }

    /// Where the fields are in each batch.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The columns of the file that are not read, with the types their
    /// values would have (for the query's warnings: they name no column the
    /// query reads, but a misspelt name's nearest column may be one).
    pub fn unread_columns(&self) -> &Columns {
        &self.unread
    }

    /// The next batch of rows; a corrupt part of the file ends the read with
    /// an error.
    pub fn next_batch(&mut self) -> Option<std::io::Result<RecordBatch>> {
        let batches = &mut self.batches;
        match guarded(|| batches.next()) {
            Ok(next) => next.map(|b| b.map_err(|e| invalid(explain(e)))),
            Err(why) => Some(Err(invalid(format!(
                "the file is corrupt (decoding a batch failed: {why})"
            )))),
        }
    }
}

thread_local! {
    /// Whether a panic in this thread is caught by [`guarded`] and reported
    /// as an error, not printed.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic in it (a reader meeting a malformed file it
/// does not check) into an error with the panic's message, printed by no
/// panic hook.
pub fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a malformed part".to_string())
    })
}

impl ColumnarFormat {
    /// The format's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            ColumnarFormat::Parquet => "Parquet",
            ColumnarFormat::ArrowIpc => "Arrow IPC",
        }
    }
}

/// A reader's error, with what to do of a codec this build leaves out.
fn explain(error: String) -> String {
    match error.split_once("Disabled feature at compile time: ") {
        Some((_, codec)) => format!(
            "the file is compressed with {codec}, which `timeline` does not read \
             (it reads Snappy, Zstandard, gzip and LZ4): rewrite it with one of those"
        ),
        None => error,
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn open_parquet(path: &Path, fields: Fields<'_>) -> std::io::Result<ColumnarFile> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| invalid(format!("Parquet: {e}")))?;
    let schema = builder.schema().clone();
    let (indices, layout, unread) = plan(&schema, fields)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| invalid(format!("Parquet: {e}")))?;
    Ok(ColumnarFile {
        batches: Box::new(reader.map(|b| b.map_err(|e| format!("Parquet: {e}")))),
        layout,
        unread,
    })
}

/// The magic bytes an Arrow IPC file starts with (a stream has none).
const IPC_FILE_MAGIC: &[u8] = b"ARROW1";

fn open_ipc(path: &Path, fields: Fields<'_>) -> std::io::Result<ColumnarFile> {
    use arrow_ipc::reader::{FileReader, StreamReader};
    let mut file = File::open(path)?;
    let mut magic = [0u8; 6];
    let is_file = file.read_exact(&mut magic).is_ok() && magic == IPC_FILE_MAGIC;
    file.rewind()?;
    let ipc = |e: arrow_schema::ArrowError| invalid(format!("Arrow IPC: {e}"));
    let schema = if is_file {
        FileReader::try_new_buffered(&mut file, None).map_err(ipc)?.schema()
    } else {
        StreamReader::try_new_buffered(&mut file, None).map_err(ipc)?.schema()
    };
    let (indices, layout, unread) = plan(&schema, fields)?;
    file.rewind()?;
    let batches: Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send> = if is_file {
        let reader = FileReader::try_new_buffered(file, Some(indices)).map_err(ipc)?;
        Box::new(reader.map(|b| b.map_err(|e| format!("Arrow IPC: {e}"))))
    } else {
        let reader = StreamReader::try_new_buffered(file, Some(indices)).map_err(ipc)?;
        Box::new(reader.map(|b| b.map_err(|e| format!("Arrow IPC: {e}"))))
    };
    Ok(ColumnarFile {
        batches,
        layout,
        unread,
    })
}

/// The top-level columns to read (sorted), where the fields are in the
/// batches read, and the catalogue of the columns left unread.
fn plan(schema: &Schema, fields: Fields<'_>) -> std::io::Result<(Vec<usize>, Layout, Columns)> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let find = |name: &str, what: &str| -> std::io::Result<Option<usize>> {
        let mut at = names.iter().enumerate().filter(|(_, n)| **n == name).map(|(i, _)| i);
        let first = at.next();
        if first.is_some() && at.next().is_some() {
            return Err(invalid(format!("the file has two columns named `{name}` ({what})")));
        }
        Ok(first)
    };
    let key = find(fields.key, "the key field")?.ok_or_else(|| {
        invalid(format!(
            "the file has no column `{}`, the events' key field (name the key with --key, or in the query's header)",
            fields.key
        ))
    })?;
    let time = find(fields.time, "the time field")?.ok_or_else(|| {
        invalid(format!(
            "the file has no column `{}`, the events' time field",
            fields.time
        ))
    })?;
    let id = find(fields.id, "the id field")?;
    let check = |at: usize, what: &str, ok: fn(&DataType) -> bool| -> std::io::Result<()> {
        let field = &schema.fields()[at];
        if ok(field.data_type()) {
            Ok(())
        } else {
            Err(invalid(format!(
                "column `{}` ({what}) is of type {}, which {what} cannot be",
                field.name(),
                field.data_type()
            )))
        }
    };
    check(key, "the key", is_name_type)?;
    check(time, "the time", is_time_type)?;
    if let Some(id) = id {
        check(id, "the id", is_name_type)?;
    }
    let mut columns = Vec::new();
    let mut unread = Columns::new();
    let mut placeholder = Event {
        key: SmolStr::default(),
        time: 0,
        id: None,
        columns: Vec::new(),
    };
    for (i, field) in schema.fields().iter().enumerate() {
        let name = field.name().as_str();
        if i == key || i == time || Some(i) == id || name == fields.key || name == fields.time || name == fields.id {
            continue;
        }
        let wanted = fields.columns.is_none_or(|c| c.iter().any(|w| w == name));
        if wanted {
            if columns.iter().any(|(_, n): &(usize, SmolStr)| n == name) {
                return Err(invalid(format!("the file has two columns named `{name}`")));
            }
            columns.push((i, SmolStr::new(name)));
        } else if let Some(value) = placeholder_value(field.data_type()) {
            placeholder.columns.push((SmolStr::new(name), value));
        }
    }
    if !placeholder.columns.is_empty() {
        unread.observe(&placeholder);
    }
    let mut indices: Vec<usize> = [key, time]
        .into_iter()
        .chain(id)
        .chain(columns.iter().map(|(i, _)| *i))
        .collect();
    indices.sort_unstable();
    // The readers' batches hold only the projected columns, in file order.
    let position = |i: usize| indices.iter().position(|&j| j == i).unwrap_or(0);
    let layout = Layout {
        key: position(key),
        time: position(time),
        id: id.map(position),
        columns: columns.into_iter().map(|(i, name)| (position(i), name)).collect(),
    };
    Ok((indices, layout, unread))
}

/// A value of the type a column of `data_type` holds, if it holds one.
fn placeholder_value(data_type: &DataType) -> Option<Value> {
    use DataType::*;
    Some(match data_type {
        Boolean => Value::Bool(false),
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Timestamp(..) | Date32 | Date64 => {
            Value::Int(0)
        }
        Decimal32(_, 0) | Decimal64(_, 0) | Decimal128(_, 0) => Value::Int(0),
        Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) => Value::Float(0.0),
        Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView => Value::str(""),
        Dictionary(_, values) => return placeholder_value(values),
        _ => return None,
    })
}

fn is_name_type(data_type: &DataType) -> bool {
    use DataType::*;
    match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Utf8 | LargeUtf8 | Utf8View | Binary
        | LargeBinary | BinaryView | Null => true,
        Decimal32(_, 0) | Decimal64(_, 0) | Decimal128(_, 0) => true,
        Dictionary(_, values) => is_name_type(values),
        _ => false,
    }
}

fn is_time_type(data_type: &DataType) -> bool {
    use DataType::*;
    match data_type {
        Timestamp(..) | Date32 | Date64 | Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..)
        | Decimal128(..) => true,
        Dictionary(_, values) => is_time_type(values),
        other => is_name_type(other),
    }
}

/// One cell of a column, as read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    Big(u64),
    Float(f64),
    Str(&'a str),
    /// Bytes that are not UTF-8.
    Bytes,
    /// A timestamp or date: milliseconds since the Unix epoch (floored).
    Millis(i128),
    /// A value no event field can hold: the name of its kind.
    Invalid(&'static str),
}

/// A column of one batch, its type resolved once.
enum Cells<'a> {
    Null,
    Bool(&'a arrow_array::BooleanArray),
    I8(&'a arrow_array::Int8Array),
    I16(&'a arrow_array::Int16Array),
    I32(&'a arrow_array::Int32Array),
    I64(&'a arrow_array::Int64Array),
    U8(&'a arrow_array::UInt8Array),
    U16(&'a arrow_array::UInt16Array),
    U32(&'a arrow_array::UInt32Array),
    U64(&'a arrow_array::UInt64Array),
    F16(&'a arrow_array::Float16Array),
    F32(&'a arrow_array::Float32Array),
    F64(&'a arrow_array::Float64Array),
    /// Decimal values with their scale.
    D32(&'a arrow_array::Decimal32Array, i8),
    D64(&'a arrow_array::Decimal64Array, i8),
    D128(&'a arrow_array::Decimal128Array, i8),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    StrView(&'a arrow_array::StringViewArray),
    Bin(&'a arrow_array::BinaryArray),
    LargeBin(&'a arrow_array::LargeBinaryArray),
    BinView(&'a arrow_array::BinaryViewArray),
    /// Timestamps: (array, values, milliseconds = value * mul / div).
    Stamp(&'a dyn Array, &'a [i64], i128, i128),
    Date32(&'a arrow_array::Date32Array),
    Date64(&'a arrow_array::Date64Array),
    /// Dictionary-encoded: each row's index into the values (`None`: null).
    Dict(Vec<Option<usize>>, Box<Cells<'a>>),
    /// Values of another kind: each non-null one is that.
    Other(&'a dyn Array, &'static str),
}

impl<'a> Cells<'a> {
    fn of(array: &'a dyn Array) -> Self {
        use DataType::*;
        let other = |name| Cells::Other(array, name);
        macro_rules! typed {
            ($variant:ident, $ty:ty) => {
                match array.as_primitive_opt::<$ty>() {
                    Some(a) => Cells::$variant(a),
                    None => other("a value of an unexpected layout"),
                }
            };
        }
        match array.data_type() {
            Null => Cells::Null,
            Boolean => array
                .as_boolean_opt()
                .map_or_else(|| other("a value of an unexpected layout"), Cells::Bool),
            Int8 => typed!(I8, Int8Type),
            Int16 => typed!(I16, Int16Type),
            Int32 => typed!(I32, Int32Type),
            Int64 => typed!(I64, Int64Type),
            UInt8 => typed!(U8, UInt8Type),
            UInt16 => typed!(U16, UInt16Type),
            UInt32 => typed!(U32, UInt32Type),
            UInt64 => typed!(U64, UInt64Type),
            Float16 => typed!(F16, Float16Type),
            Float32 => typed!(F32, Float32Type),
            Float64 => typed!(F64, Float64Type),
            Decimal32(_, scale) => match array.as_primitive_opt::<Decimal32Type>() {
                Some(a) => Cells::D32(a, *scale),
                None => other("a value of an unexpected layout"),
            },
            Decimal64(_, scale) => match array.as_primitive_opt::<Decimal64Type>() {
                Some(a) => Cells::D64(a, *scale),
                None => other("a value of an unexpected layout"),
            },
            Decimal128(_, scale) => match array.as_primitive_opt::<Decimal128Type>() {
                Some(a) => Cells::D128(a, *scale),
                None => other("a value of an unexpected layout"),
            },
            Utf8 => array.as_string_opt::<i32>().map_or_else(|| other("?"), Cells::Str),
            LargeUtf8 => array.as_string_opt::<i64>().map_or_else(|| other("?"), Cells::LargeStr),
            Utf8View => array.as_string_view_opt().map_or_else(|| other("?"), Cells::StrView),
            Binary => array.as_binary_opt::<i32>().map_or_else(|| other("?"), Cells::Bin),
            LargeBinary => array.as_binary_opt::<i64>().map_or_else(|| other("?"), Cells::LargeBin),
            BinaryView => array.as_binary_view_opt().map_or_else(|| other("?"), Cells::BinView),
            Timestamp(unit, _) => {
                let values = match unit {
                    TimeUnit::Second => array.as_primitive_opt::<TimestampSecondType>().map(|a| &a.values()[..]),
                    TimeUnit::Millisecond => array
                        .as_primitive_opt::<TimestampMillisecondType>()
                        .map(|a| &a.values()[..]),
                    TimeUnit::Microsecond => array
                        .as_primitive_opt::<TimestampMicrosecondType>()
                        .map(|a| &a.values()[..]),
                    TimeUnit::Nanosecond => array
                        .as_primitive_opt::<TimestampNanosecondType>()
                        .map(|a| &a.values()[..]),
                };
                let (mul, div) = match unit {
                    TimeUnit::Second => (1000, 1),
                    TimeUnit::Millisecond => (1, 1),
                    TimeUnit::Microsecond => (1, 1000),
                    TimeUnit::Nanosecond => (1, 1_000_000),
                };
                match values {
                    Some(values) => Cells::Stamp(array, values, mul, div),
                    None => other("a value of an unexpected layout"),
                }
            }
            Date32 => typed!(Date32, Date32Type),
            Date64 => typed!(Date64, Date64Type),
            Dictionary(..) => match array.as_any_dictionary_opt() {
                Some(dict) => {
                    let keys = dict.keys();
                    let normalized = dict.normalized_keys();
                    let rows = (0..array.len())
                        .map(|i| (!keys.is_null(i)).then(|| normalized.get(i).copied()).flatten())
                        .collect();
                    Cells::Dict(rows, Box::new(Cells::of(dict.values().as_ref())))
                }
                None => other("a value of an unexpected layout"),
            },
            List(_) | LargeList(_) | FixedSizeList(..) | ListView(_) | LargeListView(_) => other("an array"),
            Struct(_) | Map(..) => other("an object"),
            _ => other("a value of an unsupported type"),
        }
    }

    fn get(&self, row: usize) -> Cell<'a> {
        macro_rules! at {
            ($a:expr, $f:expr) => {
                if $a.is_null(row) {
                    Cell::Null
                } else {
                    $f($a.value(row))
                }
            };
        }
        match self {
            Cells::Null => Cell::Null,
            Cells::Bool(a) => at!(a, Cell::Bool),
            Cells::I8(a) => at!(a, |v| Cell::Int(i64::from(v))),
            Cells::I16(a) => at!(a, |v| Cell::Int(i64::from(v))),
            Cells::I32(a) => at!(a, |v| Cell::Int(i64::from(v))),
            Cells::I64(a) => at!(a, Cell::Int),
            Cells::U8(a) => at!(a, |v| Cell::Int(i64::from(v))),
            Cells::U16(a) => at!(a, |v| Cell::Int(i64::from(v))),
            Cells::U32(a) => at!(a, |v| Cell::Int(i64::from(v))),
            Cells::U64(a) => at!(a, |v: u64| i64::try_from(v).map_or(Cell::Big(v), Cell::Int)),
            Cells::F16(a) => at!(a, |v: half_f16::F16| Cell::Float(v.to_f64())),
            Cells::F32(a) => at!(a, |v| Cell::Float(f64::from(v))),
            Cells::F64(a) => at!(a, Cell::Float),
            Cells::D32(a, scale) => at!(a, |v| decimal(i128::from(v), *scale)),
            Cells::D64(a, scale) => at!(a, |v| decimal(i128::from(v), *scale)),
            Cells::D128(a, scale) => at!(a, |v| decimal(v, *scale)),
            Cells::Str(a) => at!(a, Cell::Str),
            Cells::LargeStr(a) => at!(a, Cell::Str),
            Cells::StrView(a) => at!(a, Cell::Str),
            Cells::Bin(a) => at!(a, bytes),
            Cells::LargeBin(a) => at!(a, bytes),
            Cells::BinView(a) => at!(a, bytes),
            Cells::Stamp(a, values, mul, div) => {
                if a.is_null(row) {
                    Cell::Null
                } else {
                    values
                        .get(row)
                        .map_or(Cell::Null, |&v| Cell::Millis((i128::from(v) * mul).div_euclid(*div)))
                }
            }
            Cells::Date32(a) => at!(a, |v| Cell::Millis(i128::from(v) * 86_400_000)),
            Cells::Date64(a) => at!(a, |v| Cell::Millis(i128::from(v))),
            Cells::Dict(rows, values) => match rows.get(row).copied().flatten() {
                Some(i) if i < values.len() => values.get(i),
                _ => Cell::Null,
            },
            Cells::Other(a, name) => {
                if a.is_null(row) {
                    Cell::Null
                } else {
                    Cell::Invalid(name)
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Cells::Null => usize::MAX,
            Cells::Bool(a) => a.len(),
            Cells::I8(a) => a.len(),
            Cells::I16(a) => a.len(),
            Cells::I32(a) => a.len(),
            Cells::I64(a) => a.len(),
            Cells::U8(a) => a.len(),
            Cells::U16(a) => a.len(),
            Cells::U32(a) => a.len(),
            Cells::U64(a) => a.len(),
            Cells::F16(a) => a.len(),
            Cells::F32(a) => a.len(),
            Cells::F64(a) => a.len(),
            Cells::D32(a, _) => a.len(),
            Cells::D64(a, _) => a.len(),
            Cells::D128(a, _) => a.len(),
            Cells::Str(a) => a.len(),
            Cells::LargeStr(a) => a.len(),
            Cells::StrView(a) => a.len(),
            Cells::Bin(a) => a.len(),
            Cells::LargeBin(a) => a.len(),
            Cells::BinView(a) => a.len(),
            Cells::Stamp(a, ..) => a.len(),
            Cells::Date32(a) => a.len(),
            Cells::Date64(a) => a.len(),
            Cells::Dict(rows, _) => rows.len(),
            Cells::Other(a, _) => a.len(),
        }
    }
}

/// `half`'s f16, named through arrow's re-export.
mod half_f16 {
    pub type F16 = <arrow_array::types::Float16Type as arrow_array::ArrowPrimitiveType>::Native;
}

fn bytes(b: &[u8]) -> Cell<'_> {
    std::str::from_utf8(b).map_or(Cell::Bytes, Cell::Str)
}

/// A decimal's value: an integer at scale 0 (when it fits), else a number.
fn decimal(v: i128, scale: i8) -> Cell<'static> {
    if scale == 0
        && let Ok(i) = i64::try_from(v)
    {
        return Cell::Int(i);
    }
    Cell::Float(v as f64 / 10f64.powi(i32::from(scale)))
}

/// The columns of one batch, as `layout` places the event's fields.
pub struct Rows<'a> {
    key: Cells<'a>,
    time: Cells<'a>,
    id: Cells<'a>,
    columns: Vec<(&'a SmolStr, Cells<'a>)>,
    rows: usize,
}

impl<'a> Rows<'a> {
    /// The rows of `batch`.
    pub fn new(batch: &'a RecordBatch, layout: &'a Layout) -> Self {
        let column = |i: usize| -> Cells<'a> {
            match batch.columns().get(i) {
                Some(a) => Cells::of(a.as_ref()),
                None => Cells::Null,
            }
        };
        let rows = batch.num_rows();
        let fit = |c: Cells<'a>| if c.len() < rows { Cells::Null } else { c };
        Rows {
            key: fit(column(layout.key)),
            time: fit(column(layout.time)),
            id: layout.id.map_or(Cells::Null, |i| fit(column(i))),
            columns: layout.columns.iter().map(|(i, name)| (name, fit(column(*i)))).collect(),
            rows,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Calls `f` with the bytes of row `row`'s key as text (as the event's
    /// key will be), or `None` when the row has no usable key; builds
    /// nothing.
    pub fn with_key<R>(&self, row: usize, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        match self.key.get(row) {
            Cell::Str(s) => f(Some(s.as_bytes())),
            Cell::Int(i) => f(Some(itoa(i, &mut [0u8; 20]).as_bytes())),
            _ => f(None),
        }
    }

    /// The key of row `row`; `key_field` names it in errors.
    pub fn key(&self, row: usize, key_field: &str) -> Result<SmolStr, EventError> {
        match name(self.key.get(row)) {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(EventError::MissingKey(key_field.to_string())),
            Err(found) => Err(EventError::BadKey {
                field: key_field.to_string(),
                found,
            }),
        }
    }

    /// Fills `event` with row `row`, whose key is `key`; `time_field` and
    /// `id_field` name those fields in errors. On error `event` is
    /// unspecified.
    pub fn event(
        &self,
        row: usize,
        key: SmolStr,
        time_field: &str,
        id_field: &str,
        event: &mut Event,
    ) -> Result<(), EventError> {
        event.columns.clear();
        for (name, cells) in &self.columns {
            match value(cells.get(row)) {
                Ok(Some(value)) => event.columns.push(((*name).clone(), value)),
                Ok(None) => {}
                Err(found) => {
                    return Err(EventError::BadColumn {
                        column: name.to_string(),
                        found,
                    });
                }
            }
        }
        event.time = time(self.time.get(row)).map_err(|reason| match reason {
            None => EventError::MissingTime(time_field.to_string()),
            Some(reason) => EventError::BadTime {
                field: time_field.to_string(),
                reason,
            },
        })?;
        event.id = name(self.id.get(row)).map_err(|found| EventError::BadId {
            field: id_field.to_string(),
            found,
        })?;
        event.key = key;
        Ok(())
    }
}

/// A key or id: text or an integer.
fn name(cell: Cell<'_>) -> Result<Option<SmolStr>, &'static str> {
    match cell {
        Cell::Null => Ok(None),
        Cell::Str(s) => Ok(Some(SmolStr::new(s))),
        Cell::Int(i) => Ok(Some(SmolStr::new(itoa(i, &mut [0u8; 20])))),
        Cell::Big(_) | Cell::Float(_) => Err("float"),
        Cell::Bool(_) => Err("boolean"),
        Cell::Bytes => Err("binary that is not UTF-8"),
        Cell::Millis(_) => Err("a timestamp"),
        Cell::Invalid(found) => Err(found),
    }
}

/// `i` in decimal, in `buf` (20 bytes hold i64::MIN's 19 digits and its sign).
fn itoa(i: i64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    let mut n = i.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// A time: `Err(None)` when absent, `Err(Some(reason))` when not a time.
fn time(cell: Cell<'_>) -> Result<Time, Option<String>> {
    match cell {
        Cell::Null => Err(None),
        Cell::Int(ms) => bounded_time(i128::from(ms)).map_err(Some),
        Cell::Big(ms) => bounded_time(i128::from(ms)).map_err(Some),
        Cell::Millis(ms) => bounded_time(ms).map_err(Some),
        Cell::Float(x) if x.is_finite() && x.fract() == 0.0 => bounded_time(x as i128).map_err(Some),
        Cell::Float(x) => Err(Some(format!("{x} is not a whole number of milliseconds"))),
        Cell::Str(s) => timeline::event::parse_rfc3339_ms(s).map_err(Some),
        Cell::Bool(_) => Err(Some(
            "expected milliseconds or an RFC 3339 string, found boolean".to_string(),
        )),
        Cell::Bytes => Err(Some("binary that is not UTF-8".to_string())),
        Cell::Invalid(found) => Err(Some(format!(
            "expected milliseconds or an RFC 3339 string, found {found}"
        ))),
    }
}

/// A column's value: `None` when absent, `Err` with what was found when no
/// column can hold it.
fn value(cell: Cell<'_>) -> Result<Option<Value>, &'static str> {
    Ok(Some(match cell {
        Cell::Null => return Ok(None),
        Cell::Bool(b) => Value::Bool(b),
        Cell::Int(i) => Value::Int(i),
        Cell::Big(u) => Value::Float(u as f64),
        Cell::Float(x) if x.is_finite() => Value::Float(x),
        Cell::Float(_) => return Err("NaN or an infinity"),
        Cell::Str(s) => Value::str(s),
        Cell::Bytes => return Err("binary that is not UTF-8"),
        Cell::Millis(ms) => match i64::try_from(ms) {
            Ok(ms) => Value::Int(ms),
            Err(_) => Value::Float(ms as f64),
        },
        Cell::Invalid(found) => return Err(found),
    }))
}

/// Reads the whole of `input` into a temporary file (standard input, which a
/// columnar reader cannot seek in).
pub fn spool(mut input: impl Read) -> std::io::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    std::io::copy(&mut input, file.as_file_mut())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_keys_are() {
        for i in [0, 7, -7, 42, i64::MAX, i64::MIN, 1_000_000] {
            assert_eq!(itoa(i, &mut [0u8; 20]), i.to_string());
        }
    }

    #[test]
    fn cells_become_the_values_json_would_give() {
        assert_eq!(value(Cell::Int(3)), Ok(Some(Value::Int(3))));
        assert_eq!(value(Cell::Big(u64::MAX)), Ok(Some(Value::Float(u64::MAX as f64))));
        assert_eq!(value(Cell::Float(f64::NAN)), Err("NaN or an infinity"));
        assert_eq!(value(Cell::Null), Ok(None));
        assert_eq!(decimal(150, 2), Cell::Float(1.5));
        assert_eq!(decimal(15, 0), Cell::Int(15));
        assert_eq!(time(Cell::Millis(1500)), Ok(1500));
        assert!(time(Cell::Int(i64::MAX)).unwrap_err().unwrap().contains("out of range"));
        assert!(time(Cell::Float(1.5)).unwrap_err().unwrap().contains("whole number"));
        assert_eq!(time(Cell::Null), Err(None));
        assert_eq!(name(Cell::Int(-3)), Ok(Some(SmolStr::new("-3"))));
        assert_eq!(name(Cell::Bool(true)), Err("boolean"));
    }
}
