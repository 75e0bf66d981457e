//! The aggregators' state: one group's (one shard's) members, and the merge
//! of shards.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use super::functions::{AggFn, Partial};
use crate::timeline::{Span, SpanValue, Timeline};
use crate::value::Time;
use crate::value::Value;

/// One aggregator: the contributions of the keys of one group (one shard of
/// it), each replaced whenever its key changes.
///
/// Contributions live in one arena, in member order, so that a read scans
/// memory front to back: span starts in one array (the binary search touches
/// one cache line per member) and compact values in another (strings
/// interned). A replaced contribution that grew moves to the end; the arena
/// is compacted when half of it is dead.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "BTreeMap<SmolStr, Timeline>", into = "BTreeMap<SmolStr, Timeline>")]
pub struct Aggregator {
    /// Key to its position in `members`.
    index: FxHashMap<SmolStr, u32>,
    /// Each member's spans in the arena; a free slot has `len == 0`.
    members: Vec<Member>,
    free: Vec<u32>,
    starts: Vec<Time>,
    cells: Vec<Cell>,
    strings: Vec<SmolStr>,
    string_ids: FxHashMap<SmolStr, u32>,
    dead_spans: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Member {
    start: u32,
    len: u32,
}

/// A span value in 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Unknown,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An interned string.
    Str(u32),
    Rising(i64),
    Falling(i64),
}

impl Aggregator {
    /// An aggregator with no member.
    pub fn new() -> Self {
        Self::default()
    }

    fn range(m: Member) -> std::ops::Range<usize> {
        m.start as usize..(m.start + m.len) as usize
    }

    fn cell(&mut self, value: &SpanValue) -> Cell {
        match value {
            SpanValue::Unknown => Cell::Unknown,
            SpanValue::Rising { from } => Cell::Rising(*from),
            SpanValue::Falling { from } => Cell::Falling(*from),
            SpanValue::Known(Value::Bool(b)) => Cell::Bool(*b),
            SpanValue::Known(Value::Int(i)) => Cell::Int(*i),
            SpanValue::Known(Value::Float(x)) => Cell::Float(*x),
            SpanValue::Known(Value::Str(s)) => {
                let next = self.strings.len() as u32;
                let id = *self.string_ids.entry(s.clone()).or_insert(next);
                if id == next {
                    self.strings.push(s.clone());
                }
                Cell::Str(id)
            }
        }
    }

    fn value(&self, cell: Cell, offset: i64) -> Option<Value> {
        Some(match cell {
            Cell::Unknown => return None,
            Cell::Bool(b) => Value::Bool(b),
            Cell::Int(i) => Value::Int(i),
            Cell::Float(x) => Value::Float(x),
            Cell::Str(id) => Value::Str(self.strings[id as usize].clone()),
            Cell::Rising(from) => Value::Int(from.saturating_add(offset)),
            Cell::Falling(from) => Value::Int(from.saturating_sub(offset)),
        })
    }

