//! Batch evaluation: every event of an input through one plan, per key.
//!
//! A file can be read by several threads at once: each reads every line but
//! parses and applies only the lines of its share of the keys (a hash of the
//! key, found without parsing the whole line), into an engine of its own.

use std::borrow::Cow;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;

use smol_str::SmolStr;
use timeline::dsl::DslError;
use timeline::plan::PlanOutput;
use timeline::registry::SubmitError;
use timeline::{Columns, Event, EventError, EventParser, NodeId, Output, StreamSpec, Time, WorkerKind};

use crate::columnar::{ColumnarFile, ColumnarFormat, Fields, Rows};
use crate::engine::{Engine, GroupValues, ReadError, StreamId, Target};

/// A rejected input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// Why it was rejected.
    pub error: EventError,
}

/// A batch run: the local runtime's engine with one job, fed from a file;
/// with several shards, one engine per share of the keys.
pub struct Batch {
    shards: Vec<Shard>,
    outputs: Vec<PlanOutput>,
    result: NodeId,
    query: String,
    /// The columns the query's leaves read.
    columns_read: Vec<SmolStr>,
    /// Columns of a columnar file that were not read, for the warnings.
    unread: Columns,
}

/// One share of the keys: its engine and its reading state.
struct Shard {
    engine: Engine,
    /// The job's stream in the engine.
    stream: StreamId,
    parser: EventParser,
    lines: u64,
    scratch: Event,
    /// Lines whose key turned out to belong to another shard (only when the
    /// key field appears twice in a line): applied there after the read.
    misrouted: Vec<(u64, Event)>,
}

impl Batch {
    /// A run of the DSL `query` over events of the stream its header names;
    /// `key_field` is the key of a stream whose header names none.
    pub fn new(query: &str, key_field: &str) -> Result<Self, SubmitError> {
        Self::with_shards(query, key_field, 1)
    }

    /// A run with `shards` engines, each for a share of the keys, that
    /// [`Batch::read_path`] fills in parallel. Queries with aggregates across
    /// keys run in one shard.
    pub fn with_shards(query: &str, key_field: &str, shards: usize) -> Result<Self, SubmitError> {
        let default = StreamSpec::new(timeline::stream::DEFAULT_STREAM, key_field);
        let mut engines = Vec::new();
        let mut first = Engine::with_default_stream(default.clone());
        let (submitted, _) = first.submit(Some("eval"), query)?;
        let plan = submitted.job().plan.clone();
        let per_key_only = plan.outputs.iter().all(|o| o.worker.is_per_key());
        let read = columns_read(&plan);
        engines.push(first);
        let shards = if per_key_only { shards.max(1) } else { 1 };
        for _ in 1..shards {
            let mut engine = Engine::with_default_stream(default.clone());
            engine.submit(Some("eval"), query)?;
            engines.push(engine);
        }
        Ok(Batch {
            shards: engines
                .into_iter()
                .map(|engine| Shard {
                    stream: engine.job_stream("eval").expect("the job was submitted"),
                    engine,
                    parser: plan.stream.parser().reading_only(&read),
                    lines: 0,
                    scratch: empty_event(),
                    misrouted: Vec::new(),
                })
                .collect(),
            outputs: plan.outputs.clone(),
            result: plan.result.clone(),
            query: query.to_string(),
            columns_read: read.clone(),
            unread: Columns::new(),
        })
    }

    /// The stream the query reads, with its fields.
    pub fn stream(&self) -> &StreamSpec {
        self.shards[0].engine.stream_spec(self.shards[0].stream)
    }

    /// The columns the events read so far carried.
    pub fn columns(&self) -> Columns {
        let mut all = self.unread.clone();
        for s in &self.shards {
            all.merge(s.engine.columns(s.stream));
        }
        all
    }

    /// The query's warnings against the columns read so far (a column no
    /// event carried, a comparison with a literal of a type never seen, the
    /// key, time or id field used as a column).
    pub fn warnings(&self) -> Vec<DslError> {
        match timeline::dsl::parse_query(&self.query) {
            Ok(q) => timeline::dsl::warnings(&self.query, &q, self.stream(), &self.columns()),
            Err(_) => Vec::new(),
        }
    }

    /// The latest event time of any key read.
    pub fn latest(&self) -> Option<Time> {
        self.shards.iter().filter_map(|s| s.engine.latest(s.stream)).max()
    }

    /// The query's text.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Applies one JSON line; blank lines are skipped.
    pub fn apply_line(&mut self, line: &[u8]) -> Result<(), EventError> {
        let shards = self.shards.len();
        let owner = if shards == 1 {
            0
        } else {
            KeyFinder::new(self.shards[0].parser.key_field())
                .shard(line, shards)
                .unwrap_or(0)
        };
        for (i, shard) in self.shards.iter_mut().enumerate() {
            let result = shard.take_line(line, i, shards, i == owner);
            if i == owner {
                result?;
            }
        }
        Ok(())
    }

