//! `timeline eval` over Parquet and Arrow IPC gives what it gives over the
//! same events as JSON lines: every example, generated data with late,
//! repeated and conflicting deliveries, from a file and from standard input,
//! in one thread or several; bad rows are reported with their row number and
//! the rest is kept; hostile files end with an error, never a panic.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder, StringDictionaryBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// How the JSON lines become columns.
#[derive(Debug, Clone, Copy)]
struct Style {
    /// Text columns dictionary-encoded (as many writers do).
    dictionary: bool,
    /// Text times as a timestamp column rather than as text.
    timestamps: bool,
}

const PLAIN: Style = Style {
    dictionary: false,
    timestamps: true,
};

/// The JSON lines `jsonl` as one batch: a column per field, typed by its
/// values (integers, numbers where any value has a fraction, booleans, text);
/// an absent or null field is null. `time` is the time field.
fn to_batch(jsonl: &str, time: &str, style: Style) -> RecordBatch {
    let rows: Vec<serde_json::Map<String, Value>> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: BTreeSet<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for name in names {
        let values: Vec<Option<&Value>> = rows.iter().map(|r| r.get(name).filter(|v| !v.is_null())).collect();
        let present = || values.iter().flatten();
        let (data_type, array): (DataType, ArrayRef) = if present().all(|v| v.is_boolean()) {
            let mut b = BooleanBuilder::new();
            values
                .iter()
                .for_each(|v| b.append_option(v.map(|v| v.as_bool().unwrap())));
            (DataType::Boolean, Arc::new(b.finish()))
        } else if present().all(|v| v.is_i64()) {
            let mut b = Int64Builder::new();
            values
                .iter()
                .for_each(|v| b.append_option(v.map(|v| v.as_i64().unwrap())));
            (DataType::Int64, Arc::new(b.finish()))
        } else if present().all(|v| v.is_number()) {
            let mut b = Float64Builder::new();
            values
                .iter()
                .for_each(|v| b.append_option(v.map(|v| v.as_f64().unwrap())));
            (DataType::Float64, Arc::new(b.finish()))
        } else if present().all(|v| v.is_string()) && name == time && style.timestamps {
            let mut b = TimestampMillisecondBuilder::new().with_timezone("UTC");
            values.iter().for_each(|v| {
                b.append_option(v.map(|v| timeline::event::parse_rfc3339_ms(v.as_str().unwrap()).unwrap()))
            });
            (
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                Arc::new(b.finish()),
            )
        } else if present().all(|v| v.is_string()) && style.dictionary {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            values
                .iter()
                .for_each(|v| b.append_option(v.map(|v| v.as_str().unwrap())));
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                Arc::new(b.finish()),
            )
        } else if present().all(|v| v.is_string()) {
            let mut b = StringBuilder::new();
            values
                .iter()
                .for_each(|v| b.append_option(v.map(|v| v.as_str().unwrap())));
            (DataType::Utf8, Arc::new(b.finish()))
        } else {
            panic!("field {name} mixes types")
        };
        fields.push(Field::new(name, data_type, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

/// Writes `batch` as Parquet with `compression`, in row groups of `group` rows.
fn write_parquet(path: &Path, batch: &RecordBatch, compression: Compression, group: usize) {
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    // Several batches, so that readers meet batch boundaries.
    let mut at = 0;
    while at < batch.num_rows() {
        let n = 7.min(batch.num_rows() - at);
        writer.write(&batch.slice(at, n)).unwrap();
        at += n;
    }
    writer.close().unwrap();
}

/// Writes `batch` as an Arrow IPC file, or stream.
fn write_ipc(path: &Path, batch: &RecordBatch, stream: bool) {
    let file = std::fs::File::create(path).unwrap();
    let mut at = 0;
    let chunks: Vec<RecordBatch> = std::iter::from_fn(|| {
        (at < batch.num_rows()).then(|| {
            let n = 5.min(batch.num_rows() - at);
            at += n;
            batch.slice(at - n, n)
        })
    })
    .collect();
    if stream {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &batch.schema()).unwrap();
        chunks.iter().for_each(|c| w.write(c).unwrap());
        w.finish().unwrap();
    } else {
        let mut w = arrow_ipc::writer::FileWriter::try_new(file, &batch.schema()).unwrap();
        chunks.iter().for_each(|c| w.write(c).unwrap());
        w.finish().unwrap();
    }
}

fn eval(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timeline"));
    command.arg("eval").args(args).current_dir(examples());
    match stdin {
        None => command.output().unwrap(),
        Some(bytes) => support::output_with_stdin(&mut command, bytes),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every columnar rendering of `jsonl` in `dir`, named `stem.*`: Parquet
/// with each codec read, dictionary-encoded text, Arrow IPC files and streams.
fn columnar_files(dir: &Path, stem: &str, jsonl: &str, time: &str) -> Vec<PathBuf> {
    let plain = to_batch(jsonl, time, PLAIN);
    let dictionary = to_batch(
        jsonl,
        time,
        Style {
            dictionary: true,
            timestamps: false,
        },
    );
    let files = [
        (format!("{stem}.parquet"), 0),
        (format!("{stem}-zstd.pq"), 1),
        (format!("{stem}-dict.parquet"), 2),
        (format!("{stem}.arrow"), 3),
        (format!("{stem}.arrows"), 4),
        (format!("{stem}-gzip.parquet"), 5),
        (format!("{stem}-lz4.parquet"), 6),
        (format!("{stem}-lz4.feather"), 7),
    ];
    files
        .into_iter()
        .map(|(name, kind)| {
            let path = dir.join(name);
            match kind {
                0 => write_parquet(&path, &plain, Compression::SNAPPY, 1024),
                1 => write_parquet(&path, &plain, Compression::ZSTD(ZstdLevel::default()), 3),
                2 => write_parquet(&path, &dictionary, Compression::UNCOMPRESSED, 1024),
                3 => write_ipc(&path, &dictionary, false),
                4 => write_ipc(&path, &plain, true),
                5 => write_parquet(&path, &plain, Compression::GZIP(Default::default()), 1024),
                6 => write_parquet(&path, &plain, Compression::LZ4_RAW, 1024),
                _ => {
                    let options = arrow_ipc::writer::IpcWriteOptions::default()
                        .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))
                        .unwrap();
                    let file = std::fs::File::create(&path).unwrap();
                    let mut w =
                        arrow_ipc::writer::FileWriter::try_new_with_options(file, &plain.schema(), options).unwrap();
                    w.write(&plain).unwrap();
                    w.finish().unwrap();
                }
            }
            path
        })
        .collect()
}

#[test]
fn every_example_gives_the_same_results_from_parquet_and_arrow_as_from_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "tl").then(|| path.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        let time = "time";
        let query = format!("@{name}.tl");
        let jsonl_file = format!("{name}.jsonl");
        let jsonl = std::fs::read_to_string(examples().join(&jsonl_file)).unwrap();
        let files = columnar_files(dir.path(), name, &jsonl, time);
        for timeline in [false, true] {
            let mut base = vec!["-q", query.as_str()];
            if timeline {
                base.push("--timeline");
            }
            let mut from_jsonl = base.clone();
            from_jsonl.extend(["-e", jsonl_file.as_str()]);
            let expected = eval(&from_jsonl, None);
            if timeline && text(&expected.stderr).contains("every output of this query is an aggregate") {
                continue;
            }
            assert!(expected.status.success(), "{name}: {}", text(&expected.stderr));
            assert!(!expected.stdout.is_empty());
            for file in &files {
                for threads in ["1", "3"] {
                    let mut args = base.clone();
                    args.extend(["-e", file.to_str().unwrap(), "--threads", threads]);
                    let got = eval(&args, None);
                    assert!(got.status.success(), "{}: {}", file.display(), text(&got.stderr));
                    assert_eq!(text(&got.stdout), text(&expected.stdout), "{}", file.display());
                    assert_eq!(
                        text(&got.stderr),
                        text(&expected.stderr),
                        "{}: warnings",
                        file.display()
                    );
                }
            }
            // From standard input, with the format named.
            let bytes = std::fs::read(&files[0]).unwrap();
            let mut args = base.clone();
            args.extend(["--input", "parquet"]);
            let got = eval(&args, Some(&bytes));
            assert_eq!(
                text(&got.stdout),
                text(&expected.stdout),
                "{name} as Parquet from stdin"
            );
            let bytes = std::fs::read(&files[4]).unwrap();
            let mut args = base.clone();
            args.extend(["--input-format", "arrow", "-e", "-"]);
            let got = eval(&args, Some(&bytes));
            assert_eq!(
                text(&got.stdout),
                text(&expected.stdout),
                "{name} as an Arrow stream from stdin"
            );
        }
    }
}

