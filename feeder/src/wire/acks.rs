//! Acknowledgement bookkeeping: the messages of one entry (a batch) are
//! acknowledged together once all are settled, and acknowledgements are
//! grouped, several message ids per ACK frame.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use pulsar::message::proto::MessageIdData;

/// Most message ids in one ACK frame.
pub const MAX_IDS_PER_FRAME: usize = 1000;

/// An entry received and not yet acknowledged.
#[derive(Debug)]
struct Entry {
    topic: usize,
    id: MessageIdData,
    remaining: u32,
    since: Instant,
}

/// Acknowledgements still to send for one topic (partition).
#[derive(Debug, Default)]
pub struct Due {
    /// Entries to acknowledge one by one.
    pub individual: Vec<MessageIdData>,
    /// The entry up to which to acknowledge cumulatively.
    pub cumulative: Option<MessageIdData>,
}

/// What was received and what is due, by topic index.
#[derive(Debug)]
pub struct Acks {
    cumulative: bool,
    entries: HashMap<u64, Entry>,
    next_serial: u64,
    due: BTreeMap<usize, Due>,
    due_count: usize,
    due_since: Option<Instant>,
}

fn position(id: &MessageIdData) -> (u64, u64) {
    (id.ledger_id, id.entry_id)
}

impl Acks {
    /// Bookkeeping for a subscription acknowledged cumulatively or not.
    pub fn new(cumulative: bool) -> Acks {
        Acks {
            cumulative,
            entries: HashMap::new(),
            next_serial: 0,
            due: BTreeMap::new(),
            due_count: 0,
            due_since: None,
        }
    }

    /// Records an entry of `topic` holding `messages` messages; returns its
    /// serial, which each of them settles. An entry without messages is due
    /// at once.
    pub fn received(&mut self, topic: usize, id: MessageIdData, messages: u32, now: Instant) -> u64 {
        let serial = self.next_serial;
        self.next_serial += 1;
        let entry = Entry {
            topic,
            id,
            remaining: messages,
            since: now,
        };
        if messages == 0 {
            self.make_due(entry, now);
        } else {
            self.entries.insert(serial, entry);
        }
        serial
    }

    /// One message of entry `serial` is settled; the entry is due once all are.
    pub fn settle(&mut self, serial: u64, now: Instant) {
        let Some(entry) = self.entries.get_mut(&serial) else {
            return;
        };
        entry.remaining = entry.remaining.saturating_sub(1);
        if entry.remaining == 0
            && let Some(entry) = self.entries.remove(&serial)
        {
            self.make_due(entry, now);
        }
    }

    fn make_due(&mut self, entry: Entry, now: Instant) {
        let due = self.due.entry(entry.topic).or_default();
        if self.cumulative {
            match &due.cumulative {
                Some(seen) if position(seen) >= position(&entry.id) => {}
                _ => {
                    if due.cumulative.is_none() {
                        self.due_count += 1;
                    }
                    due.cumulative = Some(entry.id);
                }
            }
        } else {
            due.individual.push(entry.id);
            self.due_count += 1;
        }
        self.due_since.get_or_insert(now);
    }

    /// Acknowledgements due (ids, or topics for cumulative ones).
    pub fn due(&self) -> usize {
        self.due_count
    }

    /// When the acknowledgements due must be sent, grouped over `group_time`
    /// and at most `group_size` at a time.
    pub fn flush_at(&self, group_time: Duration, group_size: usize) -> Option<Instant> {
        let since = self.due_since?;
        if self.due_count >= group_size.max(1) {
            Some(since)
        } else {
            Some(since + group_time)
        }
    }

    /// Takes the acknowledgements due of the topics `ready` accepts (their
    /// consumers are subscribed); the others stay due, grouped again from
    /// `now`.
    pub fn take(&mut self, ready: impl Fn(usize) -> bool, now: Instant) -> Vec<(usize, Due)> {
        let topics: Vec<usize> = self.due.keys().copied().filter(|t| ready(*t)).collect();
        let mut out = Vec::with_capacity(topics.len());
        for topic in topics {
            if let Some(due) = self.due.remove(&topic) {
                self.due_count -= due.individual.len() + usize::from(due.cumulative.is_some());
                out.push((topic, due));
            }
        }
        self.due_since = (self.due_count > 0).then_some(now);
        out
    }

