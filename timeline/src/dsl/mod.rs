//! The Timeline DSL: text in, a type-checked [`TimeLineOp`] out.
//!
//! ```text
//! // connection-induced rebuffering on CDN1
//! duration_where(
//!   has_existed(playerStateChange == "play")
//!   && !has_existed_within(userAction == "seek", 5s)
//!   && latest_event_to_state(playerStateChange) == "buffer"
//!   && latest_event_to_state(cdnChange) == "CDN1")
//! ```
//!
//! A query is an expression, optionally after `let name = expr;` bindings (the
//! article's style); without a final expression the last binding is the result.
//! A job with several outputs names each: `name = expr;`. An output may fold a
//! per-key timeline across keys, `expr | aggregate(group_by(col), sum, p90)`,
//! or combine aggregates with `+ - * /` (`completion_rate = completed /
//! attempts;`, `spread = d.max - d.min;`).
//! Names are matched without regard to case or underscores, so the article's
//! spellings (`TLHasExisted`, `TLEventToState`, `EqualTo`, `And`, `col("x")`)
//! work as well. Parsing is [chumsky]; errors carry line and column and render
//! with a caret through [ariadne].
//!
//! A query over a limit ([`MAX_QUERY_BYTES`], [`MAX_DEPTH`], [`MAX_NODES`])
//! is refused with the limit and where it was exceeded, before any stage
//! that recurses runs on it.
//!
//! Bare identifiers are columns. A comparison of a column with a literal is a
//! *predicate* on one event (the argument of `has_existed`); a comparison of a
//! timeline with a literal is a *timeline*. Mixing the two is a type error, as
//! is arithmetic on a per-key timeline or a comparison of an aggregate.

mod builder;
mod check;
mod error;
mod guard;
mod header;
mod lexer;
mod limits;
mod parser;
mod warnings;

pub use builder::*;
pub use error::{DslError, Note};
pub use limits::{MAX_DEPTH, MAX_NODES, MAX_QUERY_BYTES, QueryLimit};
pub use warnings::warnings;

use crate::op::TimeLineOp;
use crate::plan::JobOutput;
use crate::stream::StreamRef;

/// A parsed query: the stream it reads, its bindings and its named outputs.
#[derive(Debug, Clone)]
pub struct Query {
    /// The stream its header names (none: the default stream).
    pub stream: StreamRef,
    /// `let` bindings and outputs that are timelines, in order.
    pub bindings: Vec<(String, TimeLineOp)>,
    /// What the job computes, by name, in order: `name = expr;` statements,
    /// then the final expression as `result`.
    pub outputs: Vec<(String, JobOutput)>,
    /// Every mention of a column, in order.
    pub columns: Vec<ColumnUse>,
}

/// A column mentioned in a query.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnUse {
    /// The column.
    pub name: String,
    /// Where: the column itself, or the comparison that tests it.
    pub span: std::ops::Range<usize>,
    /// The literal it is compared with, if it is.
    pub compared_with: Option<crate::value::Value>,
}

impl Query {
    /// The timeline of a query whose one output is a timeline per key.
    pub fn timeline(&self) -> Option<&TimeLineOp> {
        match self.outputs.as_slice() {
            [(_, JobOutput::Timeline(op))] => Some(op),
            _ => None,
        }
    }
}

/// Parses and type-checks a query that computes one timeline per key.
pub fn parse(source: &str) -> Result<TimeLineOp, DslError> {
    let query = parse_query(source)?;
    query.timeline().cloned().ok_or_else(|| {
        let end = source.chars().count();
        DslError::new(
            source,
            0..end,
            "this query computes aggregates or several outputs, not one timeline per key",
        )
        .help("submit it as a job; its outputs are read by name")
    })
}

/// Parses and type-checks a query: its bindings and every output.
pub fn parse_query(source: &str) -> Result<Query, DslError> {
    guard::check_size(source)?;
    let tokens = lexer::lex(source)?;
    guard::check_brackets(source, &tokens)?;
    parser::check_closed(source, &tokens)?;
    let (stream, tokens) = header::split(source, tokens)?;
    let program = parser::parse(source, tokens)?;
    guard::check_tree(source, &program)?;
    let mut query = check::lower(source, &program)?;
    query.stream = stream;
    Ok(query)
}

/// Parses a condition over named columns, written as a predicate of the DSL
/// (`value == true`, `new != old && key == "card-1"`): the filter of a
/// changes stream. Errors say where, as for queries.
pub fn parse_condition(source: &str) -> Result<crate::predicate::Predicate, DslError> {
    guard::check_size(source)?;
    let tokens = lexer::lex(source)?;
    guard::check_brackets(source, &tokens)?;
    parser::check_closed(source, &tokens)?;
    let program = parser::parse(source, tokens)?;
    guard::check_tree(source, &program)?;
    check::lower_condition(source, &program)
}

pub use crate::id::{identifier, is_plain_identifier};

#[cfg(test)]
mod tests;
