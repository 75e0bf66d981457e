//! The durability core of `timeline serve`: recovery from the store, and the
//! single writer that appends each change to the log (fsynced, concurrent
//! batches in one commit), applies it to the engine, then acknowledges.
//! Record encoding and decoding are in [`crate::store`].

use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Result;
use smol_str::SmolStr;
use timeline::registry::{SubmitError, Submitted};
use timeline::{Event, NodeId, StreamSpec};
use tokio::sync::{mpsc, oneshot};

use crate::body::parse_body;
use crate::engine::{Engine, ReadError, StreamId, Target};
use crate::metrics::Metrics;
use crate::snapshot::{self, SnapshotPolicy};
use crate::store::{LogHeader, Store, StoredJob, decode_record};

mod changes;
mod dedup;
mod retention;

pub use changes::{CRASH_ENV, Recorder};
pub use retention::{Refused, RetentionPolicy, forget_expired};

/// Why the writer did not do what it was asked.
#[derive(Debug)]
pub enum DurableError {
    /// The log or the job table could not be written.
    Storage(String),
    /// The job was refused.
    Submit {
        /// The DSL submitted.
        query: String,
        /// Why.
        error: SubmitError,
    },
    /// What was asked of the engine does not exist.
    Read(ReadError),
    /// Anything else (a failed backfill).
    Internal(String),
}

/// Recovers the engine as [`recover`] does, and the changes of the jobs
/// that record them: those of the log records after the stored changes
/// (a crash between the two commits) are computed again.
pub fn recover_with_changes(store: &mut Store, default: StreamSpec) -> Result<(Engine, Recorder)> {
    let subscribed = store.jobs()?.iter().any(|j| j.changes);
    let covered = match store.changes_covered()? {
        Some(covered) if subscribed && covered < store.records() => covered,
        _ => u64::MAX,
    };
    let mut engine = recover_until(store, default, covered)?;
    let mut recorder = Recorder::new(store, &engine)?;
    if covered != u64::MAX {
        let applied = recorder.catch_up(store, &mut engine, covered)?;
        tracing::info!(
            from_record = covered,
            events = applied,
            "changes computed again after a crash"
        );
    }
    Ok((engine, recorder))
}

/// Opens the jobs and recovers the engine of `store` (default stream
/// `default`): the newest usable snapshot plus the log's tail, or the whole
/// log when there is no snapshot or it cannot be used.
pub fn recover(store: &Store, default: StreamSpec) -> Result<Engine> {
    recover_until(store, default, u64::MAX)
}

/// [`recover`], with the log's records before `until` only.
fn recover_until(store: &Store, default: StreamSpec, until: u64) -> Result<Engine> {
    let started = Instant::now();
    let jobs = store.jobs()?;
    let fresh = || {
        let mut engine = Engine::with_default_stream(default.clone());
        for job in &jobs {
            if let Err(e) = engine.submit(Some(&job.name), &job.query) {
                tracing::warn!(job = job.name, "stored job no longer valid, skipped: {e}");
            }
        }
        engine
    };
    // The log's tail is read and parsed on a second thread while the
    // snapshot is decoded and restored here, then applied as it comes.
    let guess = snapshot::covered_records(store.dir()).unwrap_or(0);
    let (parsed, tail) = std::sync::mpsc::sync_channel::<(u64, LogHeader, Vec<Event>)>(16);
    let mut engine = fresh();
    let mut from = 0;
    let mut replayed = 0u64;
    std::thread::scope(|scope| -> Result<()> {
        let reader = scope.spawn(move || {
            store.replay_from(guess, |seq, record| {
                let (header, events) = record_events(record)?;
                // A closed channel: recovery took another way; stop.
                parsed
                    .send((seq, header, events))
                    .map_err(|_| anyhow::anyhow!("stopped"))
            })
        });
        match snapshot::read(store.dir(), jobs.clone(), store.records()) {
            Ok(None) => {}
            Ok(Some(loaded)) if loaded.records > until => {
                tracing::warn!("snapshot past the stored changes not used, replaying the whole log");
            }
            Ok(Some(loaded)) => match engine.restore(loaded.image) {
                Ok(()) => from = loaded.records,
                Err(e) => {
                    tracing::warn!("snapshot not used, replaying the whole log: {e}");
                    engine = fresh();
                }
            },
            Err(e) => tracing::warn!("snapshot not used, replaying the whole log: {e:#}"),
        }
        if from == guess {
            // Records from `until` on are read (the reader must finish) but
            // not applied.
            for (seq, header, events) in tail.iter().filter(|(seq, ..)| *seq < until) {
                replayed += apply_events(&mut engine, seq, &header, &events, None)?;
            }
            return reader
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the log reader panicked")));
        }
        drop(tail);
        let _ = reader.join();
        store.replay_from(from, |seq, record| {
            if seq < until {
                replayed += apply_record(&mut engine, seq, record, None)?;
            }
            Ok(())
        })
    })?;
    let conflicts = engine.take_conflicts();
    let log = store.reader();
    settle_conflicts(&mut engine, conflicts, |seq| log.get(seq))?;
    engine.refresh_aggregates();
    tracing::info!(
        jobs = engine.registry().jobs().count(),
        keys = engine.key_count(),
        snapshot_records = from,
        replayed_events = replayed,
        records = store.records(),
        "recovered in {:.2?}",
        started.elapsed()
    );
    Ok(engine)
}

