//! Batch evaluation: every event of an input through one plan, per key.

use std::io::BufRead;

use rustc_hash::FxHashMap;
use smol_str::SmolStr;
use timeline::{CompiledPlan, Event, EventError, EventParser, ExecutionPlan, LeafState, Output, TimeLineOp};

/// A rejected input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// Why it was rejected.
    pub error: EventError,
}

/// The state of a batch run: every key's leaf states.
pub struct Batch {
    plan: CompiledPlan,
    parser: EventParser,
    keys: FxHashMap<SmolStr, Vec<LeafState>>,
    events: u64,
    lines: u64,
    scratch: Event,
}

impl Batch {
    /// A run of `query` over events keyed by `key_field`.
    pub fn new(query: &TimeLineOp, key_field: &str) -> Result<Self, timeline::op::TypeError> {
        Ok(Batch {
            plan: CompiledPlan::new(ExecutionPlan::new(query)?),
            parser: EventParser::new(key_field),
            keys: FxHashMap::default(),
            events: 0,
            lines: 0,
            scratch: Event {
                key: SmolStr::default(),
                time: 0,
                id: None,
                columns: Vec::new(),
            },
        })
    }

    /// Applies one JSON line; blank lines are skipped.
    pub fn apply_line(&mut self, line: &[u8]) -> Result<(), EventError> {
        self.lines += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.parser.parse_into(line, &mut self.scratch)?;
        let event = &self.scratch;
        let states = match self.keys.get_mut(&event.key) {
            Some(states) => states,
            None => self
                .keys
                .entry(event.key.clone())
                .or_insert_with(|| self.plan.new_leaf_states()),
        };
        self.plan.apply(states, event);
        self.events += 1;
        Ok(())
    }

    /// Reads JSON lines to the end; calls `bad` for each rejected line and
    /// `progress` with the bytes read so far after each buffer.
    pub fn read(
        &mut self,
        mut input: impl BufRead,
        mut bad: impl FnMut(BadLine),
        mut progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        // Lines are parsed in place in the reader's buffer; only a line that
        // straddles two buffers is copied.
        let mut partial: Vec<u8> = Vec::new();
        let mut bytes = 0u64;
        loop {
            let buf = match input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            let len = buf.len();
            let mut rest = buf;
            while let Some(newline) = memchr::memchr(b'\n', rest) {
                let result = if partial.is_empty() {
                    self.apply_line(&rest[..newline])
                } else {
                    partial.extend_from_slice(&rest[..newline]);
                    let line = std::mem::take(&mut partial);
                    let result = self.apply_line(&line);
                    partial = line;
                    partial.clear();
                    result
                };
                if let Err(error) = result {
                    bad(BadLine {
                        line: self.lines,
                        error,
                    });
                }
                rest = &rest[newline + 1..];
            }
            partial.extend_from_slice(rest);
            input.consume(len);
            bytes += len as u64;
            progress(bytes);
        }
        if !partial.is_empty()
            && let Err(error) = self.apply_line(&partial)
        {
            bad(BadLine {
                line: self.lines,
                error,
            });
        }
        Ok(())
    }

    /// Events applied so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Each key's result output, sorted by key.
    pub fn results(&self) -> Vec<(&SmolStr, Output)> {
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        keys.into_iter()
            .map(|(k, states)| (k, self.plan.evaluate_result(states)))
            .collect()
    }

    /// Approximate bytes held by all leaf states.
    pub fn state_bytes(&self) -> usize {
        self.keys
            .iter()
            .map(|(k, s)| std::mem::size_of_val(k) + s.iter().map(LeafState::memory_bytes).sum::<usize>())
            .sum()
    }
}
