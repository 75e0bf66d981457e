//! Durability of the local runtime: jobs and an event log in redb.
//!
//! Every accepted batch is one log record, appended in a write transaction that
//! is fsynced before the batch is acknowledged; batches that arrive together
//! share one transaction (group commit). Recovery replays the log in order into
//! the jobs' leaves, which rebuilds every worker exactly (leaf states do not
//! depend on how often or in which order events are applied).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::engine::Target;

mod faults;

pub use faults::{FAIL_MARKER, FAULTS_ENV};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// The changes of the jobs that record them, a row per job and commit:
/// (job, the last change id of the row) to the changes as JSON lines, ids
/// ascending.
const CHANGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("changes");
/// The log's commits: first record to last record of each (recovery
/// computes lost changes again commit by commit, as the writer did).
const GROUPS: TableDefinition<u64, u64> = TableDefinition::new("groups");
/// Counters: [`COVERED`], and per job name the last change id it ever gave.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The log's sequence number up to which (exclusive) the changes of every
/// job that records them are stored: recovery computes them again from
/// there.
const COVERED: &str = "changes_covered";

fn last_change_entry(job: &str) -> String {
    format!("last_change:{job}")
}
const CACHE_BYTES: usize = 4 << 20;

/// A job as stored: enough to submit it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    /// Name.
    pub name: String,
    /// DSL text.
    pub query: String,
    /// Whether the job records the changes of its result (absent in jobs
    /// stored before changes existed; always written: snapshots encode jobs
    /// with postcard, which cannot skip a field).
    #[serde(default)]
    pub changes: bool,
}

/// One accepted request body: where its events went, and the body itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogHeader {
    /// Leaf node, or none for all leaves.
    pub leaf: Option<String>,
    /// The key given in the URL, for events that may omit it.
    pub key: Option<String>,
    /// The key field the events were read with.
    pub key_field: String,
    /// The stream they belong to, when not the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<timeline::StreamSpec>,
    /// Keys that start anew with this record: retention forgot their earlier
    /// events just before it (a recovery from a snapshot that still holds
    /// them forgets them here too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart: Vec<String>,
}

/// Encodes a record: the header as one JSON line, then the raw body.
pub fn encode_record(header: &LogHeader, body: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).expect("headers serialize");
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Splits a record into its header and body.
pub fn decode_record(record: &[u8]) -> Result<(LogHeader, &[u8])> {
    let newline = record
        .iter()
        .position(|&b| b == b'\n')
        .context("log record without header")?;
    let header = serde_json::from_slice(&record[..newline]).context("bad log record header")?;
    Ok((header, &record[newline + 1..]))
}

impl LogHeader {
    /// The stream of the record's events (the default stream keyed as the
    /// record says, for records without one).
    pub fn stream(&self) -> timeline::StreamSpec {
        self.stream
            .clone()
            .unwrap_or_else(|| timeline::StreamSpec::new(timeline::stream::DEFAULT_STREAM, &self.key_field))
    }

    /// The target of the record's events.
    pub fn target(&self) -> Result<Target> {
        match &self.leaf {
            None => Ok(Target::AllLeaves),
            Some(id) => timeline::NodeId::parse(id)
                .map(Target::Leaf)
                .with_context(|| format!("log record for an invalid node id `{id}`")),
        }
    }
}

/// The open database, shared with the log readers; empty while the writer
/// reopens it.
type Slot = Arc<RwLock<Option<Database>>>;

/// The last storage error, while writes fail; shared with the health route.
#[derive(Debug, Clone, Default)]
pub struct StorageStatus(Arc<Mutex<Option<String>>>);