    /// Entries held longer than `timeout`, by topic; their clocks start
    /// again (they are asked for again once per `timeout`).
    pub fn overdue(&mut self, timeout: Duration, now: Instant) -> BTreeMap<usize, Vec<MessageIdData>> {
        let mut out: BTreeMap<usize, Vec<MessageIdData>> = BTreeMap::new();
        for entry in self.entries.values_mut() {
            if now.saturating_duration_since(entry.since) >= timeout {
                entry.since = now;
                out.entry(entry.topic).or_default().push(entry.id.clone());
            }
        }
        for ids in out.values_mut() {
            ids.sort_by_key(position);
        }
        out
    }

    /// Entries received and not all settled.
    pub fn held(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(entry: u64) -> MessageIdData {
        MessageIdData {
            ledger_id: 1,
            entry_id: entry,
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_entry_is_due_once_every_message_is_settled() {
        let now = Instant::now();
        let mut acks = Acks::new(false);
        let batch = acks.received(0, id(1), 3, now);
        let single = acks.received(0, id(2), 1, now);
        let empty = acks.received(1, id(3), 0, now);
        assert_eq!(acks.due(), 1, "an entry without messages is due at once: {empty}");
        acks.settle(batch, now);
        acks.settle(batch, now);
        acks.settle(single, now);
        assert_eq!(acks.due(), 2);
        acks.settle(batch, now);
        acks.settle(batch, now);
        assert_eq!(acks.due(), 3, "settling twice changes nothing");
        let later = now + Duration::from_millis(1);
        let taken = acks.take(|t| t == 0, later);
        assert_eq!(taken.len(), 1);
        let entries: Vec<u64> = taken[0].1.individual.iter().map(|i| i.entry_id).collect();
        assert_eq!(entries, [2, 1], "in the order they were settled");
        assert_eq!(acks.due(), 1, "topic 1 is not ready");
        assert_eq!(
            acks.flush_at(Duration::ZERO, 10),
            Some(later),
            "tried again later, not in a loop"
        );
        assert_eq!(acks.take(|_| true, now)[0].1.individual[0].entry_id, 3);
        assert_eq!(acks.due(), 0);
        assert!(acks.flush_at(Duration::from_millis(5), 10).is_none());
    }

    #[test]
    fn cumulative_acknowledgements_keep_the_latest_entry_per_topic() {
        let now = Instant::now();
        let mut acks = Acks::new(true);
        for e in [3, 1, 7, 5] {
            let s = acks.received(0, id(e), 1, now);
            acks.settle(s, now);
        }
        let s = acks.received(2, id(4), 1, now);
        acks.settle(s, now);
        assert_eq!(acks.due(), 2);
        let taken = acks.take(|_| true, now);
        let got: Vec<(usize, u64)> = taken
            .iter()
            .map(|(t, d)| (*t, d.cumulative.as_ref().unwrap().entry_id))
            .collect();
        assert_eq!(got, [(0, 7), (2, 4)]);
    }

    #[test]
    fn grouping_waits_for_time_or_size_and_overdue_entries_are_reported_once_per_timeout() {
        let now = Instant::now();
        let mut acks = Acks::new(false);
        let a = acks.received(0, id(1), 1, now);
        acks.received(0, id(2), 1, now);
        acks.settle(a, now);
        let group = Duration::from_millis(100);
        assert_eq!(acks.flush_at(group, 2), Some(now + group));
        let b = acks.received(0, id(3), 1, now);
        acks.settle(b, now);
        assert_eq!(acks.flush_at(group, 2), Some(now), "a full group goes at once");
        let late = now + Duration::from_secs(2);
        let overdue = acks.overdue(Duration::from_secs(1), late);
        assert_eq!(overdue[&0].iter().map(|i| i.entry_id).collect::<Vec<_>>(), [2]);
        assert!(acks.overdue(Duration::from_secs(1), late).is_empty());
        assert_eq!(acks.held(), 1);
    }
}