    /// Reads JSON lines to the end (in this thread); calls `bad` for each
    /// rejected line and `progress` with the bytes read so far.
    pub fn read(
        &mut self,
        input: impl BufRead,
        bad: impl FnMut(BadLine),
        progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        // A copy of the input (up to SPOOL_LIMIT), read again only if
        // deliveries of an identified event disagree on its content (see
        // `settle_conflicts`).
        let mut spool = tempfile::tempfile().ok().map(std::io::BufWriter::new);
        let mut input = Tee {
            inner: input,
            copy: spool.as_mut(),
            kept: 0,
            limit: SPOOL_LIMIT,
            lost: None,
        };
        let shards = self.shards.len();
        let mut bad = bad;
        let mut progress = progress;
        if shards == 1 {
            self.shards[0].read(&mut input, 0, 1, bad, progress)?;
        } else {
            read_lines(&mut input, &mut progress, |line, number| {
                if let Err(error) = self.apply_line(line) {
                    bad(BadLine { line: number, error });
                }
            })?;
            self.settle_misrouted();
        }
        let lost = input.lost.take();
        if self.shards.iter().all(|s| !s.engine.has_conflicts()) {
            return Ok(());
        }
        let why = match (lost, spool) {
            (None, Some(spool)) => {
                let mut file = spool.into_inner().map_err(|e| e.into_error())?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
                return self.settle_conflicts(std::io::BufReader::new(file));
            }
            (Some(why), _) => why,
            (None, None) => "no temporary file could be made".to_string(),
        };
        Err(std::io::Error::other(format!(
            "deliveries of one event_id disagree on their content, and the input cannot be read again \
             to settle them ({why}): pass the events as a file"
        )))
    }

    /// Rebuilds every key whose deliveries of an identified event disagree on
    /// its content from all its events, read again from `input`, so that the
    /// delivery the contract picks is the event.
    fn settle_conflicts(&mut self, input: impl BufRead) -> std::io::Result<()> {
        // Every column: which delivery is the event depends on all.
        let parser = self.stream().parser();
        let finder = KeyFinder::new(parser.key_field());
        self.settle_conflicts_with(|owner, deliver| {
            read_lines(input, &mut |_| {}, |line, _| {
                if let Some(key) = finder.key(line)
                    && std::str::from_utf8(&key).is_ok_and(|k| !owner.contains_key(k))
                {
                    return;
                }
                if let Ok(event) = parser.parse_bytes(line) {
                    deliver(event);
                }
            })
        })
    }

    /// Rebuilds every key whose deliveries disagree from all its events:
    /// `read` is given the keys to rebuild and calls its second argument
    /// with every event of the input, in order (others are left out).
    fn settle_conflicts_with(
        &mut self,
        read: impl FnOnce(&KeyOwners, &mut dyn FnMut(Event)) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut owner: KeyOwners = rustc_hash::FxHashMap::default();
        for (i, shard) in self.shards.iter_mut().enumerate() {
            for (_, key) in shard.engine.take_conflicts() {
                owner.insert(key, i);
            }
        }
        if owner.is_empty() {
            return Ok(());
        }
        let mut deliveries: rustc_hash::FxHashMap<SmolStr, Vec<(Event, Target)>> = rustc_hash::FxHashMap::default();
        read(&owner, &mut |event: Event| {
            if owner.contains_key(&event.key) {
                deliveries
                    .entry(event.key.clone())
                    .or_default()
                    .push((event, Target::AllLeaves));
            }
        })?;
        for (key, events) in deliveries {
            let shard = &mut self.shards[owner[&key]];
            shard.engine.rebuild_key(shard.stream, &key, events);
        }
        Ok(())
    }

