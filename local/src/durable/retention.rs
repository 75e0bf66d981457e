//! Retention (`timeline serve --retention D`): the log and the workers keep
//! only what is recent. A stream's horizon is its newest event time minus D.
//!
//! - An event older than the horizon when its batch is committed is refused
//!   (unless it repeats one the engine applied before: that is a repeat).
//! - A key whose latest event is behind the horizon is forgotten: its events
//!   are removed from the log, then the engine forgets its state. This
//!   happens at the latest when another event of the key is committed (the
//!   key then starts anew, as a key never seen), and otherwise by a pass
//!   every `--retention-check` seconds and at every start.
//!
//! Removing from the log before forgetting keeps the log and the workers in
//! step: a recovery from the log (or a snapshot and the log's tail) followed
//! by a pass gives the same keys with the same events.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;
use timeline::repeats::content_digest;
use timeline::{Event, Time};

use crate::engine::{Engine, ExpiredKey, StreamId};
use crate::metrics::Metrics;
use crate::store::{Store, decode_record, encode_record};

use super::{Ingest, record_events};

/// How long events are kept, and how often the writer looks for keys to
/// forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep events this many ms older than their stream's newest one
    /// (`None`: keep everything).
    pub keep: Option<Time>,
    /// Look for keys to forget this often (while events arrive, and once
    /// after the last).
    pub check_every: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            keep: None,
            check_every: Duration::from_secs(10),
        }
    }
}

/// The events of a batch the writer refused as older than the horizon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refused {
    /// Their indices among the batch's good events, and their times.
    pub events: Vec<(usize, Time)>,
    /// The horizon they were older than.
    pub horizon: Option<Time>,
}

/// Removes from each ingest the events older than their stream's horizon,
/// re-encoding the record of a batch that lost some, and notes them in the
/// ingest's `refused`. Returns how many were refused.
pub(super) fn refuse_old(engine: &Engine, keep: Time, ingests: &mut [Ingest]) -> usize {
    let mut refused = 0;
    for ingest in ingests {
        let Some(horizon) = engine.horizon(ingest.stream, keep) else {
            continue;
        };
        if ingest.events.iter().all(|e| e.time >= horizon) {
            continue;
        }
        let (stream, target) = (ingest.stream, &ingest.target);
        // A repeat of an event applied before the horizon passed it is not
        // refused: it is left out of the log as any repeat is.
        let repeat =
            |event: &Event| event.id.is_some() && engine.is_known(stream, event, target, content_digest(event));
        let mut index = 0;
        let mut old = Vec::new();
        ingest.events.retain(|event| {
            let kept = event.time >= horizon || repeat(event);
            if !kept {
                old.push((index, event.time));
            }
            index += 1;
            kept
        });
        refused += old.len();
        ingest.refused = Refused {
            events: old,
            horizon: Some(horizon),
        };
        ingest.record = if ingest.events.is_empty() {
            Vec::new()
        } else {
            super::dedup::reencode(&ingest.record, &ingest.events)
        };
    }
    refused
}

/// The keys of a group of batches that are behind the horizon: they are
/// forgotten before the group is applied (see the module documentation).
pub(super) fn expired_in(engine: &Engine, keep: Time, ingests: &[Ingest]) -> Vec<ExpiredKey> {
    let mut expired: Vec<ExpiredKey> = Vec::new();
    for ingest in ingests {
        for key in engine.expired_among(keep, ingest.stream, &ingest.events) {
            if !expired.iter().any(|e| e.stream == key.stream && e.key == key.key) {
                expired.push(key);
            }
        }
    }
    expired
}

/// Notes in the record of the first batch of the group that has events of
/// each of `expired` that the key starts anew there.
pub(super) fn mark_restarts(ingests: &mut [Ingest], expired: &[ExpiredKey]) {
    let mut unmarked: FxHashSet<(StreamId, &str)> = expired.iter().map(|k| (k.stream, k.key.as_str())).collect();
    for ingest in ingests.iter_mut() {
        if ingest.record.is_empty() {
            continue;
        }
        let mut restart = Vec::new();
        for event in &ingest.events {
            if unmarked.remove(&(ingest.stream, event.key.as_str())) {
                restart.push(event.key.to_string());
            }
        }
        if restart.is_empty() {
            continue;
        }
        let (mut header, body) = decode_record(&ingest.record).expect("the writer's own records decode");
        header.restart = restart;
        ingest.record = encode_record(&header, body);
    }
}

