//! Aggregates across keys: groups, aggregate functions, and the aggregator's state.
//!
//! An aggregate node reads one per-key timeline, its *source*, and optionally a
//! group column. At an instant `t` the group of a key is its
//! `latest_event_to_state(column)` at `t`: a key that changes CDN moves to the
//! new group from that instant on. Keys whose column has no value yet are in
//! the group `null`, as is every key of an aggregate without `group_by`. An
//! [`AggFn`] folds the source's values at `t` of the keys of one group whose
//! value at `t` is known.
//!
//! # Key decisions
//!
//! - **A key contributes a timeline, not a number.** Its contribution to a
//!   group is its source timeline masked to the instants when it is in that
//!   group ([`contributions`]). An [`Aggregator`] keeps its members'
//!   contributions, so it answers at *any* `t`, durations still rising
//!   included, exactly as a group-by over the per-key results at `t` would.
//! - **Retraction is replacement.** When a late event changes a key's past,
//!   the key sends its new contribution and the aggregator replaces the old
//!   one: the aggregate is exact whatever the order of events.
//! - **Functions are chosen when reading.** The aggregator holds the members,
//!   not a running sum, so one aggregator answers every function and a job
//!   that asks for `p90` of a running aggregate reuses it.
//! - **Partials merge.** Reading folds members into a [`Partial`]; partials of
//!   the shards of a hot group, or of several agents, merge before the
//!   functions are finished.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::Time;
use crate::op::{NodeId, TimeLineOp};
use crate::timeline::{Span, SpanValue, Timeline};
use crate::value::Value;

/// An aggregate function: what a group's values at an instant fold into.
///
/// Numeric functions read integers and floats, and booleans as 1 and 0; they
/// skip strings. Over no numbers they are Unknown; `count` and `count_true`
/// are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum AggFn {
    /// Keys with a known value.
    Count,
    /// Keys whose value is `true`.
    CountTrue,
    /// Sum of the numbers (an integer while every number is one).
    Sum,
    /// Mean of the numbers.
    Avg,
    /// Least number.
    Min,
    /// Greatest number.
    Max,
    /// The `p`-th percentile (1..=99), by nearest rank: the least number `v`
    /// such that at least `p`% of the numbers are `<= v`.
    Percentile(u8),
}

impl AggFn {
    /// Every function with a fixed name, for suggestions.
    pub const NAMED: [&'static str; 9] = ["count", "count_true", "sum", "avg", "min", "max", "p50", "p90", "p99"];

    /// Reads a function name: `count`, `count_true`, `sum`, `avg` (or `mean`),
    /// `min`, `max`, `median`, `p1` ... `p99`.
    pub fn parse(name: &str) -> Option<AggFn> {
        Some(match name {
            "count" => AggFn::Count,
            "count_true" => AggFn::CountTrue,
            "sum" => AggFn::Sum,
            "avg" | "mean" => AggFn::Avg,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "median" => AggFn::Percentile(50),
            _ => {
                let digits = name.strip_prefix('p')?;
                if digits.starts_with('0') {
                    return None;
                }
                match digits.parse::<u8>() {
                    Ok(p @ 1..=99) => AggFn::Percentile(p),
                    _ => return None,
                }
            }
        })
    }

    /// Whether the function needs every number, not only running totals.
    pub fn needs_values(self) -> bool {
        matches!(self, AggFn::Percentile(_))
    }
}

impl fmt::Display for AggFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggFn::Count => f.write_str("count"),
            AggFn::CountTrue => f.write_str("count_true"),
            AggFn::Sum => f.write_str("sum"),
            AggFn::Avg => f.write_str("avg"),
            AggFn::Min => f.write_str("min"),
            AggFn::Max => f.write_str("max"),
            AggFn::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

impl FromStr for AggFn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AggFn::parse(s).ok_or_else(|| format!("unknown aggregate function `{s}`"))
    }
}

