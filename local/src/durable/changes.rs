//! The changes of the jobs that record them: what each commit of events
//! changed in their results, stored with the log position that caused it.
//!
//! Two halves. The writer's, [`Recorder`], reads the results of the keys a
//! commit touches before applying it and again after ([`Recorder::before`],
//! [`Recorder::after`]): only it may read the engine between commits. The
//! sink's, on a thread of its own, takes those results in commit order,
//! computes their differences ([`timeline::changes::diff`]), gives them ids
//! (one sequence per job), stores them with the log position they reach
//! ([`Store::append_changes`]) and only then acknowledges the commit's
//! batches; the writer meanwhile goes on with the next commit.
//!
//! Changes are a function of the log and of how it was committed: the same
//! records applied in the same commits to the same state give the same
//! changes with the same ids. So they are stored without an fsync of their
//! own (the log's next append makes them durable), the log remembers its
//! commits, and after a crash recovery computes the changes of the commits
//! after the position on disk again ([`Recorder::catch_up`]): what a reader
//! saw before the crash is what is there after it.
//!
//! The results read after a commit are kept for the next one (keys of a
//! live stream get events commit after commit), so most keys are evaluated
//! once per commit, not twice, and an aggregate (which folds every group) is
//! folded once; anything else that changes the engine (a job submitted or
//! deleted, retention) drops them.

use std::sync::mpsc;

use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;
use timeline::changes::diff;
use timeline::{Event, Group, NodeId, Time, Timeline, Value, WorkerKind};
use timeline_api::views::{ChangeView, GroupValue, ScalarValue, group_changes};
use tokio::sync::watch;

use super::{Refused, Reply};
use crate::engine::{Engine, StreamId};
use crate::store::{ChangeWriter, Store};

/// Names a file whose existence makes the server abort (once, removing it)
/// after a log commit, before its changes are stored: how the tests crash
/// the server at that point.
pub const CRASH_ENV: &str = "TIMELINE_TEST_CRASH_BEFORE_CHANGES";

/// Commits the sink may lag behind the writer.
const SINK_QUEUE: usize = 4;

/// The writer's half of recording changes.
#[derive(Debug)]
pub struct Recorder {
    /// The jobs that record changes.
    jobs: Vec<String>,
    /// The per-key results read after the last commit, by job and key.
    results: Results,
    /// Results the sink read after commits, on their way back (oldest
    /// first); how many are still to come.
    returned: mpsc::Receiver<Results>,
    outstanding: usize,
    /// Whether the sink reads the engine itself (once it has it).
    shared: bool,
    sink: mpsc::SyncSender<ToSink>,
    feed: watch::Receiver<u64>,
}

/// Results read after a commit, kept for the next: per-key results by job
/// (index) and key, aggregate outputs' groups by job and output.
#[derive(Debug, Default)]
struct Results {
    keys: FxHashMap<(usize, SmolStr), Vec<Timeline>>,
    aggregates: FxHashMap<(usize, String), GroupValues>,
}

/// An aggregate or metric output of a job.
#[derive(Debug, Clone)]
struct AggregateOutput {
    name: String,
    node: NodeId,
    /// None for a metric.
    functions: Option<Vec<timeline::AggFn>>,
}

/// (group, function, value) of an aggregate output at an instant.
type GroupValues = Vec<(Group, Option<String>, Option<Value>)>;

/// A job's outputs and what they were before a commit.
#[derive(Debug)]
struct JobBefore {
    job: usize,
    per_key: Vec<(String, NodeId)>,
    /// Each key's per-key outputs before.
    keys: Vec<(SmolStr, Vec<Timeline>)>,
    aggregates: Vec<(AggregateOutput, GroupValues)>,
}

/// What the jobs that record changes showed before a commit.
#[derive(Debug, Default)]
pub struct Before {
    jobs: Vec<JobBefore>,
}

/// An output's name and its timeline before and after a commit.
type OutputPair = (String, Timeline, Timeline);

/// A job's results before and after a commit, for the sink to compare.
#[derive(Debug)]
struct Observed {
    job: String,
    /// Per key: each per-key output before and after.
    keys: Vec<(SmolStr, Vec<OutputPair>)>,
    /// Per aggregate output: its name, the instant read, before, after.
    aggregates: Vec<(String, Option<Time>, GroupValues, GroupValues)>,
}

