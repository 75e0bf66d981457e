//! The engine's aggregate nodes: per node, its aggregators (one per group and
//! shard) and which groups each key is held in, applying
//! `timeline::aggregate`'s changes after each commit.

use rustc_hash::FxHashMap;
use smol_str::SmolStr;
use timeline::aggregate::{Change, changes, merge_shards};
use timeline::{AggFn, AggregateSpec, Group, GroupAggregator, NodeId, Partial, Time};

/// A live aggregate node: its aggregators, one per group and shard, and which
/// groups each key contributes to.
#[derive(Debug)]
pub(super) struct AggregateSlot {
    /// The stream whose keys it aggregates.
    pub(super) stream: super::StreamId,
    pub(super) source: NodeId,
    pub(super) group: Option<NodeId>,
    pub(super) spec: AggregateSpec,
    pub(super) group_index: FxHashMap<Group, u32>,
    /// Per group: the group and its aggregators, one per shard.
    pub(super) groups: Vec<(Group, Vec<GroupAggregator>)>,
    /// The groups each key contributes to, to retract it when it leaves one.
    pub(super) memberships: FxHashMap<SmolStr, Groups>,
    /// Every key must be taken in (a new node, or after recovery).
    pub(super) stale: bool,
}

impl AggregateSlot {
    fn group_id(&mut self, group: Group) -> u32 {
        if let Some(&id) = self.group_index.get(&group) {
            return id;
        }
        let id = self.groups.len() as u32;
        let shards = (0..self.spec.shards).map(|_| GroupAggregator::new()).collect();
        self.groups.push((group.clone(), shards));
        self.group_index.insert(group, id);
        id
    }

    /// Applies a key's contributions now ([`key_contributions`]): the
    /// [`changes`] from the groups the key is held in.
    pub(super) fn take_in(&mut self, key: &SmolStr, now: Vec<(Group, timeline::Timeline)>, latest: Option<Time>) {
        let shard = self.spec.shard_of(key) as usize;
        let held: Vec<u32> = self
            .memberships
            .get(key)
            .map(|g| g.as_slice().to_vec())
            .unwrap_or_default();
        let before: Vec<(&Group, Option<&timeline::Timeline>)> =
            held.iter().map(|&id| (&self.groups[id as usize].0, None)).collect();
        let applied = changes(&before, now);
        let mut member_of: Vec<u32> = held;
        for Change { group, contribution } in applied {
            let id = self.group_id(group);
            match contribution {
                Some(c) => {
                    self.groups[id as usize].1[shard].replace(key, Some(c), latest);
                    if !member_of.contains(&id) {
                        member_of.push(id);
                    }
                }
                None => {
                    self.groups[id as usize].1[shard].replace(key, None, latest);
                    member_of.retain(|&g| g != id);
                }
            }
        }
        match member_of.as_slice() {
            [] => {
                self.memberships.remove(key);
            }
            [one] => {
                self.memberships.insert(key.clone(), Groups::One(*one));
            }
            _ => {
                self.memberships
                    .insert(key.clone(), Groups::Many(member_of.into_boxed_slice()));
            }
        }
    }

    /// Each group's fold at `t`, for `functions`, sorted by group.
    pub(super) fn fold(&self, t: Time, functions: &[AggFn]) -> Vec<(Group, Partial)> {
        let mut out: Vec<(Group, Partial)> = self
            .groups
            .iter()
            .filter_map(|(group, shards)| {
                let partials: Vec<Partial> = shards.iter().map(|s| s.partial(t, functions)).collect();
                merge_shards(&partials, functions).map(|merged| (group.clone(), merged))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(super) fn aggregators(&self) -> usize {
        self.groups.iter().map(|(_, shards)| shards.len()).sum()
    }

    pub(super) fn memory_bytes(&self) -> usize {
        let memberships = self.memberships.capacity() * (std::mem::size_of::<(SmolStr, Groups)>() + 1)
            + self.memberships.values().map(|g| g.heap_bytes()).sum::<usize>();
        let aggregators: usize = self
            .groups
            .iter()
            .flat_map(|(_, shards)| shards.iter().map(GroupAggregator::memory_bytes))
            .sum();
        memberships + aggregators
    }
}

/// The groups a key contributes to: almost always one, stored inline.
#[derive(Debug)]
pub(super) enum Groups {
    One(u32),
    Many(Box<[u32]>),
}

impl Groups {
    pub(super) fn as_slice(&self) -> &[u32] {
        match self {
            Groups::One(g) => std::slice::from_ref(g),
            Groups::Many(gs) => gs,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Groups::One(_) => 0,
            Groups::Many(gs) => gs.len() * 4,
        }
    }
}
