//! Retention: the keys that fell behind their stream's horizon (see
//! `timeline serve --retention`). The writer removes their events from the
//! log first, then has the engine forget them.

use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;
use timeline::{Event, Time};

use super::{Engine, KeyState, StreamId};

/// A key behind its stream's horizon, with the log records that hold its
/// events.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredKey {
    /// Its stream.
    pub stream: StreamId,
    /// The key.
    pub key: SmolStr,
    /// The log records with its events, in order.
    pub records: Vec<u64>,
}

/// The horizon of a stream whose newest event time is `latest`, for
/// retention `keep` (ms): events before it are not kept.
pub fn horizon(latest: Time, keep: Time) -> Time {
    latest.saturating_sub(keep)
}

fn behind(key: &KeyState, horizon: Time) -> bool {
    key.clock.latest.is_some_and(|l| l < horizon)
}

impl Engine {
    /// The retention horizon of `stream` for retention `keep` (ms), once it
    /// has events.
    pub fn horizon(&self, stream: StreamId, keep: Time) -> Option<Time> {
        self.streams
            .get(stream as usize)
            .and_then(|s| s.latest)
            .map(|latest| horizon(latest, keep))
    }

    /// Every stream's name and index.
    pub fn stream_ids(&self) -> FxHashMap<SmolStr, StreamId> {
        self.stream_of.clone()
    }

    /// Every key whose latest event is before its stream's horizon for
    /// retention `keep` (ms).
    pub fn expired_keys(&self, keep: Time) -> Vec<ExpiredKey> {
        let mut expired = Vec::new();
        for (stream, state) in self.streams.iter().enumerate() {
            let Some(latest) = state.latest else { continue };
            let horizon = horizon(latest, keep);
            for (key, k) in &state.keys {
                if behind(k, horizon) {
                    expired.push(ExpiredKey {
                        stream: stream as StreamId,
                        key: key.clone(),
                        records: k.records.clone(),
                    });
                }
            }
        }
        expired
    }

    /// The keys of `events` (of `stream`) that are behind the stream's
    /// horizon: an event for such a key starts it anew, so its old events
    /// must go first.
    pub fn expired_among(&self, keep: Time, stream: StreamId, events: &[Event]) -> Vec<ExpiredKey> {
        let Some(state) = self.streams.get(stream as usize) else {
            return Vec::new();
        };
        let Some(horizon) = state.latest.map(|l| horizon(l, keep)) else {
            return Vec::new();
        };
        let mut seen: FxHashSet<&SmolStr> = FxHashSet::default();
        let mut expired = Vec::new();
        for event in events {
            if let Some(k) = state.keys.get(&event.key)
                && behind(k, horizon)
                && seen.insert(&event.key)
            {
                expired.push(ExpiredKey {
                    stream,
                    key: event.key.clone(),
                    records: k.records.clone(),
                });
            }
        }
        expired
    }

    /// Forgets `keys`: their leaves' state, their ledgers of ids and their
    /// part of every aggregate (taken out at the next
    /// [`Engine::refresh_aggregates`]).
    pub fn forget<'k>(&mut self, keys: impl IntoIterator<Item = (StreamId, &'k str)>) {
        let aggregated = !self.aggregates.is_empty();
        let mut gone: FxHashSet<(StreamId, &str)> = FxHashSet::default();
        for (stream, key) in keys {
            let Some(state) = self.streams.get_mut(stream as usize) else {
                continue;
            };
            if state.keys.remove(key).is_some() && aggregated {
                state.dirty.insert(SmolStr::new(key));
            }
            gone.insert((stream, key));
        }
        if !gone.is_empty() {
            self.pending.retain(|(s, k)| !gone.contains(&(*s, k.as_str())));
            self.conflicted.retain(|(s, k)| !gone.contains(&(*s, k.as_str())));
            self.losers.retain(|(s, k, _, _)| !gone.contains(&(*s, k.as_str())));
        }
    }
}