impl StorageStatus {
    /// The error of the last write, if it failed.
    pub fn error(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, error: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// The redb database of a data directory.
///
/// After a failed write (a full disk, an I/O error) redb refuses every later
/// one until the database is reopened: the store reopens it and retries the
/// write once, and reopens again before the next write while it keeps
/// failing, so writes work again as soon as the cause is gone.
pub struct Store {
    db: Slot,
    dir: PathBuf,
    next_seq: u64,
    /// The last write failed: reopen before the next.
    broken: bool,
    status: StorageStatus,
}

/// Reads log records while the writer appends (redb readers see the last
/// committed state).
#[derive(Clone)]
pub struct LogReader {
    db: Slot,
}

impl LogReader {
    /// The record with sequence number `seq`.
    pub fn get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        with_db(&self.db, |db| {
            let read = db.begin_read()?;
            let log = read.open_table(LOG)?;
            Ok(log.get(seq)?.map(|v| v.value().to_vec()))
        })
    }

    /// Up to `limit` changes of `job` with ids after `after`, in order: each
    /// its id and JSON.
    pub fn changes(&self, job: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        #[derive(Deserialize)]
        struct Id {
            id: u64,
        }
        with_db(&self.db, |db| {
            let read = db.begin_read()?;
            let table = read.open_table(CHANGES)?;
            let mut out = Vec::new();
            if after == u64::MAX || limit == 0 {
                return Ok(out);
            }
            // The first row whose last id is after `after` holds the next one.
            for entry in table.range((job, after + 1)..=(job, u64::MAX))? {
                let (_, lines) = entry?;
                for line in lines.value().split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let Id { id } = serde_json::from_slice(line).context("bad stored change")?;
                    if id > after {
                        out.push((id, line.to_vec()));
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    /// The id of the newest change of `job` (0: none).
    pub fn last_change(&self, job: &str) -> Result<u64> {
        with_db(&self.db, |db| last_change_id(&db.begin_read()?, job))
    }

    /// Every stored job.
    pub fn jobs(&self) -> Result<Vec<StoredJob>> {
        with_db(&self.db, |db| {
            let read = db.begin_read()?;
            let table = read.open_table(JOBS)?;
            let mut jobs = Vec::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                jobs.push(serde_json::from_slice(value.value()).context("bad stored job")?);
            }
            Ok(jobs)
        })
    }

    /// Job `name` as stored.
    pub fn job(&self, name: &str) -> Result<Option<StoredJob>> {
        with_db(&self.db, |db| {
            let read = db.begin_read()?;
            let table = read.open_table(JOBS)?;
            let Some(value) = table.get(name)? else { return Ok(None) };
            Ok(Some(serde_json::from_slice(value.value()).context("bad stored job")?))
        })
    }
}

/// Stores changes from the changes thread, into the writer's database.
#[derive(Clone)]
pub struct ChangeWriter {
    db: Slot,
}

impl ChangeWriter {
    /// Stores changes `(job, last id, JSON lines)` in one transaction with
    /// the log's sequence number up to which (exclusive) every job's changes
    /// are now stored. Not `durable`: visible at once, on disk with the next
    /// durable commit (the log's next append), so a crash may lose them;
    /// recovery then computes the same changes again from the log, commit by
    /// commit ([`Store::commit_end`]). Durable: fsynced, and the commits
    /// before `covered` are forgotten. Safe to repeat.
    pub fn append_changes(&self, changes: &[(String, u64, Vec<u8>)], covered: u64, durable: bool) -> Result<()> {
        with_db(&self.db, |db| write_changes(db, changes, covered, durable))
    }
}

fn write_changes(db: &Database, changes: &[(String, u64, Vec<u8>)], covered: u64, durable: bool) -> Result<()> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        let mut table = txn.open_table(CHANGES)?;
        for (job, id, change) in changes {
            table.insert((job.as_str(), *id), change.as_slice())?;
        }
    }
    txn.open_table(META)?.insert(COVERED, covered)?;
    if durable {
        txn.open_table(GROUPS)?.retain_in(..covered, |_, _| false)?;
    }
    txn.commit()?;
    Ok(())
}

/// The last change id `job` gave: its newest stored change, or the last one
/// of a deleted job of that name (ids are never reused).
fn last_change_id(read: &redb::ReadTransaction, job: &str) -> Result<u64> {
    let stored = read
        .open_table(CHANGES)?
        .range((job, 0)..=(job, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(k, _)| k.value().1);
    let deleted = read
        .open_table(META)?
        .get(last_change_entry(job).as_str())?
        .map_or(0, |v| v.value());
    Ok(stored.max(deleted))
}

fn with_db<T>(slot: &Slot, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
    let guard = slot.read().unwrap_or_else(|p| p.into_inner());
    match guard.as_ref() {
        Some(db) => f(db),
        None => anyhow::bail!("the database is being reopened after a storage error"),
    }
}

/// Opens (or creates) the database file of `dir`, with its tables.
fn open_db(dir: &Path) -> Result<Database> {
    let path = dir.join("timeline.redb");
    // The log is written once and read back only on recovery and backfill:
    // a small page cache is enough, and memory belongs to the workers.
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    let db = if std::env::var_os(faults::FAULTS_ENV).is_some() {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        builder.create_with_backend(faults::FaultyBackend::new(file, dir.join(faults::FAIL_MARKER))?)
    } else {
        builder.create(&path)
    }
    .with_context(|| format!("cannot open {}", path.display()))?;
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(JOBS)?;
    txn.open_table(CHANGES)?;
    txn.open_table(META)?;
    txn.open_table(GROUPS)?;
    txn.commit()?;
    Ok(db)
}

fn next_seq(db: &Database) -> Result<u64> {
    let read = db.begin_read()?;
    let log = read.open_table(LOG)?;
    Ok(log.last()?.map_or(0, |(k, _)| k.value() + 1))
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let db = open_db(dir)?;
        let next_seq = next_seq(&db)?;
        Ok(Store {
            db: Arc::new(RwLock::new(Some(db))),
            dir: dir.to_path_buf(),
            next_seq,
            broken: false,
            status: StorageStatus::default(),
        })
    }

    /// The storage status the health route reports.
    pub fn status(&self) -> StorageStatus {
        self.status.clone()
    }

    /// Closes and reopens the database (redb's way out of a failed write).
    fn reopen(&mut self) -> Result<()> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        // Close first: the file is locked while open.
        *slot = None;
        let db = open_db(&self.dir).context("cannot reopen the database")?;
        self.next_seq = next_seq(&db)?;
        *slot = Some(db);
        self.broken = false;
        tracing::info!("database reopened after a storage error");
        Ok(())
    }

    /// Runs write `op`; on failure reopens the database and tries once more
    /// (`op` must be safe to repeat after a failed commit). `committed`
    /// tells, after a reopen, whether the failed attempt landed after all.
    fn write<T>(&mut self, op: impl Fn(&Database) -> Result<T>, committed: impl Fn(&Self) -> Option<T>) -> Result<T> {
        for attempt in 0..2 {
            if self.broken {
                if let Err(e) = self.reopen() {
                    self.status.set(Some(format!("{e:#}")));
                    return Err(e);
                }
                if let Some(done) = committed(self) {
                    self.status.set(None);
                    return Ok(done);
                }
            }
            match with_db(&self.db, &op) {
                Ok(value) => {
                    self.status.set(None);
                    return Ok(value);
                }
                Err(e) => {
                    self.broken = true;
                    self.status.set(Some(format!("{e:#}")));
                    if attempt == 1 {
                        return Err(e);
                    }
                    tracing::warn!("storage error, reopening the database to retry once: {e:#}");
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// A reader of the log for other threads.
    pub fn reader(&self) -> LogReader {
        LogReader { db: self.db.clone() }
    }

    /// Every stored job.
    pub fn jobs(&self) -> Result<Vec<StoredJob>> {
        self.reader().jobs()
    }

    /// Stores a job durably; a job that records changes does from the log's
    /// end on.
    pub fn put_job(&mut self, job: &StoredJob) -> Result<()> {
        let value = serde_json::to_vec(job)?;
        let covered = self.next_seq;
        self.write(
            |db| {
                let txn = db.begin_write()?;
                txn.open_table(JOBS)?.insert(job.name.as_str(), value.as_slice())?;
                if job.changes {
                    txn.open_table(META)?.insert(COVERED, covered)?;
                }
                txn.commit()?;
                Ok(())
            },
            |_| None,
        )
    }

    /// Removes a job durably, and its changes (remembering their last id).
    pub fn delete_job(&mut self, name: &str) -> Result<()> {
        self.write(
            |db| {
                let txn = db.begin_write()?;
                txn.open_table(JOBS)?.remove(name)?;
                let last = {
                    let read = db.begin_read()?;
                    last_change_id(&read, name)?
                };
                if last > 0 {
                    txn.open_table(META)?.insert(last_change_entry(name).as_str(), last)?;
                    let mut changes = txn.open_table(CHANGES)?;
                    changes.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
                }
                txn.commit()?;
                Ok(())
            },
            |_| None,
        )
    }

    /// Appends records in one transaction and fsyncs before returning;
    /// returns the sequence number of the first. While jobs record changes
    /// (`recording`), the commit is remembered (see [`Store::commit_end`]).
    pub fn append(&mut self, records: &[&[u8]], recording: bool) -> Result<u64> {
        let first = self.next_seq;
        let count = records.len() as u64;
        self.write(
            |db| {
                let mut txn = db.begin_write()?;
                txn.set_durability(Durability::Immediate)?;
                {
                    let mut log = txn.open_table(LOG)?;
                    for (i, record) in records.iter().enumerate() {
                        log.insert(first + i as u64, *record)?;
                    }
                }
                if recording && count > 0 {
                    txn.open_table(GROUPS)?.insert(first, first + count - 1)?;
                }
                txn.commit()?;
                Ok(first)
            },
            // A commit whose final sync failed may still have landed.
            |store| (store.next_seq == first + count).then_some(first),
        )?;
        self.next_seq = first + count;
        Ok(first)
    }

    /// Replaces or removes log records in one transaction, fsynced: each
    /// `(seq, Some(record))` replaces record `seq`, each `(seq, None)` removes
    /// it. Safe to repeat.
    pub fn rewrite(&mut self, changes: &[(u64, Option<Vec<u8>>)]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(
            |db| {
                let mut txn = db.begin_write()?;
                txn.set_durability(Durability::Immediate)?;
                {
                    let mut log = txn.open_table(LOG)?;
                    for (seq, record) in changes {
                        match record {
                            Some(record) => {
                                log.insert(*seq, record.as_slice())?;
                            }
                            None => {
                                log.remove(*seq)?;
                            }
                        }
                    }
                }
                txn.commit()?;
                Ok(())
            },
            |_| None,
        )
    }

    /// A handle that stores changes from another thread.
    pub fn change_writer(&self) -> ChangeWriter {
        ChangeWriter { db: self.db.clone() }
    }

    /// The log's sequence number up to which the changes are stored (none:
    /// no job ever recorded changes).
    pub fn changes_covered(&self) -> Result<Option<u64>> {
        with_db(&self.db, |db| {
            let read = db.begin_read()?;
            Ok(read.open_table(META)?.get(COVERED)?.map(|v| v.value()))
        })
    }

    /// The id of the newest change of `job` (0: none).
    pub fn last_change(&self, job: &str) -> Result<u64> {
        self.reader().last_change(job)
    }

    /// The last record of the log commit that began with record `first`,
    /// if known (commits are known from where the changes reach on).
    pub fn commit_end(&self, first: u64) -> Result<Option<u64>> {
        with_db(&self.db, |db| {
            let read = db.begin_read()?;
            Ok(read.open_table(GROUPS)?.get(first)?.map(|v| v.value()))
        })
    }

    /// The next record's sequence number: records ever appended (retention
    /// may have removed some of them since).
    pub fn records(&self) -> u64 {
        self.next_seq
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Calls `f` with every record and its sequence number, in order.
    pub fn replay(&self, f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        self.replay_from(0, f)
    }

    /// Calls `f` with every record from sequence number `from` on, in order.
    pub fn replay_from(&self, from: u64, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        with_db(&self.db, |db| {
            let read = db.begin_read()?;
            let log = read.open_table(LOG)?;
            for entry in log.range(from..)? {
                let (seq, value) = entry?;
                f(seq.value(), value.value())?;
            }
            Ok(())
        })
    }
}