impl From<AggFn> for String {
    fn from(f: AggFn) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for AggFn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// What an aggregate node groups by and how its groups are spread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateSpec {
    /// The group column; none puts every key in one group.
    pub group_by: Option<SmolStr>,
    /// Aggregators per group (a hot group's keys are spread over them by a
    /// hash of the key). Not part of the node's identity.
    pub shards: u32,
}

impl AggregateSpec {
    /// The shard of a group that `key` belongs to: FNV-1a of the key, so that
    /// every runtime and every release agree.
    pub fn shard_of(&self, key: &str) -> u32 {
        if self.shards <= 1 {
            return 0;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(self.shards)) as u32
    }
}

/// An aggregate node: a per-key source, an optional group column, and the
/// identity derived from them (the shard count is not part of it).
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateNode {
    source: Box<TimeLineOp>,
    group: Option<Box<TimeLineOp>>,
    spec: AggregateSpec,
    canonical: String,
    id: NodeId,
}

impl AggregateNode {
    /// Aggregates `source` by `group_by` (none: one group) over `shards`
    /// aggregators per group (at least 1).
    pub fn new(source: TimeLineOp, group_by: Option<&str>, shards: u32) -> Self {
        let group = group_by.map(|c| Box::new(TimeLineOp::latest_event_to_state(c)));
        let canonical = match group_by {
            Some(column) => format!("aggregate({source}, group_by({}))", crate::dsl::identifier(column)),
            None => format!("aggregate({source})"),
        };
        let id = NodeId::derive("aggregate", &canonical);
        AggregateNode {
            source: Box::new(source),
            group,
            spec: AggregateSpec {
                group_by: group_by.map(SmolStr::new),
                shards: shards.max(1),
            },
            canonical,
            id,
        }
    }

    /// The per-key timeline aggregated.
    pub fn source(&self) -> &TimeLineOp {
        &self.source
    }

    /// The group column's leaf, `latest_event_to_state(column)`.
    pub fn group(&self) -> Option<&TimeLineOp> {
        self.group.as_deref()
    }

    /// Grouping and sharding.
    pub fn spec(&self) -> &AggregateSpec {
        &self.spec
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The canonical form, from which the id derives (shards left out).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The node read with `functions`, in DSL: `source | aggregate(...)`;
    /// `with_shards` writes its shard count too.
    pub fn dsl(&self, functions: &[AggFn], with_shards: bool) -> String {
        let mut args = Vec::new();
        if let Some(column) = &self.spec.group_by {
            args.push(format!("group_by({})", crate::dsl::identifier(column)));
        }
        args.extend(functions.iter().map(AggFn::to_string));
        if with_shards && self.spec.shards > 1 {
            args.push(format!("shards({})", self.spec.shards));
        }
        format!("{} | aggregate({})", self.source, args.join(", "))
    }
}

impl fmt::Display for AggregateNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// A group: the value of the group column, or `null` (no column, or no value yet).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Group(pub Option<Value>);

impl Group {
    /// The group of keys without a value of the column.
    pub const NULL: Group = Group(None);

    /// The group as text: a string as is, other values as JSON, `null`.
    /// This is how a group is named in a URL.
    pub fn label(&self) -> String {
        match &self.0 {
            None => "null".to_string(),
            Some(Value::Str(s)) => s.to_string(),
            Some(other) => serde_json::to_string(other).unwrap_or_default(),
        }
    }

    /// Whether `label` names this group (see [`Group::label`]).
    pub fn is_named(&self, label: &str) -> bool {
        self.label() == label
    }
}

impl Eq for Group {}

impl Hash for Group {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            None => 0u8.hash(state),
            Some(Value::Bool(b)) => (1u8, b).hash(state),
            Some(Value::Int(i)) => (2u8, i).hash(state),
            // Equal floats hash equally: +0.0 and -0.0 are one group.
            Some(Value::Float(x)) => (3u8, if *x == 0.0 { 0 } else { x.to_bits() }).hash(state),
            Some(Value::Str(s)) => (4u8, s).hash(state),
        }
    }
}