/// A commit's results: read already, or to be read by the sink (before the
/// writer applies the next commit), then sent back to the writer.
enum Work {
    Observed(Vec<Observed>),
    ReadAfter(Before, Vec<String>),
}

/// What the sink is told, in order.
enum ToSink {
    /// A commit: log records `records` (first, last), the log's end after
    /// them, each job's results, and the batches to acknowledge once stored.
    Commit {
        records: [u64; 2],
        covered: u64,
        work: Work,
        replies: Vec<(Reply<Refused>, Refused)>,
    },
    /// The engine, for the sink to read results after commits itself.
    Engine(std::sync::Arc<std::sync::RwLock<Engine>>),
    /// Job `job` records changes, its last id given.
    Subscribe { job: String, last_id: u64 },
    /// Job `job` is gone.
    Unsubscribe(String),
    /// Count the changes stored in these metrics.
    Metrics(std::sync::Arc<crate::metrics::Metrics>),
    /// Store everything, fsynced, with the log position `covered`; answer.
    Flush {
        covered: u64,
        done: mpsc::SyncSender<anyhow::Result<()>>,
    },
}

impl Recorder {
    /// A recorder for the jobs of `store` that record changes, with its sink
    /// thread.
    pub fn new(store: &Store, engine: &Engine) -> anyhow::Result<Self> {
        let (feed_in, feed) = watch::channel(0);
        let (give_back, returned) = mpsc::channel();
        let sink = Sink {
            engine: None,
            give_back,
            last_ids: FxHashMap::default(),
            writer: store.change_writer(),
            unstored: Vec::new(),
            unstored_count: 0,
            metrics: None,
            feed: feed_in,
            crash_marker: std::env::var_os(CRASH_ENV).map(Into::into),
        };
        let (to_sink, inbox) = mpsc::sync_channel(SINK_QUEUE);
        std::thread::Builder::new()
            .name("timeline-changes".into())
            .spawn(move || sink.run(inbox))?;
        let mut recorder = Recorder {
            jobs: Vec::new(),
            results: Results::default(),
            returned,
            outstanding: 0,
            shared: false,
            sink: to_sink,
            feed,
        };
        for job in store.jobs()? {
            if job.changes && engine.job(&job.name).is_ok() {
                recorder.subscribe(store, &job.name)?;
            }
        }
        Ok(recorder)
    }

    /// Counts the changes stored in `metrics` from now on.
    pub fn count_in(&self, metrics: std::sync::Arc<crate::metrics::Metrics>) {
        self.send(ToSink::Metrics(metrics));
    }

    /// Readers wait on this for new changes: the number stored so far.
    pub fn feed(&self) -> watch::Receiver<u64> {
        self.feed.clone()
    }