    /// Sets `key`'s contribution (none: the key left the group), retracting
    /// the one it replaces. Returns whether anything changed.
    pub fn replace(&mut self, key: &str, contribution: Option<Timeline>) -> bool {
        let Some(timeline) = contribution.filter(|t| !t.is_empty()) else {
            let Some(slot) = self.index.remove(key) else {
                return false;
            };
            let member = std::mem::take(&mut self.members[slot as usize]);
            self.dead_spans += member.len as usize;
            self.free.push(slot);
            self.maybe_compact();
            return true;
        };
        let starts: Vec<Time> = timeline.spans().iter().map(|s| s.start).collect();
        let cells: Vec<Cell> = timeline.spans().iter().map(|s| self.cell(&s.value)).collect();
        match self.index.get(key) {
            Some(&slot) => {
                let member = self.members[slot as usize];
                let range = Self::range(member);
                if self.starts[range.clone()] == starts[..] && self.cells[range] == cells[..] {
                    return false;
                }
                if starts.len() <= member.len as usize {
                    let at = member.start as usize;
                    self.starts[at..at + starts.len()].copy_from_slice(&starts);
                    self.cells[at..at + cells.len()].copy_from_slice(&cells);
                    self.dead_spans += member.len as usize - starts.len();
                    self.members[slot as usize].len = starts.len() as u32;
                } else {
                    self.dead_spans += member.len as usize;
                    self.members[slot as usize] = self.append(&starts, &cells);
                }
            }
            None => {
                let member = self.append(&starts, &cells);
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.members[slot as usize] = member;
                        slot
                    }
                    None => {
                        self.members.push(member);
                        (self.members.len() - 1) as u32
                    }
                };
                self.index.insert(SmolStr::new(key), slot);
            }
        }
        self.maybe_compact();
        true
    }

    fn append(&mut self, starts: &[Time], cells: &[Cell]) -> Member {
        let member = Member {
            start: self.starts.len() as u32,
            len: starts.len() as u32,
        };
        self.starts.extend_from_slice(starts);
        self.cells.extend_from_slice(cells);
        member
    }

    /// Rewrites the arena in member order once half of it is dead.
    fn maybe_compact(&mut self) {
        if self.dead_spans < 1024 || self.dead_spans * 2 < self.starts.len() {
            return;
        }
        let live = self.starts.len() - self.dead_spans;
        let mut starts = Vec::with_capacity(live);
        let mut cells = Vec::with_capacity(live);
        for member in &mut self.members {
            let range = Self::range(*member);
            member.start = starts.len() as u32;
            starts.extend_from_slice(&self.starts[range.clone()]);
            cells.extend_from_slice(&self.cells[range]);
        }
        self.starts = starts;
        self.cells = cells;
        self.dead_spans = 0;
    }

    /// Folds every member's value at `t` into `partial`.
    pub fn fold_at(&self, t: Time, partial: &mut Partial) {
        for member in &self.members {
            let range = Self::range(*member);
            let i = self.starts[range.clone()].partition_point(|&s| s <= t);
            if i == 0 {
                continue;
            }
            let at = range.start + i - 1;
            if let Some(value) = self.value(self.cells[at], t.saturating_sub(self.starts[at])) {
                partial.add(&value);
            }
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key is a member.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The contribution of `key`, if it is a member.
    pub fn member(&self, key: &str) -> Option<Timeline> {
        let range = Self::range(self.members[*self.index.get(key)? as usize]);
        let spans = range.map(|i| Span {
            start: self.starts[i],
            value: match self.cells[i] {
                Cell::Rising(from) => SpanValue::Rising { from },
                Cell::Falling(from) => SpanValue::Falling { from },
                cell => self.value(cell, 0).map_or(SpanValue::Unknown, SpanValue::Known),
            },
        });
        Timeline::from_spans(spans).ok()
    }

    /// Approximate bytes held, the tables included.
    pub fn memory_bytes(&self) -> usize {
        let heap = |k: &SmolStr| if k.is_heap_allocated() { k.len() } else { 0 };
        self.index.capacity() * (std::mem::size_of::<(SmolStr, u32)>() + 1)
            + self.index.keys().map(heap).sum::<usize>()
            + self.members.capacity() * std::mem::size_of::<Member>()
            + self.free.capacity() * 4
            + self.starts.capacity() * std::mem::size_of::<Time>()
            + self.cells.capacity() * std::mem::size_of::<Cell>()
            + self.strings.capacity() * std::mem::size_of::<SmolStr>()
            + self.string_ids.capacity() * (std::mem::size_of::<(SmolStr, u32)>() + 1)
    }
}

impl From<BTreeMap<SmolStr, Timeline>> for Aggregator {
    fn from(members: BTreeMap<SmolStr, Timeline>) -> Self {
        let mut aggregator = Aggregator::new();
        for (key, timeline) in members {
            aggregator.replace(&key, Some(timeline));
        }
        aggregator
    }
}

impl From<Aggregator> for BTreeMap<SmolStr, Timeline> {
    fn from(aggregator: Aggregator) -> Self {
        aggregator
            .index
            .keys()
            .filter_map(|k| Some((k.clone(), aggregator.member(k)?)))
            .collect()
    }
}

/// One group's (one shard's) aggregator with the latest event time of its
/// members: what the local engine keeps per group and shard, and what a Golem
/// `Aggregator(node, group, shard)` agent keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupAggregator {
    members: Aggregator,
    /// The latest event time of any member key.
    latest: Option<Time>,
}

impl GroupAggregator {
    /// An aggregator without members.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or, with none, retracts) `key`'s contribution; `latest` is the
    /// key's latest event time. Returns whether anything changed.
    pub fn replace(&mut self, key: &str, contribution: Option<Timeline>, latest: Option<Time>) -> bool {
        self.latest = self.latest.max(latest);
        self.members.replace(key, contribution)
    }

    /// The fold of the members' values at `t`, for `functions`.
    pub fn partial(&self, t: Time, functions: &[AggFn]) -> Partial {
        let mut partial = Partial::for_functions(functions);
        self.members.fold_at(t, &mut partial);
        partial
    }

    /// The latest event time of any member key.
    pub fn latest(&self) -> Option<Time> {
        self.latest
    }

    /// Number of member keys.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// Approximate bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.members.memory_bytes()
    }
}

/// Merges the partials of a group's shards; `None` when no key of the group
/// has a value (the group is left out of reads).
pub fn merge_shards<'a>(shards: impl IntoIterator<Item = &'a Partial>, functions: &[AggFn]) -> Option<Partial> {
    let mut merged = Partial::for_functions(functions);
    for shard in shards {
        merged.merge(shard);
    }
    (merged.keys > 0).then_some(merged)
}