/// Starts the writer thread; commands sent to the returned channel run in
/// order.
pub fn spawn_writer(
    store: Store,
    engine: Arc<RwLock<Engine>>,
    metrics: Arc<Metrics>,
    policy: SnapshotPolicy,
    retention: RetentionPolicy,
    mut recorder: Recorder,
) -> std::io::Result<(mpsc::Sender<Command>, std::thread::JoinHandle<()>)> {
    let (writer, commands) = mpsc::channel(1024);
    recorder.count_in(metrics.clone());
    recorder.share_engine(engine.clone());
    if retention.keep.is_some() {
        spawn_ticker(&writer, retention.check_every)?;
    }
    let thread = std::thread::Builder::new()
        .name("timeline-writer".into())
        .spawn(move || {
            write_loop(
                store,
                engine,
                metrics,
                commands,
                Snapshots::new(policy),
                retention::Expiry::new(retention),
                recorder,
            )
        })?;
    Ok((writer, thread))
}

/// Sends the writer a [`Command::Tick`] every `every` (so that retention
/// runs after the last events too), until the writer's channel closes.
fn spawn_ticker(writer: &mpsc::Sender<Command>, every: std::time::Duration) -> std::io::Result<()> {
    let writer = writer.downgrade();
    let every = every.max(std::time::Duration::from_millis(10));
    std::thread::Builder::new()
        .name("timeline-ticker".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                // Only a weak handle between ticks: the ticker never keeps the
                // writer alive.
                let Some(writer) = writer.upgrade() else { return };
                match writer.try_send(Command::Tick) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        })?;
    Ok(())
}

/// Where the writer answers.
pub type Reply<T> = oneshot::Sender<Result<T, DurableError>>;

/// A batch waiting for its commit.
pub struct Ingest {
    /// The log record (see [`crate::store::encode_record`]).
    pub record: Vec<u8>,
    /// Its events, parsed.
    pub events: Vec<Event>,
    /// Their stream.
    pub stream: StreamId,
    /// The leaves they are for.
    pub target: Target,
    /// The events refused as older than the retention horizon (set by the
    /// writer).
    pub refused: Refused,
    /// Answered once durable and applied, with the events refused.
    pub reply: Reply<Refused>,
}

impl Ingest {
    /// A batch of `events` of `stream` for `target`, logged as `record`;
    /// `reply` is answered once it is durable and applied.
    pub fn new(record: Vec<u8>, events: Vec<Event>, stream: StreamId, target: Target, reply: Reply<Refused>) -> Self {
        Ingest {
            record,
            events,
            stream,
            target,
            refused: Refused::default(),
            reply,
        }
    }
}

