//! Query limits: size, nesting depth and number of nodes, and the error
//! code of each. [`super::guard`] checks a query against them.

use std::fmt;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Deepest nesting accepted: brackets, and levels of the expression tree
/// (each `!`, each operator of a `&&` chain, each call).
pub const MAX_DEPTH: usize = 256;
/// Most nodes accepted: of the syntax tree, and of predicates and metrics
/// once the `let` bindings they use are unfolded.
pub const MAX_NODES: usize = 10_000;

/// Which limit a query exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLimit {
    /// Over [`MAX_QUERY_BYTES`].
    Size,
    /// Over [`MAX_DEPTH`].
    Depth,
    /// Over [`MAX_NODES`].
    Nodes,
}

impl QueryLimit {
    /// A short code for APIs: `query_too_large`, `query_too_deep`, `query_too_complex`.
    pub fn code(self) -> &'static str {
        match self {
            QueryLimit::Size => "query_too_large",
            QueryLimit::Depth => "query_too_deep",
            QueryLimit::Nodes => "query_too_complex",
        }
    }

    /// The limit's value.
    pub fn value(self) -> usize {
        match self {
            QueryLimit::Size => MAX_QUERY_BYTES,
            QueryLimit::Depth => MAX_DEPTH,
            QueryLimit::Nodes => MAX_NODES,
        }
    }
}

impl fmt::Display for QueryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