    /// Reads a Parquet or Arrow IPC file: only the key, time and id columns
    /// and those the query reads. One thread decodes the batches and one per
    /// shard applies the rows of its keys; `bad` gets every rejected row (its
    /// 1-based row number in `line`, in no particular order).
    pub fn read_columnar(
        &mut self,
        path: &Path,
        format: ColumnarFormat,
        bad: impl Fn(BadLine) + Sync,
    ) -> std::io::Result<()> {
        let spec = self.stream().clone();
        let columns_read = self.columns_read.clone();
        let fields = Fields {
            key: &spec.key,
            time: &spec.time,
            id: &spec.id,
            columns: Some(&columns_read),
        };
        let mut file = ColumnarFile::open(path, format, fields)?;
        self.unread = file.unread_columns().clone();
        let layout = file.layout().clone();
        let shards = self.shards.len();
        let (bad, layout, spec) = (&bad, &layout, &spec);
        std::thread::scope(|scope| -> std::io::Result<()> {
            let mut senders = Vec::new();
            let handles: Vec<_> = self
                .shards
                .iter_mut()
                .enumerate()
                .map(|(me, shard)| {
                    let (send, receive) = std::sync::mpsc::sync_channel::<(u64, Arc<RecordBatch>)>(4);
                    senders.push(send);
                    scope.spawn(move || -> std::io::Result<()> {
                        for (first, batch) in receive {
                            crate::columnar::guarded(|| {
                                let rows = Rows::new(&batch, layout);
                                shard.take_rows(&rows, first, me, shards, spec, bad);
                            })
                            .map_err(|why| {
                                std::io::Error::new(
                                    std::io::ErrorKind::InvalidData,
                                    format!("the file is corrupt (reading rows after row {first} failed: {why})"),
                                )
                            })?;
                        }
                        Ok(())
                    })
                })
                .collect();
            let mut read = 0u64;
            let mut result = Ok(());
            while let Some(batch) = file.next_batch() {
                let batch = match batch {
                    Ok(batch) => Arc::new(batch),
                    Err(e) => {
                        result = Err(std::io::Error::new(e.kind(), format!("{e} (at row {})", read + 1)));
                        break;
                    }
                };
                let rows = batch.num_rows() as u64;
                if senders.iter().any(|s| s.send((read, batch.clone())).is_err()) {
                    break;
                }
                read += rows;
            }
            drop(senders);
            for h in handles {
                let joined = h
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a reader panicked")));
                result = result.and(joined);
            }
            result
        })?;
        if self.shards.iter().any(|s| s.engine.has_conflicts()) {
            // Which delivery is the event depends on all its columns: read
            // every column of the keys to rebuild.
            let every = Fields {
                columns: None,
                ..fields
            };
            let mut file = ColumnarFile::open(path, format, every)?;
            let layout = file.layout().clone();
            self.settle_conflicts_with(|owner, deliver| {
                while let Some(batch) = file.next_batch() {
                    let batch = batch?;
                    crate::columnar::guarded(|| {
                        let rows = Rows::new(&batch, &layout);
                        for row in 0..rows.len() {
                            let Ok(key) = rows.key(row, &spec.key) else { continue };
                            if !owner.contains_key(&key) {
                                continue;
                            }
                            let mut event = empty_event();
                            if rows.event(row, key, &spec.time, &spec.id, &mut event).is_ok() {
                                deliver(event);
                            }
                        }
                    })
                    .map_err(|why| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the file is corrupt ({why})"))
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Reads the file at `path` with one thread per shard; `bad` gets every
    /// rejected line (in no particular order), `progress` the bytes read by
    /// the first shard. A regular file is mapped into memory once and shared
    /// by the threads: each part of it is split into lines, and each line's
    /// shard found, once, by whichever thread gets there first. Anything else
    /// (a pipe, say) is read by each thread.
    pub fn read_path(
        &mut self,
        path: &Path,
        bad: impl Fn(BadLine) + Sync,
        progress: impl Fn(u64) + Sync,
    ) -> std::io::Result<()> {
        let file = std::fs::File::open(path)?;
        let mapped = if file.metadata()?.is_file() {
            // SAFETY: the map is only read. A file truncated by another
            // process while it is read can fault; `timeline eval` reads files
            // that are not being written, as ripgrep does.
            unsafe { memmap2::Mmap::map(&file) }.ok()
        } else {
            None
        };
        let shards = self.shards.len();
        let released = Released::new(shards);
        let chunks = mapped
            .as_ref()
            .map(|map| Chunks::new(&map[..], shards, KeyFinder::new(self.shards[0].parser.key_field())));
        let (bad, progress, released, chunks) = (&bad, &progress, &released, chunks.as_ref());
        let mapped = mapped.as_ref();
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .shards
                .iter_mut()
                .enumerate()
                .map(|(i, shard)| {
                    scope.spawn(move || -> std::io::Result<()> {
                        let report = |bytes: u64| {
                            if let Some(map) = mapped {
                                released.reached(map, i, bytes as usize);
                            }
                            if i == 0 {
                                progress(bytes)
                            }
                        };
                        match (mapped, chunks) {
                            (Some(_), Some(chunks)) => {
                                shard.read_chunks(chunks, i, bad, report);
                                Ok(())
                            }
                            (Some(map), None) => shard.read(&map[..], i, shards, bad, report),
                            (None, _) => {
                                let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
                                shard.read(input, i, shards, bad, report)
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a reader panicked")))
            })
        })?;
        self.settle_misrouted();
        if self.shards.iter().any(|s| s.engine.has_conflicts()) {
            let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
            self.settle_conflicts(input)?;
        }
        Ok(())
    }

    /// Applies lines that a shard parsed for another one, in line order.
    fn settle_misrouted(&mut self) {
        let shards = self.shards.len();
        let mut moved: Vec<(u64, Event)> = self.shards.iter_mut().flat_map(|s| s.misrouted.drain(..)).collect();
        moved.sort_by_key(|(line, _)| *line);
        for (_, event) in moved {
            let owner = key_shard(event.key.as_bytes(), shards);
            let shard = &mut self.shards[owner];
            shard
                .engine
                .apply(shard.stream, std::slice::from_ref(&event), &Target::AllLeaves, None);
        }
    }
}

impl Shard {
    /// Parses and applies this shard's (`me`) lines of every chunk of
    /// `chunks`, in order.
    fn read_chunks(&mut self, chunks: &Chunks<'_>, me: usize, bad: &impl Fn(BadLine), report: impl Fn(u64)) {
        let shards = chunks.shards;
        let mut before = 0u64;
        for c in 0..chunks.bounds.len() {
            let (start, end) = chunks.bounds[c];
            let (count, lines) = chunks.take(c, me);
            // A line's number is counted only when needed (a bad line, a
            // line parsed for another shard).
            let number = |at: usize| before + memchr::memchr_iter(b'\n', &chunks.map[start..at]).count() as u64 + 1;
            for (from, to) in lines {
                let line = &chunks.map[from..to];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Err(error) = self.parser.parse_into(line, &mut self.scratch) {
                    bad(BadLine {
                        line: number(from),
                        error,
                    });
                    continue;
                }
                if shards > 1 && key_shard(self.scratch.key.as_bytes(), shards) != me {
                    self.misrouted.push((number(from), self.scratch.clone()));
                    continue;
                }
                self.engine.apply(
                    self.stream,
                    std::slice::from_ref(&self.scratch),
                    &Target::AllLeaves,
                    None,
                );
            }
            before += count;
            report(end as u64);
        }
    }

    /// Applies the rows of `rows` whose keys belong to this shard (`me`);
    /// the first is row `first` (0-based) of the input. Rows without a
    /// usable key are reported by shard 0.
    fn take_rows(
        &mut self,
        rows: &Rows<'_>,
        first: u64,
        me: usize,
        shards: usize,
        spec: &StreamSpec,
        bad: &impl Fn(BadLine),
    ) {
        for row in 0..rows.len() {
            let number = first + row as u64 + 1;
            if shards > 1 {
                // A row without a usable key is shard 0's to report.
                let owner = rows.with_key(row, |key| key.map_or(0, |key| key_shard(key, shards)));
                if owner != me {
                    continue;
                }
            }
            let key = match rows.key(row, &spec.key) {
                Ok(key) => key,
                Err(error) => {
                    bad(BadLine { line: number, error });
                    continue;
                }
            };
            if let Err(error) = rows.event(row, key, &spec.time, &spec.id, &mut self.scratch) {
                bad(BadLine { line: number, error });
                continue;
            }
            self.engine.apply(
                self.stream,
                std::slice::from_ref(&self.scratch),
                &Target::AllLeaves,
                None,
            );
        }
    }

    /// Applies `line` if it belongs to this shard (`owner`): counts it either way.
    fn take_line(&mut self, line: &[u8], me: usize, shards: usize, owner: bool) -> Result<(), EventError> {
        self.lines += 1;
        if !owner || line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.parser.parse_into(line, &mut self.scratch)?;
        if shards > 1 && key_shard(self.scratch.key.as_bytes(), shards) != me {
            self.misrouted.push((self.lines, self.scratch.clone()));
            return Ok(());
        }
        self.engine.apply(
            self.stream,
            std::slice::from_ref(&self.scratch),
            &Target::AllLeaves,
            None,
        );
        Ok(())
    }

    fn read(
        &mut self,
        input: impl BufRead,
        me: usize,
        shards: usize,
        mut bad: impl FnMut(BadLine),
        mut progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        let finder = KeyFinder::new(self.parser.key_field());
        read_lines(input, &mut progress, |line, number| {
            let owner = shards == 1 || finder.shard(line, shards).unwrap_or(0) == me;
            if let Err(error) = self.take_line(line, me, shards, owner) {
                bad(BadLine { line: number, error });
            }
        })
    }
}

/// A mapped file cut into chunks at line ends. Each chunk is scanned once,
/// by whichever reader claims it: split into lines, each line given to the
/// shard of its key (found without parsing the line), so that no reader
/// scans the lines of the others.
struct Chunks<'m> {
    map: &'m [u8],
    /// (start, end) of each chunk; each ends after a newline or at the end.
    bounds: Vec<(usize, usize)>,
    shards: usize,
    finder: KeyFinder,
    /// The next chunk no reader has claimed.
    next: std::sync::atomic::AtomicUsize,
    scanned: Vec<std::sync::OnceLock<Scanned>>,
    ready: (std::sync::Mutex<()>, std::sync::Condvar),
}

/// A chunk's lines, by shard.
struct Scanned {
    /// Lines in the chunk (blank ones included).
    lines: u64,
    /// (start, end) in the map of each shard's lines, taken by the shard.
    of_shard: Vec<std::sync::Mutex<Vec<(usize, usize)>>>,
}

impl<'m> Chunks<'m> {
    /// About this many bytes a chunk (small in tests, to cross many).
    const SIZE: usize = if cfg!(test) { 4096 } else { 2 << 20 };

    fn new(map: &'m [u8], shards: usize, finder: KeyFinder) -> Self {
        let mut bounds = Vec::new();
        let mut start = 0;
        while start < map.len() {
            let mut end = (start + Self::SIZE).min(map.len());
            if end < map.len() {
                end = memchr::memchr(b'\n', &map[end..]).map_or(map.len(), |i| end + i + 1);
            }
            bounds.push((start, end));
            start = end;
        }
        Chunks {
            map,
            scanned: (0..bounds.len()).map(|_| std::sync::OnceLock::new()).collect(),
            bounds,
            shards,
            finder,
            next: std::sync::atomic::AtomicUsize::new(0),
            ready: (std::sync::Mutex::new(()), std::sync::Condvar::new()),
        }
    }

    /// Splits chunk `c` into lines and finds each line's shard.
    fn scan(&self, c: usize) {
        let (start, end) = self.bounds[c];
        let mut of_shard: Vec<Vec<(usize, usize)>> = (0..self.shards).map(|_| Vec::new()).collect();
        let mut lines = 0u64;
        let mut from = start;
        let mut each = |from: usize, to: usize| {
            let shard = if self.shards == 1 {
                0
            } else {
                self.finder.shard(&self.map[from..to], self.shards).unwrap_or(0)
            };
            of_shard[shard].push((from, to));
        };
        for newline in memchr::memchr_iter(b'\n', &self.map[start..end]) {
            lines += 1;
            each(from, start + newline);
            from = start + newline + 1;
        }
        if from < end {
            lines += 1;
            each(from, end);
        }
        let _ = self.scanned[c].set(Scanned {
            lines,
            of_shard: of_shard.into_iter().map(std::sync::Mutex::new).collect(),
        });
        let _guard = self.ready.0.lock().unwrap_or_else(|p| p.into_inner());
        self.ready.1.notify_all();
    }

    /// Shard `me`'s lines of chunk `c`, and how many lines the chunk has:
    /// scans the chunks no reader has claimed up to a few ahead of `c`, then
    /// waits for `c` if another reader is scanning it.
    fn take(&self, c: usize, me: usize) -> (u64, Vec<(usize, usize)>) {
        use std::sync::atomic::Ordering;
        let ahead = c + 2 * self.shards;
        loop {
            let k = self.next.load(Ordering::Acquire);
            if k >= self.bounds.len() || k > ahead {
                break;
            }
            if self
                .next
                .compare_exchange(k, k + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.scan(k);
            }
        }
        let scanned = loop {
            if let Some(scanned) = self.scanned[c].get() {
                break scanned;
            }
            let guard = self.ready.0.lock().unwrap_or_else(|p| p.into_inner());
            if self.scanned[c].get().is_none() {
                let _ = self.ready.1.wait_timeout(guard, std::time::Duration::from_millis(5));
            }
        };
        let lines = std::mem::take(&mut *scanned.of_shard[me].lock().unwrap_or_else(|p| p.into_inner()));
        (scanned.lines, lines)
    }
}

/// The part of a mapped file that every reader has passed, given back to
/// the kernel as they go, so that resident memory stays near the state's
/// own and does not grow with the file.
struct Released {
    positions: Vec<std::sync::atomic::AtomicUsize>,
    upto: std::sync::Mutex<usize>,
    step: usize,
}

impl Released {
    /// Released when all readers have passed this much more.
    const STEP: usize = 32 << 20;

    fn new(readers: usize) -> Self {
        Self::with_step(readers, Self::STEP)
    }

    fn with_step(readers: usize, step: usize) -> Self {
        Released {
            positions: (0..readers).map(|_| std::sync::atomic::AtomicUsize::new(0)).collect(),
            upto: std::sync::Mutex::new(0),
            step,
        }
    }

    /// Notes that reader `me` has read `map` up to `at`.
    fn reached(&self, map: &memmap2::Mmap, me: usize, at: usize) {
        use std::sync::atomic::Ordering;
        self.positions[me].store(at, Ordering::Relaxed);
        let passed = self
            .positions
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let mut upto = self.upto.lock().unwrap_or_else(|p| p.into_inner());
        let end = passed / self.step * self.step;
        if end > *upto {
            // SAFETY: the map is read-only and shared: dropping its pages
            // only makes a later read fetch them again from the page cache.
            // Advice is only a hint; if refused, the pages stay mapped.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, *upto, end - *upto) };
            *upto = end;
        }
    }
}

/// Calls `f` with every line of `input` and its 1-based number; lines are
/// taken in place in the reader's buffer, only one that straddles two
/// buffers is copied. `progress` gets the bytes read after each buffer and
/// every 4 MiB within one (a mapped file is one buffer).
const PROGRESS_STEP: usize = 4 << 20;

fn read_lines(
    mut input: impl BufRead,
    progress: &mut impl FnMut(u64),
    mut f: impl FnMut(&[u8], u64),
) -> std::io::Result<()> {
    let mut partial: Vec<u8> = Vec::new();
    let mut bytes = 0u64;
    let mut number = 0u64;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let len = buf.len();
        let mut rest = buf;
        let mut reported = 0;
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            number += 1;
            let done = len - rest.len();
            if done - reported >= PROGRESS_STEP {
                reported = done;
                progress(bytes + done as u64);
            }
            if partial.is_empty() {
                f(&rest[..newline], number);
            } else {
                partial.extend_from_slice(&rest[..newline]);
                f(&partial, number);
                partial.clear();
            }
            rest = &rest[newline + 1..];
        }
        partial.extend_from_slice(rest);
        input.consume(len);
        bytes += len as u64;
        progress(bytes);
    }
    if !partial.is_empty() {
        f(&partial, number + 1);
    }
    Ok(())
}

/// Most of standard input that `eval` keeps a temporary copy of (to settle
/// deliveries of one id that disagree; a file is read again instead).
const SPOOL_LIMIT: u64 = 1 << 30;

/// A reader that copies what is consumed of it into `copy`, up to
/// [`SPOOL_LIMIT`] bytes.
struct Tee<'a, R> {
    inner: R,
    copy: Option<&'a mut std::io::BufWriter<std::fs::File>>,
    kept: u64,
    /// Most bytes copied.
    limit: u64,
    /// Why the copy was given up, if it was.
    lost: Option<String>,
}

impl<R: BufRead> std::io::Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.keep(&buf[..n]);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tee<'_, R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if self.copy.is_some() && amount > 0 {
            // The buffer still holds what is consumed: no read happens here.
            let chunk = self.inner.fill_buf().map(|b| b[..amount.min(b.len())].to_vec());
            match chunk {
                Ok(chunk) => self.keep(&chunk),
                Err(e) => self.give_up(format!("the copy failed: {e}")),
            }
        }
        self.inner.consume(amount);
    }
}

impl<R> Tee<'_, R> {
    fn keep(&mut self, bytes: &[u8]) {
        let Some(copy) = self.copy.as_mut() else { return };
        self.kept += bytes.len() as u64;
        if self.kept > self.limit {
            self.give_up(format!(
                "it is over the {} MiB kept of standard input",
                self.limit >> 20
            ));
        } else if let Err(e) = std::io::Write::write_all(copy, bytes) {
            self.give_up(format!("the copy failed: {e}"));
        }
    }