/// What the writer does, one at a time.
pub enum Command {
    /// Append a batch (grouped with the batches queued behind it).
    Ingest(Ingest),
    /// Submit a job; answers what the registry did and how many leaves are new.
    Submit {
        /// The job's name.
        name: Option<String>,
        /// Its DSL.
        query: String,
        /// Whether it records the changes of its result.
        changes: bool,
        /// The answer.
        reply: Reply<(Submitted, usize)>,
    },
    /// Delete a job.
    Delete {
        /// The job's name.
        name: String,
        /// The answer.
        reply: Reply<()>,
    },
    /// Time passed: run what is due (retention).
    Tick,
}

/// The events of a log record.
pub fn record_events(record: &[u8]) -> Result<(LogHeader, Vec<Event>)> {
    let (header, body) = decode_record(record)?;
    let mut parser = header.stream().parser();
    if let Some(key) = &header.key {
        parser = parser.with_default_key(key);
    }
    let (events, _) = parse_body(&parser, body, header.key.as_deref());
    Ok((header, events))
}

/// Applies log record `seq` to the engine (to the `only` leaves of a new job
/// if given); returns the number of events.
pub fn apply_record(engine: &mut Engine, seq: u64, record: &[u8], only: Option<&[NodeId]>) -> Result<u64> {
    let (header, events) = record_events(record)?;
    apply_events(engine, seq, &header, &events, only)
}

/// Applies the `events` of log record `seq` with `header` (see
/// [`apply_record`]).
fn apply_events(
    engine: &mut Engine,
    seq: u64,
    header: &LogHeader,
    events: &[Event],
    only: Option<&[NodeId]>,
) -> Result<u64> {
    let stream = engine.open_stream(&header.stream());
    if only.is_none() && !header.restart.is_empty() {
        // Retention forgot these keys' earlier events here (a snapshot taken
        // before may still hold them).
        engine.forget(header.restart.iter().map(|key| (stream, key.as_str())));
    }
    engine.apply(stream, events, &header.target()?, only);
    if only.is_none() {
        engine.note_record(stream, seq, events);
    }
    Ok(events.len() as u64)
}

/// The deliveries of `key` in log `records` (read by `log`), in order,
/// each with where it went.
pub fn key_deliveries(
    records: &[u64],
    key: &str,
    log: impl Fn(u64) -> Result<Option<Vec<u8>>>,
) -> Result<Vec<(Event, Target)>> {
    let mut deliveries = Vec::new();
    for &seq in records {
        let Some(record) = log(seq)? else { continue };
        let (header, events) = record_events(&record)?;
        let target = header.target()?;
        deliveries.extend(events.into_iter().filter(|e| e.key == key).map(|e| (e, target.clone())));
    }
    Ok(deliveries)
}

/// Rebuilds each of `keys` from its deliveries in the log (`log` reads a
/// record), so that of the deliveries of an identified event that disagree on
/// its content, the one the contract picks is the event.
pub fn settle_conflicts(
    engine: &mut Engine,
    keys: Vec<(StreamId, SmolStr)>,
    log: impl Fn(u64) -> Result<Option<Vec<u8>>>,
) -> Result<()> {
    for (stream, key) in keys {
        let Ok(records) = engine.key_records(stream, &key).map(<[u64]>::to_vec) else {
            continue;
        };
        let deliveries = key_deliveries(&records, &key, &log)?;
        tracing::info!(
            key = key.as_str(),
            deliveries = deliveries.len(),
            "deliveries of one event_id disagree: key rebuilt"
        );
        engine.rebuild_key(stream, &key, deliveries);
    }
    Ok(())
}