#[test]
fn generated_sessions_with_late_repeated_and_conflicting_deliveries_give_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl_path = dir.path().join("events.jsonl");
    let generated = Command::new(env!("CARGO_BIN_EXE_timeline"))
        .args([
            "gen",
            "cirr",
            "--sessions",
            "400",
            "--seed",
            "9",
            "--late",
            "0.05",
            "--duplicates",
            "0.05",
        ])
        .arg("-o")
        .arg(&jsonl_path)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let mut jsonl = std::fs::read_to_string(&jsonl_path).unwrap();
    // Deliveries of one id with different contents, in used and unused
    // columns: the least canonical JSON is the event.
    let lines: Vec<&str> = jsonl.lines().collect();
    let mut extra = String::new();
    for line in lines.iter().step_by(97).take(40) {
        let mut event: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        if event.contains_key("playerStateChange") {
            event.insert("playerStateChange".into(), "buffer".into());
        } else {
            event.insert("cdnChange".into(), "CDN1".into());
        }
        event.insert("bitrate".into(), 1.into());
        extra.push_str(&serde_json::to_string(&event).unwrap());
        extra.push('\n');
    }
    jsonl.push_str(&extra);
    std::fs::write(&jsonl_path, &jsonl).unwrap();
    let files = columnar_files(dir.path(), "events", &jsonl, "time");
    let cirr = examples().join("cirr.tl");
    let query = format!("@{}", cirr.display());
    for extra_args in [&[][..], &["--timeline"][..]] {
        let mut args = vec!["-q", query.as_str(), "-e", jsonl_path.to_str().unwrap()];
        args.extend(extra_args);
        let expected = eval(&args, None);
        assert!(expected.status.success(), "{}", text(&expected.stderr));
        assert_eq!(text(&expected.stdout).lines().count(), 400);
        for file in &files {
            for threads in ["1", "2", "4"] {
                let mut args = vec!["-q", query.as_str(), "-e", file.to_str().unwrap(), "--threads", threads];
                args.extend(extra_args);
                let got = eval(&args, None);
                assert!(got.status.success(), "{}: {}", file.display(), text(&got.stderr));
                assert_eq!(
                    text(&got.stdout),
                    text(&expected.stdout),
                    "{} {threads} threads",
                    file.display()
                );
            }
        }
    }
}