impl PartialOrd for Group {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Group {
    /// `null` first, then booleans, numbers, strings; by value within a type.
    fn cmp(&self, other: &Self) -> Ordering {
        fn rank(g: &Group) -> u8 {
            match &g.0 {
                None => 0,
                Some(Value::Bool(_)) => 1,
                Some(Value::Int(_) | Value::Float(_)) => 2,
                Some(Value::Str(_)) => 3,
            }
        }
        rank(self).cmp(&rank(other)).then_with(|| match (&self.0, &other.0) {
            (Some(a), Some(b)) => a.partial_order(b).unwrap_or(Ordering::Equal),
            _ => Ordering::Equal,
        })
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Cuts one key's source timeline by group: for each group the key is in at
/// some instant, the source where the key is in that group and Unknown
/// elsewhere. `group` is the key's group-column timeline (none: one group).
/// Groups in which the source is never known are left out.
pub fn contributions(source: &Timeline, group: Option<&Timeline>) -> Vec<(Group, Timeline)> {
    let known = |t: &Timeline| t.spans().iter().any(|s| s.value != SpanValue::Unknown);
    let Some(group) = group else {
        return if known(source) {
            vec![(Group::NULL, source.clone())]
        } else {
            Vec::new()
        };
    };
    let mut groups: Vec<Group> = Vec::new();
    if group.origin().is_none_or(|g| source.origin().is_some_and(|s| s < g)) {
        groups.push(Group::NULL);
    }
    for span in group.spans() {
        let g = match &span.value {
            SpanValue::Known(v) => Group(Some(v.clone())),
            _ => Group::NULL,
        };
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
        .into_iter()
        .filter_map(|g| {
            let part = source.zip_with(group, |s, gv| {
                let in_group = match (gv, &g.0) {
                    (SpanValue::Known(v), Some(want)) => v == want,
                    (SpanValue::Known(_), None) => false,
                    (_, None) => true,
                    (_, Some(_)) => false,
                };
                if in_group { s.clone() } else { SpanValue::Unknown }
            });
            known(&part).then_some((g, part))
        })
        .collect()
}

/// A number as the numeric functions see it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    /// The number a value counts as: booleans are 1 and 0, strings none.
    pub fn of(value: &Value) -> Option<Number> {
        match value {
            Value::Int(i) => Some(Number::Int(*i)),
            Value::Float(x) => Some(Number::Float(*x)),
            Value::Bool(b) => Some(Number::Int(i64::from(*b))),
            Value::Str(_) => None,
        }
    }

    fn as_value(self) -> Value {
        match self {
            Number::Int(i) => Value::Int(i),
            Number::Float(x) => Value::Float(x),
        }
    }

    fn total_cmp(&self, other: &Number) -> Ordering {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => return a.cmp(b),
            (Number::Float(a), Number::Float(b)) => return a.total_cmp(b),
            _ => {}
        }
        self.as_value()
            .partial_order(&other.as_value())
            .unwrap_or_else(|| self.as_f64().total_cmp(&other.as_f64()))
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(x) => x,
        }
    }
}

/// The fold of some values of one group at one instant: enough to finish
/// every [`AggFn`]; partials of the shards of a group merge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Keys with a known value.
    pub keys: u64,
    /// Keys whose value is `true`.
    pub trues: u64,
    /// Values that are numbers.
    pub numbers: u64,
    int_sum: i128,
    float_sum: f64,
    /// Neumaier compensation of `float_sum`.
    float_error: f64,
    floats: bool,
    min: Option<Number>,
    max: Option<Number>,
    /// Every number, kept only when a percentile is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<Vec<Number>>,
}

impl Partial {
    /// An empty fold; `keep_values` keeps every number (for percentiles).
    pub fn new(keep_values: bool) -> Partial {
        Partial {
            values: keep_values.then(Vec::new),
            ..Partial::default()
        }
    }

    /// An empty fold that keeps what `functions` need.
    pub fn for_functions(functions: &[AggFn]) -> Partial {
        Partial::new(functions.iter().any(|f| f.needs_values()))
    }

    /// Adds one key's value.
    pub fn add(&mut self, value: &Value) {
        self.keys += 1;
        if *value == Value::Bool(true) {
            self.trues += 1;
        }
        if let Some(n) = Number::of(value) {
            self.add_number(n);
        }
    }

