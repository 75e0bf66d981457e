//! The `timeline` command line.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::batch::Batch;
use crate::generate::{CirrOptions, write_cirr};
use crate::output::{self, Format};

mod help;

/// The command line of `timeline`.
#[derive(Debug, Parser)]
#[command(
    name = "timeline",
    version,
    about = "Time-state analytics: run Timeline DSL queries over event streams, from a file or as a server.",
    long_about = None,
    after_help = help::MAIN_EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate a query over a file of events (JSON lines, CSV, Parquet or
    /// Arrow IPC), one result per key.
    ///
    /// The query's header (`from cards key card;`) names the events' key,
    /// time and id fields; `--key` names the key of a query without one.
    /// Warnings about the query against the columns the events carried (a
    /// misspelt column, a comparison with a value of another type) are printed
    /// on stderr.
    ///
    /// Exit status: 0 on success; 1 on a bad query or an I/O error; 3 when
    /// some input lines were rejected (each is reported on stderr with its line
    /// number, or row number in Parquet and Arrow; the results of the good
    /// lines are still printed); 4 when
    /// `--strict` is given and the query has warnings (nothing is printed).
    #[command(after_help = help::EVAL_EXAMPLES)]
    Eval(EvalArgs),
    /// Generate synthetic events.
    #[command(subcommand, after_help = help::GEN_EXAMPLES)]
    Gen(GenCommand),
    /// Run the embedded local runtime: every job's workers, durable on local
    /// disk, behind an HTTP API (see /v1/openapi.json) and a dashboard at `/`.
    #[command(after_help = help::SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Check a query and print its execution plan: JSON (for scripts), or a
    /// tree to read with `--tree`.
    #[command(after_help = help::PLAN_EXAMPLES)]
    Plan {
        /// The query: DSL text, or @file.tl.
        #[arg(short, long)]
        query: String,
        /// Print the plan as a tree: each node's expression, worker and id,
        /// and whether it is shared.
        #[arg(long)]
        tree: bool,
    },
    /// Print a shell completion script.
    ///
    /// Load it in the running shell, or save it where the shell looks for
    /// completions (see the examples).
    #[command(after_help = help::COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// The query: DSL text, or @file.tl to read it from a file.
    #[arg(short, long)]
    query: String,
    /// Events: a file path, or - for standard input. JSON lines, CSV with a
    /// header row, Parquet or Arrow IPC (by the file's extension, or
    /// --input).
    #[arg(short, long, default_value = "-")]
    events: String,
    /// The events' format [default: by the extension: csv for `.csv`,
    /// parquet for `.parquet`/`.pq`, arrow for `.arrow`/`.arrows`/`.feather`/`.ipc`,
    /// else jsonl].
    #[arg(long, value_enum, visible_alias = "input-format")]
    input: Option<InputFormat>,
    /// The field that names an event's key, for a query whose header names
    /// none.
    #[arg(long, default_value = timeline::event::DEFAULT_KEY_FIELD)]
    key: String,
    /// Treat warnings as errors: print them and no result, exit 4.
    #[arg(long)]
    strict: bool,
    /// When to read each key's result: `end` (the key's latest event time),
    /// milliseconds, or an RFC 3339 time.
    #[arg(long, default_value = "end", allow_negative_numbers = true)]
    at: String,
    /// Print each key's whole timeline (its spans) instead of one value.
    #[arg(long)]
    timeline: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Print throughput and memory figures on stderr when done.
    #[arg(long)]
    stats: bool,
    /// Threads reading a file, each for a share of the keys [default: the
    /// cores, at most 8]. JSON lines and CSV from standard input, and queries
    /// with aggregates across keys, are read by one.
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on: IP:PORT or HOST:PORT. A host name is resolved
    /// and the server listens on its first address, IPv4 preferred
    /// (`localhost:8080` listens on 127.0.0.1:8080). Use 0.0.0.0 only behind
    /// a firewall, with a token.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = listen_address)]
    listen: std::net::SocketAddr,
    /// Directory of the jobs and the event log (created if missing).
    #[arg(long, default_value = "./timeline-data")]
    data_dir: PathBuf,
    /// Require `Authorization: Bearer <token>` on every route but /v1/health
    /// (not empty).
    #[arg(long, env = "TIMELINE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The key field of the default stream (of queries without a `from`
    /// header).
    #[arg(long, default_value = timeline::event::DEFAULT_KEY_FIELD)]
    key: String,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_body_bytes: usize,
    /// Most events accepted in one request.
    #[arg(long, default_value_t = 1_000_000)]
    max_batch_events: usize,
    /// Also answer requests for this host name (the `Host` header; IP
    /// addresses and localhost always are); `*` accepts any (behind a proxy).
    /// Repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Allow cross-origin requests from this origin (like
    /// `https://app.example`), with CORS headers; `*` allows any. Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Seconds a client has to send a request's headers, from its first byte.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = seconds)]
    header_timeout: f64,
    /// Seconds an open connection may wait for its next request.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = seconds)]
    idle_timeout: f64,
    /// Seconds a client has to send a request's body.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = seconds)]
    body_timeout: f64,
    /// Most client connections open at once (more wait).
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Snapshot the workers' state after this many events (0: not by count);
    /// recovery then replays only the log after the snapshot.
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_every_events: u64,
    /// Snapshot the workers' state after this many seconds with new events
    /// (0: not by time).
    #[arg(long, default_value_t = 300)]
    snapshot_every_secs: u64,
    /// Keep events only this long before their stream's newest event time
    /// (e.g. 30d, 12h; default: keep everything). Older events are refused,
    /// and keys whose latest event is older are forgotten, in memory and in
    /// the log.
    #[arg(long, value_name = "DURATION", value_parser = retention)]
    retention: Option<i64>,
    /// Seconds between looks for keys to forget under --retention.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = seconds, requires = "retention")]
    retention_check: f64,
}