/// The writer: group commit, then apply, then acknowledge.
fn write_loop(
    mut store: Store,
    engine: Arc<RwLock<Engine>>,
    metrics: Arc<Metrics>,
    mut commands: mpsc::Receiver<Command>,
    mut snapshots: Snapshots,
    mut expiry: retention::Expiry,
    mut recorder: Recorder,
) {
    const GROUP_EVENTS: usize = 200_000;
    while let Some(first) = commands.blocking_recv() {
        let mut ingests = Vec::new();
        let mut pending = Some(first);
        let mut events_in_group = 0;
        // Collect ingests that are already queued into one commit; anything else
        // runs on its own, in order.
        while let Some(command) = pending.take() {
            match command {
                Command::Ingest(ingest) => {
                    events_in_group += ingest.events.len();
                    ingests.push(ingest);
                    if events_in_group < GROUP_EVENTS {
                        pending = commands.try_recv().ok();
                    }
                }
                Command::Tick => pending = commands.try_recv().ok(),
                other => {
                    let applied = commit_ingests(
                        &mut store,
                        &engine,
                        &metrics,
                        expiry.keep(),
                        &mut recorder,
                        std::mem::take(&mut ingests),
                    );
                    snapshots.applied(applied);
                    expiry.applied(applied);
                    if run_admin(&mut store, &engine, &mut recorder, other) {
                        // A snapshot taken with the old jobs would not be used.
                        snapshots.take(&mut store, &engine, &mut recorder);
                    }
                    pending = commands.try_recv().ok();
                }
            }
        }
        let applied = commit_ingests(&mut store, &engine, &metrics, expiry.keep(), &mut recorder, ingests);
        snapshots.applied(applied);
        expiry.applied(applied);
        if expiry.due() {
            recorder.forget_results();
            expiry.run(&mut store, &engine, &metrics);
        }
        if snapshots.due() {
            snapshots.take(&mut store, &engine, &mut recorder);
        }
    }
    snapshots.finish();
}

/// When the writer last took a snapshot, how many events came since, and
/// the thread writing the last one.
struct Snapshots {
    policy: SnapshotPolicy,
    since: u64,
    last: Instant,
    writing: Option<std::thread::JoinHandle<()>>,
}

impl Snapshots {
    fn new(policy: SnapshotPolicy) -> Self {
        Snapshots {
            policy,
            since: 0,
            last: Instant::now(),
            writing: None,
        }
    }

    fn applied(&mut self, events: u64) {
        self.since += events;
    }

    /// Enough events or time since the last snapshot, and none being written.
    fn due(&self) -> bool {
        let p = &self.policy;
        self.since > 0
            && self.writing.as_ref().is_none_or(|w| w.is_finished())
            && ((p.every_events > 0 && self.since >= p.every_events)
                || (p.every_secs > 0 && self.last.elapsed().as_secs() >= p.every_secs))
    }

    /// Captures the engine's state now and writes it on another thread (after
    /// the previous snapshot, if it is still being written), so that the
    /// writer only pauses for the copy. A failure is logged: the log still
    /// holds everything. Not while changes wait to be stored: recovery
    /// computes them from the log after the snapshot's records.
    fn take(&mut self, store: &mut Store, engine: &RwLock<Engine>, recorder: &mut Recorder) {
        if !self.policy.enabled() {
            return;
        }
        if let Err(e) = recorder.flush(store.records()) {
            tracing::warn!("snapshot not taken: the changes so far cannot be stored: {e:#}");
            return;
        }
        let jobs = match store.jobs() {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!("cannot write a snapshot: {e:#}");
                return;
            }
        };
        let started = Instant::now();
        let captured = {
            let engine = engine.read().unwrap_or_else(|p| p.into_inner());
            snapshot::capture(&engine, store.records(), jobs)
        };
        let paused = started.elapsed();
        let previous = self.writing.take();
        let dir = store.dir().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("timeline-snapshot".into())
            .spawn(move || {
                if let Some(previous) = previous {
                    let _ = previous.join();
                }
                let records = captured.records();
                match captured.write(&dir) {
                    Ok(bytes) => tracing::info!(
                        records,
                        bytes,
                        "snapshot written in {:.2?} (writer paused {paused:.2?})",
                        started.elapsed()
                    ),
                    Err(e) => tracing::warn!("cannot write a snapshot: {e:#}"),
                }
            });
        match thread {
            Ok(thread) => self.writing = Some(thread),
            Err(e) => tracing::warn!("cannot start the snapshot thread: {e}"),
        }
        self.since = 0;
        self.last = Instant::now();
    }

    /// Waits for the snapshot being written, if any.
    fn finish(&mut self) {
        if let Some(thread) = self.writing.take() {
            let _ = thread.join();
        }
    }
}

