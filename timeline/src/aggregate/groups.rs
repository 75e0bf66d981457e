//! Groups, and what a key contributes to each: the update and retract half
//! of the aggregate contract.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use super::AggregateSpec;
use crate::timeline::{SpanValue, Timeline};
use crate::value::Value;

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

/// A key's contributions to an aggregate of `spec`, from its source timeline
/// and its group column's timeline (ignored without `group_by`; none with
/// `group_by` is a key with no value of the column yet).
pub fn key_contributions(spec: &AggregateSpec, source: &Timeline, group: Option<&Timeline>) -> Vec<(Group, Timeline)> {
    match (&spec.group_by, group) {
        (None, _) => contributions(source, None),
        (Some(_), Some(g)) => contributions(source, Some(g)),
        (Some(_), None) => contributions(source, Some(&Timeline::unknown())),
    }
}

/// What a key's aggregator of `group` must do: take `contribution` in place
/// of the key's old one, or, with none, drop the key.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The group.
    pub group: Group,
    /// The key's new contribution; none when it left the group.
    pub contribution: Option<Timeline>,
}

/// The changes that take a key from `before` (the groups its aggregators
/// hold it in, with the contribution they hold when the caller knows it) to
/// contributing `now`: a retraction from each group it left, then its
/// contribution to each group it is in, except those `before` shows
/// unchanged. Groups in the order of `before`, then of `now`.
pub fn changes(before: &[(&Group, Option<&Timeline>)], now: Vec<(Group, Timeline)>) -> Vec<Change> {
    let mut out: Vec<Change> = before
        .iter()
        .filter(|(g, _)| !now.iter().any(|(n, _)| n == *g))
        .map(|(g, _)| Change {
            group: (*g).clone(),
            contribution: None,
        })
        .collect();
    for (group, contribution) in now {
        let unchanged = before.iter().any(|(g, c)| **g == group && *c == Some(&contribution));
        if !unchanged {
            out.push(Change {
                group,
                contribution: Some(contribution),
            });
        }
    }
    out
}

/// What one key has sent to one aggregate's aggregators (the state of a
/// Golem `Contributor(node, key)` agent), so that only changes are sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contributor {
    /// Per group: the contribution last sent.
    sent: Vec<(Group, Timeline)>,
}

impl Contributor {
    /// A contributor that has sent nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What to send for a key whose contributions are now `now`
    /// ([`key_contributions`]): [`changes`] from what was sent. Remembers it.
    pub fn update(&mut self, now: Vec<(Group, Timeline)>) -> Vec<Change> {
        let before: Vec<(&Group, Option<&Timeline>)> = self.sent.iter().map(|(g, c)| (g, Some(c))).collect();
        let out = changes(&before, now.clone());
        self.sent = now;
        out
    }

    /// The groups the key is in now.
    pub fn groups(&self) -> Vec<Group> {
        self.sent.iter().map(|(g, _)| g.clone()).collect()
    }
}

/// The groups of an aggregate seen so far (the state of a Golem
/// `Aggregate(node)` agent), so that a read knows which aggregators to ask.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupDirectory {
    groups: Vec<Group>,
}

impl GroupDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a group; false if it was known.
    pub fn register(&mut self, group: Group) -> bool {
        match self.groups.binary_search(&group) {
            Ok(_) => false,
            Err(i) => {
                self.groups.insert(i, group);
                true
            }
        }
    }

    /// Every group, sorted; only the one labelled `only` if given.
    pub fn groups(&self, only: Option<&str>) -> Vec<Group> {
        self.groups
            .iter()
            .filter(|g| only.is_none_or(|label| g.is_named(label)))
            .cloned()
            .collect()
    }
}
