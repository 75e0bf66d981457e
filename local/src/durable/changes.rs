//! The changes of the jobs that record them: what each batch of events
//! changed in their results, stored with the log position that caused it.
//!
//! The writer reads the results of the keys a commit touches before applying
//! it and again after ([`Recorder::before`], [`Recorder::after`]); the
//! differences ([`timeline::changes::diff`]) get ids, one sequence per job,
//! and are stored with the log position they reach
//! ([`Store::append_changes`]) before the commit's batches are acknowledged.
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
//! once per commit, not twice; anything else that changes the engine (a job
//! submitted or deleted, retention) drops them.

use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;
use timeline::changes::diff;
use timeline::{Event, NodeId, Timeline, Value, WorkerKind};
use timeline_api::views::{ChangeView, ScalarValue};
use tokio::sync::watch;

use crate::engine::{Engine, StreamId};
use crate::store::Store;

/// A job that records its changes: its name and the last id it gave.
#[derive(Debug)]
struct Subscribed {
    name: String,
    last_id: u64,
}

/// The recorder, owned by the writer.
#[derive(Debug)]
pub struct Recorder {
    jobs: Vec<Subscribed>,
    /// Changes computed but not yet stored (or not stored after a failed
    /// write), per job and commit: the job, the last id, the changes as
    /// JSON lines.
    unstored: Vec<(String, u64, Vec<u8>)>,
    /// How many changes `unstored` holds.
    unstored_count: u64,
    /// Where the stored changes reach in the log, when not written yet (a
    /// commit without changes): written with the next log commit.
    covered_due: Option<u64>,
    /// The number of changes stored so far, for readers waiting on new ones.
    feed: watch::Sender<u64>,
    /// The per-key results read after the last commit, by job and key.
    results: FxHashMap<(usize, SmolStr), Vec<Timeline>>,
    /// Tests: when this file exists, the process dies between a log commit
    /// and the changes' (see [`CRASH_ENV`]).
    crash_marker: Option<std::path::PathBuf>,
}

/// Names a file whose existence makes the writer abort (once, removing it)
/// after a log commit, before its changes are stored: how the tests crash
/// the server at that point.
pub const CRASH_ENV: &str = "TIMELINE_TEST_CRASH_BEFORE_CHANGES";

/// A job's per-key outputs and aggregate outputs, as read before a batch.
#[derive(Debug)]
struct JobBefore {
    job: usize,
    per_key: Vec<(String, NodeId)>,
    /// Each key's per-key outputs before.
    keys: Vec<(SmolStr, Vec<Timeline>)>,
    /// (output, node, functions or none for a metric) and each group's values.
    aggregates: Vec<(AggregateOutput, GroupValuesBefore)>,
}

#[derive(Debug, Clone)]
struct AggregateOutput {
    name: String,
    node: NodeId,
    functions: Option<Vec<timeline::AggFn>>,
}

/// (group, function, value) of an aggregate output at an instant.
type GroupValuesBefore = Vec<(timeline::Group, Option<String>, Option<Value>)>;

/// What the jobs that record changes showed before a batch.
#[derive(Debug, Default)]
pub struct Before {
    jobs: Vec<JobBefore>,
}

impl Recorder {
    /// A recorder for the jobs of `store` that record changes.
    pub fn new(store: &Store, engine: &Engine) -> anyhow::Result<Self> {
        let mut recorder = Recorder {
            jobs: Vec::new(),
            unstored: Vec::new(),
            unstored_count: 0,
            covered_due: None,
            feed: watch::channel(0).0,
            crash_marker: std::env::var_os(CRASH_ENV).map(Into::into),
            results: FxHashMap::default(),
        };
        for job in store.jobs()? {
            if job.changes && engine.job(&job.name).is_ok() {
                recorder.subscribe(store, &job.name)?;
            }
        }
        Ok(recorder)
    }

    /// Readers wait on this for new changes.
    pub fn feed(&self) -> watch::Receiver<u64> {
        self.feed.subscribe()
    }