    fn add_number(&mut self, n: Number) {
        self.numbers += 1;
        match n {
            Number::Int(i) => self.int_sum += i128::from(i),
            Number::Float(x) => {
                self.floats = true;
                self.add_float(x);
            }
        }
        if self.min.is_none_or(|m| n.total_cmp(&m) == Ordering::Less) {
            self.min = Some(n);
        }
        if self.max.is_none_or(|m| n.total_cmp(&m) == Ordering::Greater) {
            self.max = Some(n);
        }
        if let Some(values) = &mut self.values {
            values.push(n);
        }
    }

    fn add_float(&mut self, x: f64) {
        let sum = self.float_sum + x;
        self.float_error += if self.float_sum.abs() >= x.abs() {
            (self.float_sum - sum) + x
        } else {
            (x - sum) + self.float_sum
        };
        self.float_sum = sum;
    }

    /// Adds another fold of the same group and instant (another shard's).
    pub fn merge(&mut self, other: &Partial) {
        self.keys += other.keys;
        self.trues += other.trues;
        self.numbers += other.numbers;
        self.int_sum += other.int_sum;
        self.add_float(other.float_sum);
        self.float_error += other.float_error;
        self.floats |= other.floats;
        for n in [other.min, other.max].into_iter().flatten() {
            if self.min.is_none_or(|m| n.total_cmp(&m) == Ordering::Less) {
                self.min = Some(n);
            }
            if self.max.is_none_or(|m| n.total_cmp(&m) == Ordering::Greater) {
                self.max = Some(n);
            }
        }
        match (&mut self.values, &other.values) {
            (Some(mine), Some(theirs)) => mine.extend_from_slice(theirs),
            // The other fold dropped its numbers: no percentile can be told.
            (mine @ Some(_), None) if other.numbers > 0 => *mine = None,
            _ => {}
        }
    }

    /// The value of `function` over the fold; `None` is Unknown (a numeric
    /// function over no numbers, or a percentile of a fold that did not keep
    /// its values).
    pub fn finish(&self, function: AggFn) -> Option<Value> {
        match function {
            AggFn::Count => Some(Value::Int(self.keys as i64)),
            AggFn::CountTrue => Some(Value::Int(self.trues as i64)),
            _ if self.numbers == 0 => None,
            AggFn::Sum => Some(self.sum()),
            AggFn::Avg => {
                let total = self.int_sum as f64 + self.float_sum + self.float_error;
                Some(Value::Float(total / self.numbers as f64))
            }
            AggFn::Min => self.min.map(Number::as_value),
            AggFn::Max => self.max.map(Number::as_value),
            AggFn::Percentile(p) => {
                let values = self.values.as_ref()?;
                let rank = (usize::from(p) * values.len()).div_ceil(100).max(1);
                let mut sorted = values.clone();
                let (_, nth, _) = sorted.select_nth_unstable_by(rank - 1, Number::total_cmp);
                Some(nth.as_value())
            }
        }
    }