/// A retention such as `30d` or `12h`, in ms.
fn retention(text: &str) -> Result<i64, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{e}: a duration such as 30d, 12h or 90min is expected"))?;
    let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    if ms == 0 {
        return Err("a retention must be longer than 0 ms".into());
    }
    Ok(ms)
}

/// `HOST:PORT` or `IP:PORT`: the first address it resolves to, IPv4 first.
fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    if text
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        return Err(format!(
            "`{text}` is not HOST:PORT (like localhost:8080 or 127.0.0.1:8080)"
        ));
    }
    let addresses: Vec<std::net::SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{text}`: {e}"))?
        .collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// A positive number of seconds.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1e9 => Ok(s),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

#[derive(Debug, Subcommand)]
enum GenCommand {
    /// Video playback sessions for the CIRR example and benchmarks.
    #[command(after_help = help::GEN_EXAMPLES)]
    Cirr {
        /// Number of sessions (about 50 events each).
        #[arg(long, default_value_t = 1000)]
        sessions: u64,
        /// Random seed; the same seed gives the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fraction of events delivered late (up to 5 minutes).
        #[arg(long, default_value_t = 0.02)]
        late: f64,
        /// Fraction of events delivered twice.
        #[arg(long, default_value_t = 0.01)]
        duplicates: f64,
        /// Output file; standard output if absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`timeline eval ... | head`):
        // nothing is wrong, and nobody is left to tell.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            match err.downcast_ref::<Reported>() {
                Some(Reported(diagnostic)) => eprint!("{diagnostic}"),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// An error already drawn for the terminal (a DSL diagnostic with its
/// caret): printed as it is, once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reported(String);

/// Whether `err` comes from writing to a closed pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        let kind = match (e.downcast_ref::<io::Error>(), e.downcast_ref::<serde_json::Error>()) {
            (Some(e), _) => Some(e.kind()),
            (_, Some(e)) => e.io_error_kind(),
            _ => None,
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Eval(args) => eval(args),
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(io::stderr)
                .with_ansi(io::stderr().is_terminal())
                .init();
            if args.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                anyhow::bail!(
                    "the token (--token or TIMELINE_TOKEN) is empty, which would let anyone in; \
                     give a non-empty token, or none to serve without one"
                );
            }
            let config = crate::http::ServeConfig {
                listen: args.listen,
                data_dir: args.data_dir,
                token: args.token,
                key_field: args.key,
                max_body_bytes: args.max_body_bytes,
                max_batch_events: args.max_batch_events,
                access: crate::http::Access {
                    hosts: args.allow_hosts,
                    origins: args.allow_origins,
                },
                connections: crate::http::Connections {
                    header_timeout: Duration::from_secs_f64(args.header_timeout),
                    idle_timeout: Duration::from_secs_f64(args.idle_timeout),
                    body_timeout: Duration::from_secs_f64(args.body_timeout),
                    max_connections: args.max_connections,
                },
                snapshots: crate::snapshot::SnapshotPolicy {
                    every_events: args.snapshot_every_events,
                    every_secs: args.snapshot_every_secs,
                },
                retention: crate::durable::RetentionPolicy {
                    keep: args.retention,
                    check_every: Duration::from_secs_f64(args.retention_check),
                },
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(crate::http::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(GenCommand::Cirr {
            sessions,
            seed,
            late,
            duplicates,
            output,
        }) => {
            for (name, fraction) in [("--late", late), ("--duplicates", duplicates)] {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&fraction),
                    "{name} must be between 0 and 1, found {fraction}"
                );
            }
            let options = CirrOptions {
                sessions,
                seed,
                late,
                duplicates,
            };
            let written = match output {
                Some(path) => {
                    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
                    let mut out = BufWriter::with_capacity(1 << 20, file);
                    let n = write_cirr(&options, &mut out)?;
                    out.flush()?;
                    n
                }
                None => {
                    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
                    let n = write_cirr(&options, &mut out)?;
                    out.flush()?;
                    n
                }
            };
            eprintln!("wrote {written} events of {sessions} sessions");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { query, tree } => {
            let (parsed, text) = load_query(&query)?;
            let mut registry = timeline::registry::JobRegistry::new();
            let plan = registry
                .submit(Some("plan"), &text)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .job()
                .plan
                .clone();
            let mut out = BufWriter::new(io::stdout().lock());
            if tree {
                crate::plan_tree::write_tree(&mut out, &parsed, &plan)?;
            } else {
                serde_json::to_writer_pretty(&mut out, &plan)?;
                writeln!(out)?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "timeline",
                &mut script,
            );
            let mut out = io::stdout().lock();
            out.write_all(&script)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads `--query`: inline DSL or `@file`; returns the checked query and its
/// text. A DSL error becomes an error whose text is the diagnostic drawn
/// with a caret (printed once, as it is, by [`main`]).
pub fn load_query(arg: &str) -> Result<(timeline::dsl::Query, String)> {
    let (_, text, query) = load_named_query(arg)?;
    Ok((query, text))
}

/// Like [`load_query`], with the name the query is shown under (its file).
fn load_named_query(arg: &str) -> Result<(String, String, timeline::dsl::Query)> {
    let (name, text) = match arg.strip_prefix('@') {
        Some(path) => (
            path.to_string(),
            std::fs::read_to_string(path).with_context(|| format!("cannot read query file {path}"))?,
        ),
        None => ("query".to_string(), arg.to_string()),
    };
    match timeline::dsl::parse_query(&text) {
        Ok(query) => Ok((name, text, query)),
        Err(e) => Err(Reported(e.render(&text, &name)).into()),
    }
}

fn parse_at(at: &str) -> Result<Option<i64>> {
    if at == "end" {
        return Ok(None);
    }
    timeline::event::parse_time_text(at)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--at must be `end` or a time: {e}"))
}

/// How `timeline eval` reads its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row naming the fields.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC: a file (Feather v2) or a stream.
    Arrow,
}

impl InputFormat {
    /// The format of a file named `path`, by its extension.
    pub fn of_path(path: &str) -> Self {
        let lower = path.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map_or("", |(_, e)| e);
        match ext {
            "csv" => InputFormat::Csv,
            "parquet" | "pq" | "parq" => InputFormat::Parquet,
            "arrow" | "arrows" | "feather" | "ipc" => InputFormat::Arrow,
            _ => InputFormat::Jsonl,
        }
    }
}

fn eval(args: EvalArgs) -> Result<ExitCode> {
    small_pages();
    let (query_name, text, parsed) = load_named_query(&args.query)?;
    let header_names_key = parsed.stream.key.is_some();
    let at = parse_at(&args.at)?;
    let format = args.input.unwrap_or_else(|| InputFormat::of_path(&args.events));
    let csv = format == InputFormat::Csv;
    let columnar = match format {
        InputFormat::Parquet => Some(crate::columnar::ColumnarFormat::Parquet),
        InputFormat::Arrow => Some(crate::columnar::ColumnarFormat::ArrowIpc),
        _ => None,
    };
    let from_file = args.events != "-";
    // A columnar file is read by one thread per core from standard input too
    // (kept in a temporary file: its reader must seek).
    let shards = if from_file || columnar.is_some() {
        threads_wanted(args.threads)
    } else {
        1
    };
    let mut batch = Batch::with_shards(&text, &args.key, shards)?;
    anyhow::ensure!(
        !args.timeline || batch.outputs().iter().any(|o| o.worker.is_per_key()),
        "--timeline prints timelines per key, but every output of this query is an aggregate"
    );

    let size = if from_file {
        let file = File::open(&args.events).with_context(|| format!("cannot open events file {}", args.events))?;
        file.metadata().ok().map(|m| m.len())
    } else {
        None
    };
    let progress = progress_bar(size);
    let started = Instant::now();
    let mut bad_lines = Vec::new();
    if let Some(columnar) = columnar {
        let spooled = if from_file {
            None
        } else {
            Some(crate::columnar::spool(io::stdin().lock()).context("cannot keep standard input in a temporary file")?)
        };
        let path = match &spooled {
            Some(file) => file.path().to_path_buf(),
            None => PathBuf::from(&args.events),
        };
        let found = std::sync::Mutex::new(Vec::new());
        batch
            .read_columnar(&path, columnar, |bad| {
                found.lock().unwrap_or_else(|p| p.into_inner()).push(bad)
            })
            .with_context(|| format!("cannot read {}", args.events))?;
        bad_lines = found.into_inner().unwrap_or_else(|p| p.into_inner());
        bad_lines.sort_by_key(|b| b.line);
    } else if csv {
        let input: Box<dyn io::Read> = if from_file {
            Box::new(File::open(&args.events).with_context(|| format!("cannot open events file {}", args.events))?)
        } else {
            Box::new(io::stdin().lock())
        };
        let spec = batch.stream().clone();
        let reader = crate::csv_input::CsvAsJsonLines::new(input, &spec.key, &spec.time, &spec.id)
            .with_context(|| format!("cannot read {}", args.events))?;
        let rows = reader.rows();
        batch.read(
            BufReader::with_capacity(1 << 20, reader),
            |bad| bad_lines.push(bad),
            |_| {},
        )?;
        let rows = rows.lock().unwrap_or_else(|p| p.into_inner());
        for bad in &mut bad_lines {
            if let Some(why) = rows.error(bad.line) {
                bad.error = timeline::EventError::Json(why.to_string());
            }
            bad.line = rows.input_line(bad.line);
        }
    } else if from_file {
        let found = std::sync::Mutex::new(Vec::new());
        batch.read_path(
            std::path::Path::new(&args.events),
            |bad| found.lock().unwrap_or_else(|p| p.into_inner()).push(bad),
            |bytes| progress.set_position(bytes),
        )?;
        bad_lines = found.into_inner().unwrap_or_else(|p| p.into_inner());
        bad_lines.sort_by_key(|b| b.line);
    } else {
        if io::stdin().is_terminal() {
            eprintln!(
                "reading events (JSON lines) from standard input; end with Ctrl-D, \
                 or give a file with --events FILE"
            );
        }
        batch.read(
            BufReader::with_capacity(1 << 20, io::stdin().lock()),
            |bad| bad_lines.push(bad),
            |bytes| progress.set_position(bytes),
        )?;
    }
    progress.finish_and_clear();
    let skipped = bad_lines.len() as u64;
    let unit = if columnar.is_some() { "row" } else { "line" };
    for bad in bad_lines.iter().take(100) {
        eprintln!("{}: {unit} {}: {}", args.events, bad.line, bad.error);
    }
    if let Some(timeline::EventError::MissingKey(field)) = bad_lines
        .iter()
        .map(|b| &b.error)
        .find(|e| matches!(e, timeline::EventError::MissingKey(_)))
    {
        if header_names_key {
            eprintln!(
                "hint: the query's header reads each event's key from `{field}`, which these events lack: \
                 are they events of stream `{}`?",
                batch.stream().name
            );
        } else {
            eprintln!(
                "hint: events without the key field `{field}`: name the key field with --key FIELD, \
                 or in the query's header (from <stream> key FIELD;)"
            );
        }
    }
    let read_time = started.elapsed();
    let warnings = batch.warnings();
    for w in &warnings {
        eprint!("{}", w.render(&text, &query_name));
    }
    if args.strict && !warnings.is_empty() {
        eprintln!("{} warning(s) and --strict: no result printed", warnings.len());
        std::mem::forget(batch);
        return Ok(ExitCode::from(4));
    }

    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let several = !batch.per_key_only() || batch.outputs().len() > 1;
    for output in batch.outputs().to_vec() {
        let name = several.then_some(output.name.as_str());
        if !output.worker.is_per_key() {
            let read = batch.read_output(&output, at)?;
            let lines: Vec<output::GroupLine<'_>> = read
                .groups
                .iter()
                .map(|row| output::GroupLine {
                    output: &output.name,
                    group: &row.group,
                    keys: row.keys,
                    values: &row.values,
                })
                .collect();
            output::write_groups(&mut out, args.format, &lines)?;
            continue;
        }
        let results = batch.results_of(&output.node);
        if args.timeline {
            let rows: Vec<(&str, Vec<timeline::SpanView>)> = results
                .iter()
                .map(|(k, o)| (k.as_str(), o.timeline.clip(None, None)))
                .collect();
            output::write_timelines(&mut out, args.format, &rows)?;
        } else {
            let rows: Vec<(&str, Option<timeline::Value>)> = results
                .iter()
                .map(|(k, o)| {
                    (
                        k.as_str(),
                        match at {
                            Some(t) => o.value_at(t),
                            None => o.value_at_end(),
                        },
                    )
                })
                .collect();
            output::write_values(&mut out, args.format, name, &rows)?;
        }
    }
    out.flush()?;

    if args.stats {
        let secs = read_time.as_secs_f64();
        eprintln!(
            "{} events, {} keys in {:.3} s: {:.0} events/s; leaf state {} bytes ({:.1} per key)",
            batch.events(),
            batch.key_count(),
            secs,
            batch.events() as f64 / secs.max(1e-9),
            batch.state_bytes(),
            batch.state_bytes() as f64 / batch.key_count().max(1) as f64
        );
    }
    if skipped > 0 {
        if skipped > 100 {
            eprintln!("... {} more rejected {unit}s not shown", skipped - 100);
        }
        eprintln!("{skipped} input {unit}(s) rejected; results cover the other {unit}s");
        std::mem::forget(batch);
        return Ok(ExitCode::from(3));
    }
    // The process ends here: freeing every key's state one by one would only
    // delay the exit.
    std::mem::forget(batch);
    Ok(ExitCode::SUCCESS)
}

/// Asks the kernel for no transparent huge pages in this process. The
/// allocator asks for them, and `eval` touches every page of its state
/// once: zeroing a 2 MiB page took 4 to 5 times as long per byte as 4 KiB
/// pages on the benchmark VM (1.2 s against 0.25 s of system time over 5 M
/// events), and no read of the state got faster with them.
fn small_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes no memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Threads for reading a file: `--threads`, or the cores (at most 8).
fn threads_wanted(threads: Option<usize>) -> usize {
    match threads {
        Some(n) => n.max(1),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()).min(8),
    }
}

/// A progress bar on stderr for inputs over 64 MiB (or of unknown size), shown
/// only when stderr is a terminal.
fn progress_bar(size: Option<u64>) -> ProgressBar {
    if !io::stderr().is_terminal() || size.is_some_and(|s| s < 64 << 20) {
        return ProgressBar::hidden();
    }
    match size {
        Some(size) => ProgressBar::new(size).with_style(
            ProgressStyle::with_template(
                "{spinner} reading events {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} reading events: {bytes} ({bytes_per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}