    /// Whether any job records changes.
    pub fn active(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Job `name` records its changes from now on.
    pub fn subscribe(&mut self, store: &Store, name: &str) -> anyhow::Result<()> {
        self.forget_results();
        let last_id = store.last_change(name)?;
        self.jobs.retain(|j| j != name);
        self.jobs.push(name.to_string());
        self.send(ToSink::Subscribe {
            job: name.to_string(),
            last_id,
        });
        Ok(())
    }

    /// Job `name` is gone.
    pub fn unsubscribe(&mut self, name: &str) {
        self.forget_results();
        self.jobs.retain(|j| j != name);
        self.send(ToSink::Unsubscribe(name.to_string()));
    }

    /// The engine changed other than by a commit: the results kept from the
    /// last one may be stale.
    pub fn forget_results(&mut self) {
        self.take_returned();
        self.results = Results::default();
    }

    /// From now on the sink reads the results after each commit itself,
    /// while the writer goes on with the next one.
    pub fn share_engine(&mut self, engine: std::sync::Arc<std::sync::RwLock<Engine>>) {
        self.send(ToSink::Engine(engine));
        self.shared = true;
    }

    /// Waits for the results the sink read after the last commit (before
    /// the engine's lock is taken: the sink reads under it).
    pub fn take_returned(&mut self) {
        while self.outstanding > 0 {
            self.outstanding -= 1;
            match self.returned.recv() {
                Ok(results) => self.results = results,
                Err(_) => {
                    self.outstanding = 0;
                    self.results = Results::default();
                }
            }
        }
    }

    fn send(&self, message: ToSink) {
        if self.sink.send(message).is_err() {
            tracing::error!("the changes thread stopped: changes are not recorded");
        }
    }

    /// Waits until the sink stored every change so far, fsynced with the log
    /// position `covered` (before a snapshot, which must not cover records
    /// whose changes recovery would have to compute; before a job is
    /// submitted or deleted; after a recovery).
    pub fn flush(&self, covered: u64) -> anyhow::Result<()> {
        if !self.active() {
            return Ok(());
        }
        let (done, answer) = mpsc::sync_channel(1);
        self.send(ToSink::Flush { covered, done });
        answer
            .recv()
            .map_err(|_| anyhow::anyhow!("the changes thread stopped"))?
    }

    /// Reads the results of the keys that `batches` (stream, events) touch,
    /// for every job that records changes.
    pub fn before<'e>(
        &mut self,
        engine: &Engine,
        batches: impl Iterator<Item = (StreamId, &'e [Event])> + Clone,
    ) -> Before {
        self.take_returned();
        let mut jobs = Vec::new();
        for (index, name) in self.jobs.iter().enumerate() {
            let (Ok(job), Ok(stream)) = (engine.job(name), engine.job_stream(name)) else {
                continue;
            };
            let mut per_key = Vec::new();
            let mut aggregates = Vec::new();
            for output in &job.plan.outputs {
                let functions = match output.worker {
                    WorkerKind::EventProcessor | WorkerKind::TimelineProcessor => {
                        per_key.push((output.name.clone(), output.node.clone()));
                        continue;
                    }
                    WorkerKind::Aggregator => Some(output.functions.clone()),
                    WorkerKind::Metric => None,
                };
                aggregates.push(AggregateOutput {
                    name: output.name.clone(),
                    node: output.node.clone(),
                    functions,
                });
            }
            let mut seen = FxHashSet::default();
            let mut keys = Vec::new();
            if !per_key.is_empty() {
                for (_, events) in batches.clone().filter(|(s, _)| *s == stream) {
                    for event in events {
                        if seen.insert(event.key.clone()) {
                            let results = match self.results.keys.remove(&(index, event.key.clone())) {
                                Some(kept) => kept,
                                None => per_key
                                    .iter()
                                    .map(|(_, node)| key_result(engine, node, &event.key))
                                    .collect(),
                            };
                            keys.push((event.key.clone(), results));
                        }
                    }
                }
            }
            let touched = batches.clone().any(|(s, events)| s == stream && !events.is_empty());
            // An aggregate folds every group: what was read after the last
            // commit is taken rather than folded again.
            let aggregates = match touched {
                true => aggregates
                    .into_iter()
                    .map(|a| {
                        let values = match self.results.aggregates.remove(&(index, a.name.clone())) {
                            Some(kept) => kept,
                            None => aggregate_values(engine, &a).1,
                        };
                        (a, values)
                    })
                    .collect(),
                false => Vec::new(),
            };
            if !keys.is_empty() || !aggregates.is_empty() {
                jobs.push(JobBefore {
                    job: index,
                    per_key,
                    keys,
                    aggregates,
                });
            }
        }
        Before { jobs }
    }

    /// Reads the results again after the commit of log records `records`
    /// (first, last; the log ends at `covered`) and hands them to the sink,
    /// which acknowledges `replies` once their changes are stored. Once the
    /// sink has the engine ([`Recorder::share_engine`]) it reads them
    /// itself, while the writer logs the next commit; the writer takes them
    /// back before reading the next commit's results.
    pub fn after(
        &mut self,
        engine: &Engine,
        before: Before,
        records: [u64; 2],
        covered: u64,
        replies: Vec<(Reply<Refused>, Refused)>,
    ) {
        let work = if self.shared {
            self.outstanding += 1;
            Work::ReadAfter(before, self.jobs.clone())
        } else {
            let (observed, results) = read_after(engine, before, &self.jobs);
            self.results = results;
            Work::Observed(observed)
        };
        self.send(ToSink::Commit {
            records,
            covered,
            work,
            replies,
        });
    }

    /// After a recovery that stopped at the stored changes' position
    /// `covered`: applies the log's records from there commit by commit as
    /// the writer did, computing and storing their changes again.
    pub fn catch_up(&mut self, store: &mut Store, engine: &mut Engine, covered: u64) -> anyhow::Result<u64> {
        let mut records = Vec::new();
        store.replay_from(covered, |seq, record| {
            let (header, events) = super::record_events(record)?;
            let stream = engine.open_stream(&header.stream());
            records.push((seq, header, stream, events));
            Ok(())
        })?;
        let mut applied = 0;
        let mut rest = records.as_slice();
        while let Some(&(first, ..)) = rest.first() {
            let last = store.commit_end(first)?.unwrap_or(first);
            let n = rest.iter().take_while(|(seq, ..)| *seq <= last).count().max(1);
            let (commit, after) = rest.split_at(n);
            rest = after;
            let before = self.before(
                engine,
                commit.iter().map(|(_, _, stream, events)| (*stream, events.as_slice())),
            );
            for (seq, header, _, events) in commit {
                applied += super::apply_events(engine, *seq, header, events, None)?;
            }
            let conflicts = engine.take_conflicts();
            let log = store.reader();
            super::settle_conflicts(engine, conflicts, |seq| log.get(seq))?;
            engine.refresh_aggregates();
            let end = commit.last().map_or(first, |(seq, ..)| *seq);
            self.after(engine, before, [first, end], end + 1, Vec::new());
        }
        self.flush(store.records())?;
        self.forget_results();
        Ok(applied)
    }
}

/// The sink's half, on its own thread.
struct Sink {
    /// The engine, to read results after commits.
    engine: Option<std::sync::Arc<std::sync::RwLock<Engine>>>,
    /// Where the results read after a commit go back to the writer.
    give_back: mpsc::Sender<Results>,
    /// The last id of each job that records changes.
    last_ids: FxHashMap<String, u64>,
    writer: ChangeWriter,
    /// Changes not stored yet (a failed write), per job and commit: the job,
    /// its last id, the changes as JSON lines.
    unstored: Vec<(String, u64, Vec<u8>)>,
    /// How many changes `unstored` holds.
    unstored_count: u64,
    /// The number of changes stored so far.
    feed: watch::Sender<u64>,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// Tests: when this file exists, the process dies before storing the
    /// changes of a commit (see [`CRASH_ENV`]).
    crash_marker: Option<std::path::PathBuf>,
}

impl Sink {
    fn run(mut self, inbox: mpsc::Receiver<ToSink>) {
        for message in inbox {
            match message {
                ToSink::Commit {
                    records,
                    covered,
                    work,
                    replies,
                } => {
                    let jobs = match work {
                        Work::Observed(jobs) => jobs,
                        Work::ReadAfter(before, names) => {
                            let engine = self.engine.as_ref().expect("the engine comes before such work");
                            let (jobs, results) = {
                                let engine = engine.read().unwrap_or_else(|p| p.into_inner());
                                read_after(&engine, before, &names)
                            };
                            let _ = self.give_back.send(results);
                            jobs
                        }
                    };
                    self.compare(records, jobs);
                    if let Some(marker) = &self.crash_marker
                        && std::fs::remove_file(marker).is_ok()
                    {
                        tracing::error!("{CRASH_ENV}: aborting before storing changes");
                        std::process::abort();
                    }
                    if let Err(e) = self.store(covered, false) {
                        // The events are stored: the changes go with the
                        // next commit (or are computed again after a crash).
                        tracing::error!("cannot store the changes of a commit (retried with the next one): {e:#}");
                    }
                    for (reply, refused) in replies {
                        let _ = reply.send(Ok(refused));
                    }
                }
                ToSink::Subscribe { job, last_id } => {
                    self.last_ids.insert(job, last_id);
                }
                ToSink::Metrics(metrics) => self.metrics = Some(metrics),
                ToSink::Engine(engine) => self.engine = Some(engine),
                ToSink::Unsubscribe(job) => {
                    self.last_ids.remove(&job);
                    self.unstored.retain(|(j, ..)| *j != job);
                    // Wakes the readers, so that those of the job end.
                    self.feed.send_modify(|_| {});
                }
                ToSink::Flush { covered, done } => {
                    let _ = done.send(self.store(covered, true));
                }
            }
        }
    }