/// Deliveries of one id whose contents differ only in a column the query
/// does not read, and in one it reads: the event is the delivery with the
/// least canonical JSON of all its fields, as from JSON lines.
#[test]
fn conflicting_deliveries_are_settled_on_every_column_though_only_some_are_read() {
    let lines = [
        r#"{"session_id":"k","time":0,"event_id":"e0","s":"c"}"#,
        r#"{"session_id":"k","time":10000,"event_id":"e1","s":"b","a":"y"}"#,
        r#"{"session_id":"k","time":10000,"event_id":"e1","s":"a","a":"z"}"#,
        r#"{"session_id":"k","time":20000,"event_id":"e2","s":"c","x":1}"#,
        r#"{"session_id":"k","time":20000,"event_id":"e2","s":"d"}"#,
        r#"{"session_id":"k","time":30000,"s":"c"}"#,
        r#"{"session_id":"j","time":5000,"event_id":"e1","s":"b"}"#,
    ];
    let jsonl = lines.join("\n") + "\n";
    let dir = tempfile::tempdir().unwrap();
    let jsonl_path = dir.path().join("events.jsonl");
    std::fs::write(&jsonl_path, &jsonl).unwrap();
    let files = columnar_files(dir.path(), "events", &jsonl, "time");
    for query in [
        "latest_event_to_state(s)",
        r#"has_existed(s == "b")"#,
        r#"has_existed_within(s == "a", 5s)"#,
    ] {
        let expected = eval(&["--timeline", "-q", query, "-e", jsonl_path.to_str().unwrap()], None);
        assert!(expected.status.success(), "{}", text(&expected.stderr));
        for file in &files {
            let got = eval(&["--timeline", "-q", query, "-e", file.to_str().unwrap()], None);
            assert_eq!(
                text(&got.stdout),
                text(&expected.stdout),
                "{query} over {}",
                file.display()
            );
        }
    }
    // The contract's pick, spelt out: e1 is `"a":"y","s":"b"` (`"a":"y"` sorts
    // first), so `s` is "b" from 10 s, and e2 is the one with `x`.
    let got = eval(
        &[
            "-q",
            "latest_event_to_state(s)",
            "-e",
            files[0].to_str().unwrap(),
            "--at",
            "15000",
        ],
        None,
    );
    assert_eq!(
        text(&got.stdout),
        "{\"key\":\"j\",\"value\":\"b\"}\n{\"key\":\"k\",\"value\":\"b\"}\n"
    );
    let got = eval(
        &[
            "-q",
            "latest_event_to_state(s)",
            "-e",
            files[0].to_str().unwrap(),
            "--at",
            "25000",
        ],
        None,
    );
    assert!(
        text(&got.stdout).contains("{\"key\":\"k\",\"value\":\"c\"}"),
        "{}",
        text(&got.stdout)
    );
}