    fn give_up(&mut self, why: String) {
        self.copy = None;
        self.lost.get_or_insert(why);
    }
}

/// Keys to rebuild, and the shard of each.
type KeyOwners = rustc_hash::FxHashMap<SmolStr, usize>;

fn empty_event() -> Event {
    Event {
        key: SmolStr::default(),
        time: 0,
        id: None,
        columns: Vec::new(),
    }
}

/// The columns the leaves of `plan` read.
fn columns_read(plan: &timeline::ExecutionPlan) -> Vec<SmolStr> {
    let mut out: Vec<SmolStr> = Vec::new();
    for node in &plan.nodes {
        // Every leaf operator is named: one that reads columns some other
        // way must say which here.
        if let timeline::Operator::Leaf(op) = &node.operator {
            match op {
                timeline::LeafOp::LatestEventToState { column } => out.push(column.clone()),
                timeline::LeafOp::HasExisted { predicate }
                | timeline::LeafOp::HasExistedWithin { predicate, .. }
                | timeline::LeafOp::TimeSince { predicate } => {
                    out.extend(predicate.columns().into_iter().map(SmolStr::new))
                }
                timeline::LeafOp::Sequence { steps, .. } => {
                    for step in steps {
                        out.extend(step.columns().into_iter().map(SmolStr::new))
                    }
                }
                timeline::LeafOp::AbsentAfter { start, completion, .. } => {
                    out.extend(start.columns().into_iter().map(SmolStr::new));
                    out.extend(completion.columns().into_iter().map(SmolStr::new));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The shard of a key.
fn key_shard(key: &[u8], shards: usize) -> usize {
    use std::hash::Hasher;
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(key);
    (hasher.finish() % shards as u64) as usize
}

/// Finds the key of a JSON line without parsing the line: the first
/// `"<key_field>"` in key position followed by a string or an integer.
pub struct KeyFinder {
    pattern: memchr::memmem::Finder<'static>,
    len: usize,
}

impl KeyFinder {
    /// A finder of the key field `key_field`.
    pub fn new(key_field: &str) -> Self {
        let pattern = format!("\"{key_field}\"").into_bytes();
        KeyFinder {
            len: pattern.len(),
            pattern: memchr::memmem::Finder::new(&pattern).into_owned(),
        }
    }

    /// The shard of `line` among `shards`; `None` when its key cannot be
    /// found this way.
    pub fn shard(&self, line: &[u8], shards: usize) -> Option<usize> {
        Some(key_shard(&self.key(line)?, shards))
    }

    /// The key of `line` (unescaped), if found.
    pub fn key<'a>(&self, line: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        let mut from = 0;
        while let Some(at) = self.pattern.find(&line[from..]).map(|i| i + from) {
            from = at + 1;
            // A key follows `{` or `,`; anything else is inside a string.
            let before = line[..at].iter().rev().find(|b| !b.is_ascii_whitespace());
            if !matches!(before, Some(b'{' | b',')) {
                continue;
            }
            let mut rest = line[at + self.len..].trim_ascii_start();
            rest = rest.strip_prefix(b":")?.trim_ascii_start();
            return match rest.first()? {
                b'"' => {
                    let body = &rest[1..];
                    let end = body.iter().position(|&b| b == b'"' || b == b'\\')?;
                    if body[end] == b'"' {
                        return Some(Cow::Borrowed(&body[..end]));
                    }
                    // Escapes: let serde read the string.
                    let mut de = serde_json::Deserializer::from_slice(rest);
                    let text = <String as serde::Deserialize>::deserialize(&mut de).ok()?;
                    Some(Cow::Owned(text.into_bytes()))
                }
                b'-' | b'0'..=b'9' => {
                    let end = rest[1..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(rest.len(), |i| i + 1);
                    Some(Cow::Borrowed(&rest[..end]))
                }
                _ => None,
            };
        }
        None
    }
}

impl Batch {
    /// Events applied so far.
    pub fn events(&self) -> u64 {
        self.shards.iter().map(|s| s.engine.event_count()).sum()
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|s| s.engine.key_count()).sum()
    }

    /// Each key's result output, sorted by key.
    pub fn results(&self) -> Vec<(SmolStr, Output)> {
        self.results_of(&self.result)
    }

    /// Each key's output of per-key node `node`, sorted by key (each shard
    /// computes its keys in a thread of its own).
    pub fn results_of(&self, node: &NodeId) -> Vec<(SmolStr, Output)> {
        let of_shard = |s: &Shard| -> Vec<(SmolStr, Output)> {
            s.engine
                .keys(s.stream, None, usize::MAX)
                .into_iter()
                .map(|k| {
                    let out = s.engine.output(node, &k).expect("listed keys have outputs");
                    (k, out)
                })
                .collect()
        };
        if self.shards.len() == 1 {
            return of_shard(&self.shards[0]);
        }
        let mut all: Vec<(SmolStr, Output)> = std::thread::scope(|scope| {
            let handles: Vec<_> = self.shards.iter().map(|s| scope.spawn(move || of_shard(s))).collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("evaluating a shard does not panic"))
                .collect()
        });
        all.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        all
    }

    /// The job's named outputs.
    pub fn outputs(&self) -> &[PlanOutput] {
        &self.outputs
    }

    /// Whether every output is a timeline per key (the classic query).
    pub fn per_key_only(&self) -> bool {
        self.outputs.iter().all(|o| o.worker.is_per_key())
    }

    /// An aggregate or metric output at `t` (default: the latest event time).
    /// The aggregators take in every key first. (Queries with aggregates run
    /// in one shard.)
    pub fn read_output(&mut self, output: &PlanOutput, t: Option<Time>) -> Result<GroupValues, ReadError> {
        let engine = &mut self.shards[0].engine;
        engine.refresh_aggregates();
        match output.worker {
            WorkerKind::Metric => engine.metric(&output.node, t, None),
            _ => engine.aggregate(&output.node, t, &output.functions, None),
        }
    }

    /// The engine of the first shard (the only one for queries with aggregates).
    pub fn engine(&self) -> &Engine {
        &self.shards[0].engine
    }

    /// Approximate bytes held by all worker state.
    pub fn state_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.engine.state_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_without_parsing_the_line() {
        let finder = KeyFinder::new("session_id");
        let key = |line: &str| {
            finder
                .key(line.as_bytes())
                .map(|k| String::from_utf8(k.into_owned()).unwrap())
        };
        assert_eq!(key(r#"{"time":1,"session_id":"a b"}"#).as_deref(), Some("a b"));
        assert_eq!(key(r#"{ "session_id" : 42, "time": 1}"#).as_deref(), Some("42"));
        assert_eq!(key(r#"{"session_id":"a\u0062c"}"#).as_deref(), Some("abc"));
        // Inside a string it is not a key.
        assert_eq!(
            key(r#"{"note":"{\"session_id\":\"x\"}","session_id":"y"}"#).as_deref(),
            Some("y")
        );
        assert_eq!(key(r#"{"time":1}"#), None);
        assert_eq!(key(r#"{"session_id":true}"#), None);
    }

    #[test]
    fn shards_give_the_results_of_one_engine_whatever_the_lines() {
        let query = include_str!("../../examples/cirr.tl");
        let mut text = String::new();
        crate::generate::write_cirr(
            &crate::generate::CirrOptions {
                sessions: 200,
                seed: 5,
                late: 0.05,
                duplicates: 0.05,
            },
            &mut string_writer(&mut text),
        )
        .unwrap();
        // A line the fast path reads through an escape, a bad line, a key
        // field twice (rejected by the parser, reported once).
        text.push_str("{\"time\": 5, \"session_id\": \"esc\\u0061ped\", \"playerStateChange\": \"play\"}\n");
        text.push_str("not json\n");
        text.push_str(
            "{\"session_id\":\"session-000001\",\"time\":9,\"session_id\":\"session-000002\",\"cdnChange\":\"CDN1\"}\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, &text).unwrap();

        let mut one = Batch::new(query, "session_id").unwrap();
        let mut bad_one = Vec::new();
        one.read(text.as_bytes(), |b| bad_one.push(b), |_| {}).unwrap();
        for shards in [2, 3] {
            let mut many = Batch::with_shards(query, "session_id", shards).unwrap();
            assert_eq!(many.shard_count(), shards);
            let bad = std::sync::Mutex::new(Vec::new());
            many.read_path(&path, |b| bad.lock().unwrap().push(b), |_| {}).unwrap();
            assert_eq!(many.results(), one.results(), "{shards} shards");
            assert_eq!(many.events(), one.events());
            let mut bad = bad.into_inner().unwrap();
            bad.sort_by_key(|b| b.line);
            assert_eq!(bad, bad_one);
            // The same through one thread.
            let mut routed = Batch::with_shards(query, "session_id", shards).unwrap();
            routed.read(text.as_bytes(), |_| {}, |_| {}).unwrap();
            assert_eq!(routed.results(), one.results());
        }
        assert_eq!(bad_one.iter().map(|b| b.line).collect::<Vec<_>>().len(), 2);
        // Aggregates run in one shard.
        let rate = include_str!("../../examples/completion-rate.tl");
        assert_eq!(Batch::with_shards(rate, "session_id", 4).unwrap().shard_count(), 1);
    }

    #[test]
    fn the_columns_read_are_those_of_every_leaf_and_group() {
        let batch = Batch::new(include_str!("../../examples/completion-rate.tl"), "session_id").unwrap();
        assert_eq!(batch.columns_read, ["cdnChange", "playerStateChange"]);
        let batch = Batch::new(include_str!("../../examples/cirr.tl"), "session_id").unwrap();
        assert_eq!(batch.columns_read, ["cdnChange", "playerStateChange", "userAction"]);
        let batch = Batch::new("has_existed_within(a > 1 && !(b == \"x\" || c != 2), 5s)", "k").unwrap();
        assert_eq!(batch.columns_read, ["a", "b", "c"]);
        let batch = Batch::new(
            "sequence(a == 1, b == 2, within(1h)) && absent_after(c == 1, d == 2, 5m) && time_since(e == 1) > 5",
            "k",
        )
        .unwrap();
        assert_eq!(batch.columns_read, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn a_mapped_file_is_released_behind_the_slowest_reader_and_still_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..64 * 4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let map = unsafe { memmap2::Mmap::map(&std::fs::File::open(&path).unwrap()) }.unwrap();
        let released = Released::with_step(2, 4 * 4096);
        released.reached(&map, 0, 40 * 4096 + 17);
        assert_eq!(
            *released.upto.lock().unwrap(),
            0,
            "the other reader is still at the start"
        );
        released.reached(&map, 1, 10 * 4096);
        assert_eq!(*released.upto.lock().unwrap(), 8 * 4096);
        released.reached(&map, 1, 64 * 4096);
        assert_eq!(*released.upto.lock().unwrap(), 40 * 4096);
        // Released pages come back from the file when read again.
        assert_eq!(&map[..], &data[..]);
    }

    #[test]
    fn the_copy_of_standard_input_is_given_up_past_its_limit_and_reads_on() {
        let text = "0123456789\n".repeat(10);
        let mut file = std::io::BufWriter::new(tempfile::tempfile().unwrap());
        let mut tee = Tee {
            inner: text.as_bytes(),
            copy: Some(&mut file),
            kept: 0,
            limit: 50,
            lost: None,
        };
        let mut read = String::new();
        std::io::Read::read_to_string(&mut tee, &mut read).unwrap();
        assert_eq!(read, text, "reading goes on");
        assert!(tee.copy.is_none());
        assert!(tee.lost.unwrap().contains("over the"));
        let mut file = std::io::BufWriter::new(tempfile::tempfile().unwrap());
        let mut tee = Tee {
            inner: text.as_bytes(),
            copy: Some(&mut file),
            kept: 0,
            limit: 1 << 20,
            lost: None,
        };
        read_lines(&mut tee, &mut |_| {}, |_, _| {}).unwrap();
        assert!(tee.lost.is_none() && tee.kept == text.len() as u64);
    }

    fn string_writer(text: &mut String) -> impl std::io::Write + '_ {
        struct W<'a>(&'a mut String);
        impl std::io::Write for W<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .push_str(std::str::from_utf8(buf).map_err(std::io::Error::other)?);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        W(text)
    }
}
