//! Batch evaluation: every event of an input through one plan, per key.

use std::io::BufRead;

use rustc_hash::FxHashMap;
use smol_str::SmolStr;
use timeline::{CompiledPlan, EventError, EventParser, ExecutionPlan, LeafState, Output, TimeLineOp};

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
        })
    }

    /// Applies one JSON line; blank lines are skipped.
    pub fn apply_line(&mut self, text: &str) -> Result<(), EventError> {
        self.lines += 1;
        if text.trim().is_empty() {
            return Ok(());
        }
        let event = self.parser.parse(text)?;
        let states = match self.keys.get_mut(&event.key) {
            Some(states) => states,
            None => self.keys.entry(event.key.clone()).or_insert_with(|| self.plan.new_leaf_states()),
        };
        self.plan.apply(states, &event);
        self.events += 1;
        Ok(())
    }

    /// Reads JSON lines to the end; calls `bad` for each rejected line and
    /// `progress` with the bytes read every 64k lines.
    pub fn read(
        &mut self,
        mut input: impl BufRead,
        mut bad: impl FnMut(BadLine),
        mut progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        let mut bytes = 0u64;
        loop {
            buf.clear();
            let n = input.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            let result = match std::str::from_utf8(&buf) {
                Ok(text) => self.apply_line(text),
                Err(e) => {
                    self.lines += 1;
                    Err(EventError::Json(format!("not UTF-8 ({e})")))
                }
            };
            if let Err(error) = result {
                bad(BadLine { line: self.lines, error });
            }
            if self.lines % 65_536 == 0 {
                progress(bytes);
            }
        }
        progress(bytes);
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
        keys.into_iter().map(|(k, states)| (k, self.plan.evaluate_result(states))).collect()
    }

    /// Approximate bytes held by all leaf states.
    pub fn state_bytes(&self) -> usize {
        self.keys
            .iter()
            .map(|(k, s)| std::mem::size_of_val(k) + s.iter().map(LeafState::memory_bytes).sum::<usize>())
            .sum()
    }
}