/// Commits and applies a group of batches; returns the events applied.
fn commit_ingests(
    store: &mut Store,
    engine: &RwLock<Engine>,
    metrics: &Metrics,
    keep: Option<timeline::Time>,
    recorder: &mut Recorder,
    mut ingests: Vec<Ingest>,
) -> u64 {
    if ingests.is_empty() {
        return 0;
    }
    let engine_lock = engine;
    // Only the writer changes the engine: what it knows now holds until the
    // commit is applied.
    let (expired, streams) = {
        let engine = engine.read().unwrap_or_else(|p| p.into_inner());
        let mut expired = Vec::new();
        if let Some(keep) = keep {
            let refused = retention::refuse_old(&engine, keep, &mut ingests);
            metrics.events_too_old.inc_by(refused as u64);
            expired = retention::expired_in(&engine, keep, &ingests);
        }
        let dropped = dedup::leave_out_repeats(&engine, &mut ingests);
        if dropped > 0 {
            metrics.repeats.inc_by(dropped as u64);
        }
        let streams = (!expired.is_empty()).then(|| engine.stream_ids());
        (expired, streams)
    };
    // Keys behind the horizon that get events again start anew: their old
    // events leave the log before the new ones come in.
    let mut removed = 0;
    if let Some(streams) = streams {
        retention::mark_restarts(&mut ingests, &expired);
        match retention::remove_from_log(store, &streams, &expired) {
            Ok(n) => removed = n,
            Err(e) => {
                tracing::error!("cannot remove the events of keys behind the retention horizon: {e:#}");
                for ingest in ingests {
                    let _ = ingest
                        .reply
                        .send(Err(DurableError::Storage(format!("events not stored: {e:#}"))));
                }
                return 0;
            }
        }
    }
    let started = Instant::now();
    let records: Vec<&[u8]> = ingests
        .iter()
        .filter(|i| !i.record.is_empty())
        .map(|i| i.record.as_slice())
        .collect();
    let any_logged = !records.is_empty();
    let result = if records.is_empty() {
        Ok(store.records())
    } else {
        let result = store.append(&records, recorder.active());
        metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        metrics.commits.inc();
        result
    };
    match result {
        Ok(first) => {
            // The results before the commit, read after its log append: the
            // changes thread reads those after the previous commit meanwhile.
            let before = (recorder.active() && any_logged).then(|| {
                let logged = ingests.iter().filter(|i| !i.record.is_empty());
                let batches = logged.map(|i| (i.stream, i.events.as_slice()));
                recorder.take_returned();
                let engine = engine.read().unwrap_or_else(|p| p.into_inner());
                recorder.before(&engine, batches)
            });
            let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
            if !expired.is_empty() {
                retention::forget(&mut engine, metrics, &expired, removed);
            }
            let logged = ingests.iter().filter(|i| !i.record.is_empty());
            for (seq, ingest) in (first..).zip(logged) {
                engine.apply(ingest.stream, &ingest.events, &ingest.target, None);
                engine.note_record(ingest.stream, seq, &ingest.events);
            }
            let conflicts = engine.take_conflicts();
            let log = store.reader();
            if let Err(e) = settle_conflicts(&mut engine, conflicts, |seq| log.get(seq)) {
                tracing::error!("cannot read the log to settle conflicting deliveries: {e:#}");
            }
            engine.refresh_aggregates();
            metrics.keys.set(engine.key_count() as i64);
            drop(engine);
            let applied = ingests.iter().map(|i| i.events.len() as u64).sum();
            let replies = ingests.into_iter().map(|i| (i.reply, i.refused));
            match before {
                Some(before) => {
                    // The changes thread acknowledges the batches once their
                    // changes are stored.
                    let engine = engine_lock.read().unwrap_or_else(|p| p.into_inner());
                    let end = store.records();
                    recorder.after(&engine, before, [first, end - 1], end, replies.collect());
                }
                None => {
                    for (reply, refused) in replies {
                        let _ = reply.send(Ok(refused));
                    }
                }
            }
            applied
        }
        Err(e) => {
            tracing::error!("cannot write the event log: {e:#}");
            for ingest in ingests {
                let _ = ingest
                    .reply
                    .send(Err(DurableError::Storage(format!("events not stored: {e:#}"))));
            }
            0
        }
    }
}