    fn sum(&self) -> Value {
        if self.floats {
            Value::Float(self.int_sum as f64 + self.float_sum + self.float_error)
        } else {
            match i64::try_from(self.int_sum) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Float(self.int_sum as f64),
            }
        }
    }
}

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
            if let Some(value) = self.value(self.cells[at], t - self.starts[at]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tl(spans: &[(i64, SpanValue)]) -> Timeline {
        Timeline::from_spans(spans.iter().map(|(start, value)| Span {
            start: *start,
            value: value.clone(),
        }))
        .unwrap()
    }

    fn known(v: impl Into<Value>) -> SpanValue {
        SpanValue::Known(v.into())
    }

    #[test]
    fn function_names_round_trip() {
        for name in AggFn::NAMED {
            assert_eq!(AggFn::parse(name).unwrap().to_string(), name);
        }
        assert_eq!(AggFn::parse("median"), Some(AggFn::Percentile(50)));
        assert_eq!(AggFn::parse("p95"), Some(AggFn::Percentile(95)));
        for bad in ["p0", "p100", "p05", "p", "total"] {
            assert_eq!(AggFn::parse(bad), None, "{bad}");
        }
        let json = serde_json::to_string(&[AggFn::CountTrue, AggFn::Percentile(90)]).unwrap();
        assert_eq!(json, r#"["count_true","p90"]"#);
        let back: Vec<AggFn> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, [AggFn::CountTrue, AggFn::Percentile(90)]);
    }

    #[test]
    fn a_key_contributes_to_each_group_while_it_is_in_it() {
        // A duration rising from 0 at 10; the CDN is A from 0, B from 20.
        let source = tl(&[(0, known(0)), (10, SpanValue::Rising { from: 0 })]);
        let group = tl(&[(0, known("A")), (20, known("B"))]);
        let parts = contributions(&source, Some(&group));
        assert_eq!(parts.len(), 2);
        let (a, b) = (&parts[0], &parts[1]);
        assert_eq!(a.0, Group(Some(Value::str("A"))));
        assert_eq!(a.1.to_string(), "[0,10):0 [10,20):rising from 0 [20,∞):unknown");
        assert_eq!(b.1.to_string(), "[0,20):unknown [20,∞):rising from 10");
        assert_eq!(b.1.value_at(25), Some(Value::Int(15)));
    }

    #[test]
    fn keys_without_a_group_value_are_in_the_null_group() {
        let source = tl(&[(0, known(true))]);
        let group = tl(&[(0, SpanValue::Unknown), (5, known("A"))]);
        let parts = contributions(&source, Some(&group));
        assert_eq!(parts[0].0, Group::NULL);
        assert_eq!(parts[0].1.value_at(4), Some(Value::Bool(true)));
        assert_eq!(parts[0].1.value_at(5), None);
        // A group column that starts later than the source.
        let parts = contributions(&source, Some(&tl(&[(5, known("A"))])));
        assert_eq!(parts.iter().map(|p| p.0.label()).collect::<Vec<_>>(), ["null", "A"]);
        assert!(contributions(&Timeline::unknown(), None).is_empty());
        assert_eq!(contributions(&source, None)[0].0, Group::NULL);
    }

    #[test]
    fn partials_finish_every_function_and_merge() {
        let mut a = Partial::new(true);
        for v in [Value::Int(4), Value::Int(1), Value::Bool(true), Value::str("x")] {
            a.add(&v);
        }
        let mut b = Partial::new(true);
        b.add(&Value::Float(2.5));
        a.merge(&b);
        assert_eq!(a.finish(AggFn::Count), Some(Value::Int(5)));
        assert_eq!(a.finish(AggFn::CountTrue), Some(Value::Int(1)));
        assert_eq!(a.finish(AggFn::Sum), Some(Value::Float(8.5)));
        assert_eq!(a.finish(AggFn::Avg), Some(Value::Float(8.5 / 4.0)));
        assert_eq!(a.finish(AggFn::Min), Some(Value::Int(1)));
        assert_eq!(a.finish(AggFn::Max), Some(Value::Int(4)));
        // 1, 1(true), 2.5, 4: nearest rank.
        assert_eq!(a.finish(AggFn::Percentile(50)), Some(Value::Int(1)));
        assert_eq!(a.finish(AggFn::Percentile(51)), Some(Value::Float(2.5)));
        assert_eq!(a.finish(AggFn::Percentile(99)), Some(Value::Int(4)));
        let empty = Partial::default();
        assert_eq!(empty.finish(AggFn::Count), Some(Value::Int(0)));
        assert_eq!(empty.finish(AggFn::Sum), None);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Partial>(&json).unwrap(), a);
    }

    #[test]
    fn integer_sums_stay_exact_and_float_sums_compensate() {
        let mut p = Partial::new(false);
        p.add(&Value::Int(i64::MAX));
        p.add(&Value::Int(i64::MAX));
        p.add(&Value::Int(-i64::MAX));
        assert_eq!(p.finish(AggFn::Sum), Some(Value::Int(i64::MAX)));
        let mut f = Partial::new(false);
        for x in [1e16, 1.0, -1e16] {
            f.add(&Value::Float(x));
        }
        assert_eq!(f.finish(AggFn::Sum), Some(Value::Float(1.0)));
    }

    #[test]
    fn replacing_a_contribution_retracts_the_old_one() {
        let mut agg = Aggregator::new();
        assert!(agg.replace("k", Some(tl(&[(0, known(5))]))));
        assert!(!agg.replace("k", Some(tl(&[(0, known(5))]))));
        agg.replace("j", Some(tl(&[(0, known(1))])));
        let at = |agg: &Aggregator, t| {
            let mut p = Partial::new(false);
            agg.fold_at(t, &mut p);
            p.finish(AggFn::Sum)
        };
        assert_eq!(at(&agg, 3), Some(Value::Int(6)));
        agg.replace("k", Some(tl(&[(0, known(2))])));
        assert_eq!(at(&agg, 3), Some(Value::Int(3)));
        assert!(agg.replace("k", None));
        assert_eq!(agg.len(), 1);
        assert_eq!(at(&agg, -1), None);
    }

    #[test]
    fn the_arena_survives_churn_and_snapshots() {
        // Members grow, shrink, leave and come back; compaction runs many
        // times. A plain map of the same contributions is the model.
        let mut agg = Aggregator::new();
        let mut model: BTreeMap<String, Timeline> = BTreeMap::new();
        let mut seed: u64 = 42;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..20_000 {
            let key = format!("k{}", next(300));
            if next(5) == 0 {
                assert_eq!(agg.replace(&key, None), model.remove(&key).is_some());
                continue;
            }
            let spans: Vec<(i64, SpanValue)> = (0..1 + next(6))
                .map(|i| {
                    let value = match next(3) {
                        0 => known(next(10) as i64),
                        1 => SpanValue::Rising { from: next(10) as i64 },
                        _ => SpanValue::Unknown,
                    };
                    (i as i64 * 10 + next(5) as i64, value)
                })
                .collect();
            let timeline = tl(&spans);
            let changed = model.get(&key) != Some(&timeline);
            assert_eq!(agg.replace(&key, Some(timeline.clone())), changed, "round {round}");
            model.insert(key, timeline);
            if round % 997 == 0 {
                for t in [-1, 0, 7, 25, 60] {
                    let mut got = Partial::new(true);
                    agg.fold_at(t, &mut got);
                    let mut want = Partial::new(true);
                    for timeline in model.values() {
                        if let Some(v) = timeline.value_at(t) {
                            want.add(&v);
                        }
                    }
                    for f in [AggFn::Count, AggFn::Sum, AggFn::Min, AggFn::Max, AggFn::Percentile(50)] {
                        assert_eq!(got.finish(f), want.finish(f), "round {round} t {t} {f}");
                    }
                }
            }
        }
        assert_eq!(agg.len(), model.len());
        for (key, timeline) in &model {
            assert_eq!(agg.member(key).as_ref(), Some(timeline));
        }
        let json = serde_json::to_string(&agg).unwrap();
        let back: Aggregator = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), model.len());
        for (key, timeline) in &model {
            assert_eq!(back.member(key).as_ref(), Some(timeline));
        }
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let spec = AggregateSpec {
            group_by: None,
            shards: 4,
        };
        assert_eq!(spec.shard_of("session-1"), spec.shard_of("session-1"));
        let mut seen = [0; 4];
        for i in 0..400 {
            seen[spec.shard_of(&format!("k{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        // FNV-1a of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(spec.shard_of("a"), (0xaf63_dc4c_8601_ec8c_u64 % 4) as u32);
    }

    #[test]
    fn groups_order_and_label() {
        let mut groups = [
            Group(Some(Value::str("b"))),
            Group(Some(Value::Int(2))),
            Group::NULL,
            Group(Some(Value::str("a"))),
        ];
        groups.sort();
        let labels: Vec<String> = groups.iter().map(Group::label).collect();
        assert_eq!(labels, ["null", "2", "a", "b"]);
        assert!(Group(Some(Value::str("CDN1"))).is_named("CDN1"));
    }
}