    /// The changes of one commit, with ids, as JSON lines per job.
    fn compare(&mut self, records: [u64; 2], jobs: Vec<Observed>) {
        for job in jobs {
            let Some(last_id) = self.last_ids.get_mut(&job.job) else {
                continue;
            };
            let mut lines = Vec::new();
            let mut push = |mut view: ChangeView| {
                *last_id += 1;
                view.id = *last_id;
                view.records = Some(records.to_vec());
                serde_json::to_writer(&mut lines, &view).expect("changes serialize");
                lines.push(b'\n');
                self.unstored_count += 1;
            };
            for (key, outputs) in &job.keys {
                for (name, old, new) in outputs {
                    for change in diff(old, new) {
                        push(ChangeView::of_key(name, key, &change));
                    }
                }
            }
            for (output, at, old, new) in &job.aggregates {
                for change in group_changes(output, &rows(old), &rows(new), *at) {
                    push(change);
                }
            }
            if !lines.is_empty() {
                self.unstored.push((job.job, *last_id, lines));
            }
        }
    }

    /// Stores the changes not stored yet with the log position `covered`
    /// they reach; on success wakes the readers.
    fn store(&mut self, covered: u64, durable: bool) -> anyhow::Result<()> {
        if self.last_ids.is_empty() && self.unstored.is_empty() {
            return Ok(());
        }
        self.writer.append_changes(&self.unstored, covered, durable)?;
        let stored = std::mem::take(&mut self.unstored_count);
        self.unstored.clear();
        if stored > 0 {
            self.feed.send_modify(|n| *n += stored);
            if let Some(metrics) = &self.metrics {
                metrics.changes.inc_by(stored);
            }
        }
        Ok(())
    }
}

/// Each job's results now, against what they were `before`; and the
/// results now, to be kept for the next commit.
fn read_after(engine: &Engine, before: Before, jobs: &[String]) -> (Vec<Observed>, Results) {
    let mut results = Results::default();
    let mut observed = Vec::with_capacity(before.jobs.len());
    for job in before.jobs {
        let mut keys = Vec::with_capacity(job.keys.len());
        for (key, old) in job.keys {
            let mut outputs = Vec::with_capacity(old.len());
            let mut now = Vec::with_capacity(old.len());
            for ((name, node), old) in job.per_key.iter().zip(old) {
                let new = key_result(engine, node, &key);
                now.push(new.clone());
                outputs.push((name.clone(), old, new));
            }
            results.keys.insert((job.job, key.clone()), now);
            keys.push((key, outputs));
        }
        let aggregates = job
            .aggregates
            .into_iter()
            .map(|(output, old)| {
                let (at, new) = aggregate_values(engine, &output);
                results.aggregates.insert((job.job, output.name.clone()), new.clone());
                (output.name, at, old, new)
            })
            .collect();
        observed.push(Observed {
            job: jobs[job.job].clone(),
            keys,
            aggregates,
        });
    }
    (observed, results)
}

/// An aggregate read's rows as the API compares them.
fn rows(values: &GroupValues) -> Vec<GroupValue> {
    values
        .iter()
        .map(|(group, function, value)| (group.label(), function.clone(), value.as_ref().map(ScalarValue::from)))
        .collect()
}

/// Node `node` of `key` now (Unknown for a key without events).
fn key_result(engine: &Engine, node: &NodeId, key: &str) -> Timeline {
    engine.output(node, key).map(|o| o.timeline).unwrap_or_default()
}

/// Every group's value of each function of an aggregate or metric output at
/// its stream's latest event time, and that time.
fn aggregate_values(engine: &Engine, output: &AggregateOutput) -> (Option<Time>, GroupValues) {
    let read = match &output.functions {
        Some(functions) => engine.aggregate(&output.node, None, functions, None),
        None => engine.metric(&output.node, None, None),
    };
    let Ok(values) = read else { return (None, Vec::new()) };
    let metric = output.functions.is_none();
    let rows = values
        .groups
        .into_iter()
        .flat_map(|row| {
            let group = row.group;
            row.values
                .into_iter()
                .map(move |(function, value)| (group.clone(), (!metric).then_some(function), value))
        })
        .collect();
    (values.t, rows)
}