/// Runs a job command; returns whether the jobs changed.
fn run_admin(store: &mut Store, engine: &RwLock<Engine>, recorder: &mut Recorder, command: Command) -> bool {
    recorder.forget_results();
    // The changes of every commit so far are stored before a job comes or
    // goes (a deleted job's changes must not be written after it).
    if let Err(e) = recorder.flush(store.records()) {
        tracing::error!("cannot store the changes so far: {e:#}");
    }
    let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
    match command {
        Command::Submit {
            name,
            query,
            changes,
            reply,
        } => {
            let result = match engine.submit(name.as_deref(), &query) {
                Err(error) => Err(DurableError::Submit {
                    query: query.clone(),
                    error,
                }),
                Ok((submitted, new_leaves)) => {
                    let Submitted::Created(job) = &submitted else {
                        let _ = reply.send(Ok((submitted, 0)));
                        return false;
                    };
                    let stored = StoredJob {
                        name: job.name.clone(),
                        query: query.clone(),
                        changes,
                    };
                    match store.put_job(&stored) {
                        Err(e) => {
                            engine.delete(&job.name);
                            Err(DurableError::Storage(format!("job not stored: {e:#}")))
                        }
                        Ok(()) => {
                            // Feed the new leaves every event seen so far.
                            let mut replayed = 0;
                            let backfill = store
                                .replay(|seq, record| {
                                    replayed += apply_record(&mut engine, seq, record, Some(&new_leaves))?;
                                    Ok(())
                                })
                                .and_then(|()| {
                                    // The replay applied every delivery to the new leaves.
                                    let stream = engine.job_stream(&job.name).map_err(|e| anyhow::anyhow!("{e}"))?;
                                    let keys = engine
                                        .conflicted_keys(stream)
                                        .into_iter()
                                        .map(|k| (stream, k))
                                        .collect();
                                    let log = store.reader();
                                    settle_conflicts(&mut engine, keys, |seq| log.get(seq))
                                });
                            engine.refresh_aggregates();
                            let backfill = backfill.and_then(|()| {
                                if changes {
                                    recorder.subscribe(store, &job.name)?;
                                }
                                Ok(())
                            });
                            match backfill {
                                Ok(()) => {
                                    tracing::info!(
                                        job = job.name,
                                        new_leaves = new_leaves.len(),
                                        replayed,
                                        "job created"
                                    );
                                    Ok((submitted, new_leaves.len()))
                                }
                                Err(e) => Err(DurableError::Storage(format!(
                                    "job stored, but its backfill from the log failed: {e:#}"
                                ))),
                            }
                        }
                    }
                }
            };
            let changed = result.is_ok();
            let _ = reply.send(result);
            changed
        }
        Command::Delete { name, reply } => {
            let result = match engine.job(&name) {
                Err(e) => Err(DurableError::Read(e)),
                Ok(_) => match store.delete_job(&name) {
                    Ok(()) => {
                        engine.delete(&name);
                        recorder.unsubscribe(&name);
                        tracing::info!(job = name, "job deleted");
                        Ok(())
                    }
                    Err(e) => Err(DurableError::Storage(format!("job not deleted: {e:#}"))),
                },
            };
            let changed = result.is_ok();
            let _ = reply.send(result);
            changed
        }
        Command::Ingest(_) | Command::Tick => unreachable!("the loop takes ingests and ticks"),
    }
}
