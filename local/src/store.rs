//! Durability of the local runtime: jobs and an event log in redb.
//!
//! Every accepted batch is one log record, appended in a write transaction that
//! is fsynced before the batch is acknowledged; batches that arrive together
//! share one transaction (group commit). Recovery replays the log in order into
//! the jobs' leaves, which rebuilds every worker exactly (leaf states do not
//! depend on how often or in which order events are applied).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::engine::Target;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const CACHE_BYTES: usize = 4 << 20;

/// A job as stored: enough to submit it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    /// Name.
    pub name: String,
    /// DSL text.
    pub query: String,
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

/// The redb database of a data directory.
pub struct Store {
    db: Arc<Database>,
    next_seq: u64,
}

/// Reads log records while the writer appends (redb readers see the last
/// committed state).
#[derive(Clone)]
pub struct LogReader {
    db: Arc<Database>,
}

impl LogReader {
    /// The record with sequence number `seq`.
    pub fn get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let read = self.db.begin_read()?;
        let log = read.open_table(LOG)?;
        Ok(log.get(seq)?.map(|v| v.value().to_vec()))
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let path = dir.join("timeline.redb");
        // The log is written once and read back only on recovery and backfill:
        // a small page cache is enough, and memory belongs to the workers.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(JOBS)?;
        txn.commit()?;
        let next_seq = {
            let read = db.begin_read()?;
            let log = read.open_table(LOG)?;
            log.last()?.map_or(0, |(k, _)| k.value() + 1)
        };
        Ok(Store {
            db: Arc::new(db),
            next_seq,
        })
    }

    /// A reader of the log for other threads.
    pub fn reader(&self) -> LogReader {
        LogReader { db: self.db.clone() }
    }

    /// Every stored job.
    pub fn jobs(&self) -> Result<Vec<StoredJob>> {
        let read = self.db.begin_read()?;
        let table = read.open_table(JOBS)?;
        let mut jobs = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            jobs.push(serde_json::from_slice(value.value()).context("bad stored job")?);
        }
        Ok(jobs)
    }

    /// Stores a job durably.
    pub fn put_job(&mut self, job: &StoredJob) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?
            .insert(job.name.as_str(), serde_json::to_vec(job)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Removes a job durably.
    pub fn delete_job(&mut self, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?.remove(name)?;
        txn.commit()?;
        Ok(())
    }

    /// Appends records in one transaction and fsyncs before returning;
    /// returns the sequence number of the first.
    pub fn append(&mut self, records: &[&[u8]]) -> Result<u64> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut log = txn.open_table(LOG)?;
            for (i, record) in records.iter().enumerate() {
                log.insert(self.next_seq + i as u64, *record)?;
            }
        }
        txn.commit()?;
        let first = self.next_seq;
        self.next_seq += records.len() as u64;
        Ok(first)
    }

    /// Number of records in the log.
    pub fn records(&self) -> u64 {
        self.next_seq
    }

    /// Calls `f` with every record and its sequence number, in order.
    pub fn replay(&self, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let read = self.db.begin_read()?;
        let log = read.open_table(LOG)?;
        for entry in log.iter()? {
            let (seq, value) = entry?;
            f(seq.value(), value.value())?;
        }
        Ok(())
    }
}