    /// Whether any job records changes.
    pub fn active(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Whether every change computed is stored (a snapshot may be taken).
    pub fn settled(&self) -> bool {
        self.unstored.is_empty()
    }

    /// Job `name` records its changes from now on.
    pub fn subscribe(&mut self, store: &Store, name: &str) -> anyhow::Result<()> {
        let last_id = store.last_change(name)?;
        self.forget_results();
        self.jobs.retain(|j| j.name != name);
        self.jobs.push(Subscribed {
            name: name.to_string(),
            last_id,
        });
        // Stored with the job: the changes reach the log's end.
        self.covered_due = None;
        Ok(())
    }

    /// Job `name` is gone.
    pub fn unsubscribe(&mut self, name: &str) {
        self.forget_results();
        self.jobs.retain(|j| j.name != name);
        self.unstored.retain(|(job, ..)| job != name);
    }

    /// The engine changed other than by a commit: the results kept from the
    /// last one may be stale.
    pub fn forget_results(&mut self) {
        self.results.clear();
    }

    /// Where the stored changes reach, to be written with the next log
    /// commit (none: nothing to write).
    pub fn covered_due(&self) -> Option<u64> {
        self.covered_due.filter(|_| self.active())
    }

    /// The log commit carrying [`Recorder::covered_due`] landed.
    pub fn covered_written(&mut self) {
        self.covered_due = None;
    }

    /// Reads the results of the keys that `batches` (stream, events) touch,
    /// for every job that records changes.
    pub fn before<'e>(
        &mut self,
        engine: &Engine,
        batches: impl Iterator<Item = (StreamId, &'e [Event])> + Clone,
    ) -> Before {
        let mut jobs = Vec::new();
        for (index, subscribed) in self.jobs.iter().enumerate() {
            let (Ok(job), Ok(stream)) = (engine.job(&subscribed.name), engine.job_stream(&subscribed.name)) else {
                continue;
            };
            let mut per_key = Vec::new();
            let mut aggregates = Vec::new();
            for output in &job.plan.outputs {
                match output.worker {
                    WorkerKind::EventProcessor | WorkerKind::TimelineProcessor => {
                        per_key.push((output.name.clone(), output.node.clone()))
                    }
                    WorkerKind::Aggregator => aggregates.push(AggregateOutput {
                        name: output.name.clone(),
                        node: output.node.clone(),
                        functions: Some(output.functions.clone()),
                    }),
                    WorkerKind::Metric => aggregates.push(AggregateOutput {
                        name: output.name.clone(),
                        node: output.node.clone(),
                        functions: None,
                    }),
                }
            }
            let mut seen = FxHashSet::default();
            let mut keys = Vec::new();
            if !per_key.is_empty() {
                for (_, events) in batches.clone().filter(|(s, _)| *s == stream) {
                    for event in events {
                        if seen.insert(event.key.clone()) {
                            let results = match self.results.remove(&(index, event.key.clone())) {
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
            let aggregates = if touched {
                aggregates
                    .into_iter()
                    .map(|a| {
                        let (_, values) = aggregate_values(engine, &a);
                        (a, values)
                    })
                    .collect()
            } else {
                Vec::new()
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

    /// The changes since `before`, caused by log records `records`
    /// (first, last), with their ids; kept until [`Recorder::store`].
    pub fn after(&mut self, engine: &Engine, before: Before, records: [u64; 2]) -> usize {
        let mut count = 0;
        self.results.clear();
        for job in before.jobs {
            let subscribed = &mut self.jobs[job.job];
            let results = &mut self.results;
            let mut lines = Vec::new();
            let mut push = |mut view: ChangeView| {
                subscribed.last_id += 1;
                view.id = subscribed.last_id;
                view.records = Some(records.to_vec());
                serde_json::to_writer(&mut lines, &view).expect("changes serialize");
                lines.push(b'\n');
                count += 1;
            };
            for (key, old) in job.keys {
                let mut now = Vec::with_capacity(old.len());
                for ((name, node), old) in job.per_key.iter().zip(&old) {
                    let new = key_result(engine, node, &key);
                    for change in diff(old, &new) {
                        push(ChangeView::of_key(name, &key, &change));
                    }
                    now.push(new);
                }
                results.insert((job.job, key), now);
            }
            for (output, old) in &job.aggregates {
                let (at, new) = aggregate_values(engine, output);
                let old: std::collections::BTreeMap<_, _> = old.iter().map(|(g, f, v)| ((g, f), v)).collect();
                for (group, function, value) in &new {
                    let was = old.get(&(group, function)).copied().cloned().flatten();
                    if was.as_ref() == value.as_ref() {
                        continue;
                    }
                    push(ChangeView {
                        id: 0,
                        output: output.name.clone(),
                        key: None,
                        group: Some(group.label()),
                        function: function.clone(),
                        from: at.unwrap_or_default(),
                        until: None,
                        old: was.as_ref().map(ScalarValue::from),
                        new: value.as_ref().map(ScalarValue::from),
                        old_trend: None,
                        new_trend: None,
                        records: None,
                    });
                }
            }
            drop(push);
            if !lines.is_empty() {
                self.unstored.push((subscribed.name.clone(), subscribed.last_id, lines));
            }
        }
        self.unstored_count += count as u64;
        count
    }

    /// Stores the changes computed so far with the log position `covered`
    /// they reach; on success wakes the readers. Without changes, the
    /// position is written with the next log commit instead.
    pub fn store(&mut self, store: &mut Store, covered: u64) -> anyhow::Result<()> {
        if !self.active() {
            return Ok(());
        }
        if let Some(marker) = &self.crash_marker
            && std::fs::remove_file(marker).is_ok()
        {
            tracing::error!("{CRASH_ENV}: aborting before storing changes");
            std::process::abort();
        }
        if self.unstored.is_empty() {
            self.covered_due = Some(covered);
            return Ok(());
        }
        store.append_changes(&self.unstored, covered, false)?;
        let stored = std::mem::take(&mut self.unstored_count);
        self.unstored.clear();
        self.covered_due = None;
        self.feed.send_modify(|n| *n += stored);
        Ok(())
    }

    /// Makes the changes stored so far durable, with where they reach (before
    /// a snapshot, which must not cover records whose changes recovery would
    /// have to compute; after a recovery).
    pub fn flush_covered(&mut self, store: &mut Store) -> anyhow::Result<()> {
        if !self.active() {
            return Ok(());
        }
        let covered = self.covered_due.unwrap_or(store.records());
        store.append_changes(&[], covered, true)?;
        self.covered_due = None;
        Ok(())
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
            self.after(engine, before, [first, end]);
            self.store(store, end + 1)?;
        }
        self.flush_covered(store)?;
        self.forget_results();
        Ok(applied)
    }
}

/// Node `node` of `key` now (Unknown for a key without events).
fn key_result(engine: &Engine, node: &NodeId, key: &str) -> Timeline {
    engine.output(node, key).map(|o| o.timeline).unwrap_or_default()
}

/// Every group's value of each function of an aggregate or metric output at
/// its stream's latest event time, and that time.
fn aggregate_values(engine: &Engine, output: &AggregateOutput) -> (Option<timeline::Time>, GroupValuesBefore) {
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