/// A batch of typed columns built by hand.
fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

fn strings(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(arrow_array::StringArray::from(values.to_vec()))
}

fn ints(values: &[Option<i64>]) -> ArrayRef {
    Arc::new(arrow_array::Int64Array::from(values.to_vec()))
}

#[test]
fn bad_rows_are_reported_with_their_row_number_and_the_rest_is_kept() {
    let mut tags = ListBuilder::new(StringBuilder::new());
    for i in 0..6 {
        if i == 4 {
            tags.values().append_value("x");
            tags.append(true);
        } else {
            tags.append_null();
        }
    }
    let rows = batch(vec![
        (
            "session_id",
            strings(&[Some("k"), Some("k"), None, Some("k"), Some("k"), Some("k")]),
        ),
        (
            "time",
            ints(&[Some(0), Some(i64::MAX), Some(5), Some(7), Some(8), Some(10)]),
        ),
        (
            "level",
            Arc::new(arrow_array::Float64Array::from(vec![
                Some(1.0),
                Some(2.0),
                Some(2.0),
                Some(f64::NAN),
                Some(3.0),
                Some(3.0),
            ])),
        ),
        ("tags", Arc::new(tags.finish())),
        (
            "state",
            strings(&[
                Some("buffer"),
                Some("play"),
                Some("play"),
                Some("play"),
                Some("play"),
                Some("play"),
            ]),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.parquet");
    write_parquet(&path, &rows, Compression::SNAPPY, 1024);
    let query = r#"duration_where(latest_event_to_state(state) == "buffer" && latest_event_to_state(level) > 0)"#;
    let out = eval(&["-q", query, "-e", path.to_str().unwrap(), "--threads", "2"], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("row 2: field `time`: 9223372036854775807 ms is out of range"),
        "{stderr}"
    );
    assert!(stderr.contains("row 3: missing key field `session_id`"), "{stderr}");
    assert!(stderr.contains("row 4: column `level` must be"), "{stderr}");
    assert!(stderr.contains("NaN"), "{stderr}");
    assert!(stderr.contains("3 input row(s) rejected"), "{stderr}");
    // The list column is not read by the query: its row is kept. Buffering
    // from 0 until the play at 8 counts.
    assert_eq!(text(&out.stdout).trim(), r#"{"key":"k","value":8}"#, "{stderr}");
    // Read by the query, a list is a bad row, as a JSON array is.
    let out = eval(
        &["-q", "latest_event_to_state(tags)", "-e", path.to_str().unwrap()],
        None,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("row 5: column `tags` must be a string, number, boolean or null, found an array"),
        "{stderr}"
    );
}

#[test]
fn files_that_cannot_be_events_end_with_an_error_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = batch(vec![
        ("session_id", strings(&[Some("k"); 50])),
        ("time", ints(&(0..50).map(Some).collect::<Vec<_>>())),
        ("state", strings(&[Some("buffer"); 50])),
    ]);
    let path = dir.path().join("good.parquet");
    write_parquet(&path, &good, Compression::SNAPPY, 10);
    let bytes = std::fs::read(&path).unwrap();
    let query = r#"has_existed(state == "buffer")"#;
    let run = |name: &str, data: &[u8]| -> Output {
        let file = dir.path().join(name);
        std::fs::write(&file, data).unwrap();
        eval(&["-q", query, "-e", file.to_str().unwrap()], None)
    };
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty.parquet".into(), Vec::new()),
        ("text.parquet".into(), b"session_id,time\nk,1\n".to_vec()),
        ("truncated.parquet".into(), bytes[..bytes.len() / 2].to_vec()),
        ("footerless.parquet".into(), bytes[..bytes.len() - 8].to_vec()),
        ("not.arrow".into(), b"ARROW1\0\0garbage".to_vec()),
        ("empty.arrows".into(), Vec::new()),
    ];
    // Every byte of the data pages flipped in turn, a few at a time.
    for at in (4..bytes.len().saturating_sub(8)).step_by(37) {
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x5a;
        cases.push((format!("flipped-{at}.parquet"), corrupt));
    }
    // The same for an Arrow IPC file and stream, whose readers trust more of
    // the file's layout.
    for (stem, stream) in [("good.arrow", false), ("good.arrows", true)] {
        let path = dir.path().join(stem);
        write_ipc(&path, &good, stream);
        let ipc = std::fs::read(&path).unwrap();
        for at in (0..ipc.len()).step_by(23) {
            for value in [0x00, 0xff, 0x41] {
                let mut corrupt = ipc.clone();
                corrupt[at] = value;
                cases.push((format!("flipped-{at}-{value}-{stem}"), corrupt));
            }
        }
    }
    for (name, data) in &cases {
        let out = run(name, data);
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            matches!(out.status.code(), Some(0 | 1 | 3)),
            "{name}: {:?} {stderr}",
            out.status
        );
        if out.status.code() == Some(1) {
            assert!(stderr.starts_with("error: cannot read"), "{name}: {stderr}");
        }
    }
    for name in ["empty.parquet", "text.parquet", "truncated.parquet", "not.arrow"] {
        assert_eq!(
            run(name, &cases.iter().find(|c| c.0 == name).unwrap().1).status.code(),
            Some(1),
            "{name}"
        );
    }

    // Columns of types the key or the time cannot be.
    let wrong = batch(vec![
        (
            "session_id",
            Arc::new(arrow_array::BooleanArray::from(vec![true])) as ArrayRef,
        ),
        ("time", ints(&[Some(1)])),
    ]);
    let path = dir.path().join("wrong-key.parquet");
    write_parquet(&path, &wrong, Compression::SNAPPY, 10);
    let out = eval(&["-q", query, "-e", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("column `session_id` (the key) is of type Boolean"),
        "{}",
        text(&out.stderr)
    );
    let no_time = batch(vec![("session_id", strings(&[Some("k")]))]);
    let path = dir.path().join("no-time.arrow");
    write_ipc(&path, &no_time, false);
    let out = eval(&["-q", query, "-e", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no column `time`"), "{}", text(&out.stderr));

    // Huge values: a long text key and state, unsigned times past i64.
    let long = "x".repeat(1 << 20);
    let huge = batch(vec![
        ("session_id", strings(&[Some(long.as_str()), Some("k")])),
        (
            "time",
            Arc::new(arrow_array::UInt64Array::from(vec![5, u64::MAX])) as ArrayRef,
        ),
        ("state", strings(&[Some(long.as_str()), Some("buffer")])),
    ]);
    let path = dir.path().join("huge.parquet");
    write_parquet(&path, &huge, Compression::ZSTD(ZstdLevel::default()), 10);
    let out = eval(
        &["-q", "latest_event_to_state(state)", "-e", path.to_str().unwrap()],
        None,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("row 2: field `time`: 18446744073709551615 ms is out of range"),
        "{stderr}"
    );
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.contains(&long), "the long key's row is kept");
}
