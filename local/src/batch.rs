//! Batch evaluation: every event of an input through one plan, per key.

use std::io::BufRead;

use smol_str::SmolStr;
use timeline::plan::PlanOutput;
use timeline::{Event, EventError, EventParser, NodeId, Output, Time, WorkerKind};
use timeline_core::SubmitError;

use crate::engine::{Engine, GroupValues, ReadError};

/// A rejected input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// Why it was rejected.
    pub error: EventError,
}

/// A batch run: the local runtime's engine with one job, fed from a file.
pub struct Batch {
    engine: Engine,
    outputs: Vec<PlanOutput>,
    result: NodeId,
    parser: EventParser,
    lines: u64,
    scratch: Event,
}

impl Batch {
    /// A run of the DSL `query` over events keyed by `key_field`.
    pub fn new(query: &str, key_field: &str) -> Result<Self, SubmitError> {
        let mut engine = Engine::new();
        let (submitted, _) = engine.submit(Some("eval"), query)?;
        let plan = &submitted.job().plan;
        let outputs = plan.outputs.clone();
        let result = plan.result.clone();
        Ok(Batch {
            engine,
            outputs,
            result,
            parser: EventParser::new(key_field),
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
        self.engine.apply_one(&self.scratch);
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
        self.engine.event_count()
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.engine.key_count()
    }

    /// Each key's result output, sorted by key.
    pub fn results(&self) -> Vec<(SmolStr, Output)> {
        self.results_of(&self.result)
    }

    /// Each key's output of per-key node `node`, sorted by key.
    pub fn results_of(&self, node: &NodeId) -> Vec<(SmolStr, Output)> {
        self.engine
            .keys(None, usize::MAX)
            .into_iter()
            .map(|k| {
                let out = self.engine.output(node, &k).expect("listed keys have outputs");
                (k, out)
            })
            .collect()
    }

    /// The job's named outputs.
    pub fn outputs(&self) -> &[PlanOutput] {
        &self.outputs
    }

    /// Whether every output is a timeline per key (the classic query).
    pub fn per_key_only(&self) -> bool {
        self.outputs.iter().all(|o| o.worker == WorkerKind::TimelineProcessor)
    }

    /// An aggregate or metric output at `t` (default: the latest event time).
    /// The aggregators take in every key first.
    pub fn read_output(&mut self, output: &PlanOutput, t: Option<Time>) -> Result<GroupValues, ReadError> {
        self.engine.refresh_aggregates();
        match output.worker {
            WorkerKind::Metric => self.engine.metric(&output.node, t, None),
            _ => self.engine.aggregate(&output.node, t, &output.functions, None),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Approximate bytes held by all worker state.
    pub fn state_bytes(&self) -> usize {
        self.engine.state_bytes()
    }
}