/// When the writer last looked for keys to forget.
pub(super) struct Expiry {
    policy: RetentionPolicy,
    last: Instant,
    /// Events applied since.
    since: u64,
}

impl Expiry {
    pub(super) fn new(policy: RetentionPolicy) -> Self {
        Expiry {
            policy,
            last: Instant::now(),
            since: 0,
        }
    }

    pub(super) fn keep(&self) -> Option<Time> {
        self.policy.keep
    }

    pub(super) fn applied(&mut self, events: u64) {
        self.since += events;
    }

    /// Events came since the last look (so a key may have fallen behind),
    /// `check_every` ago or more.
    pub(super) fn due(&self) -> bool {
        self.policy.keep.is_some() && self.since > 0 && self.last.elapsed() >= self.policy.check_every
    }

    /// Forgets the keys behind the horizon, in the log and the engine.
    pub(super) fn run(&mut self, store: &mut Store, engine: &RwLock<Engine>, metrics: &Metrics) {
        self.last = Instant::now();
        self.since = 0;
        let Some(keep) = self.policy.keep else { return };
        if let Err(e) = forget_expired(store, engine, metrics, keep) {
            tracing::error!("retention: cannot remove the events of keys behind the horizon from the log: {e:#}");
        }
    }
}

/// Forgets every key behind its stream's horizon for retention `keep`: in
/// the log, then in the engine.
pub fn forget_expired(store: &mut Store, engine: &RwLock<Engine>, metrics: &Metrics, keep: Time) -> Result<()> {
    let started = Instant::now();
    let (expired, streams) = {
        let engine = engine.read().unwrap_or_else(|p| p.into_inner());
        (engine.expired_keys(keep), engine.stream_ids())
    };
    if expired.is_empty() {
        return Ok(());
    }
    let removed = remove_from_log(store, &streams, &expired)?;
    let mut engine = engine.write().unwrap_or_else(|p| p.into_inner());
    forget(&mut engine, metrics, &expired, removed);
    tracing::info!(
        keys = expired.len(),
        records_removed = removed,
        "retention: forgot the keys behind the horizon in {:.2?}",
        started.elapsed()
    );
    Ok(())
}

/// Has the engine forget `expired`, whose events are gone from the log
/// (`removed` records removed).
pub(super) fn forget(engine: &mut Engine, metrics: &Metrics, expired: &[ExpiredKey], removed: usize) {
    engine.forget(expired.iter().map(|k| (k.stream, k.key.as_str())));
    engine.refresh_aggregates();
    metrics.keys.set(engine.key_count() as i64);
    metrics.keys_expired.inc_by(expired.len() as u64);
    metrics.log_records_removed.inc_by(removed as u64);
}

/// Removes the events of `expired` from the log in one transaction: each
/// record that held some is rewritten without them, or removed when nothing
/// is left (but the newest record, which the log's length is read from).
/// Returns the records removed.
pub(super) fn remove_from_log(
    store: &mut Store,
    streams: &FxHashMap<SmolStr, StreamId>,
    expired: &[ExpiredKey],
) -> Result<usize> {
    let mut records: Vec<u64> = expired.iter().flat_map(|k| k.records.iter().copied()).collect();
    records.sort_unstable();
    records.dedup();
    let gone: FxHashSet<(StreamId, &SmolStr)> = expired.iter().map(|k| (k.stream, &k.key)).collect();
    let newest = store.records().checked_sub(1);
    let log = store.reader();
    let mut changes = Vec::new();
    for seq in records {
        let Some(record) = log.get(seq)? else { continue };
        let (header, mut events) = record_events(&record)?;
        let Some(&stream) = streams.get(header.stream().name.as_str()) else {
            continue;
        };
        let before = events.len();
        events.retain(|e| !gone.contains(&(stream, &e.key)));
        if events.len() == before {
            continue;
        }
        let rewritten = if events.is_empty() && Some(seq) != newest {
            None
        } else {
            Some(super::dedup::reencode(&record, &events))
        };
        changes.push((seq, rewritten));
    }
    store.rewrite(&changes)?;
    Ok(changes.iter().filter(|(_, r)| r.is_none()).count())
}
