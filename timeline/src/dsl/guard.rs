//! Checks a query against its [limits](super::limits) before anything
//! recursive runs: the size before lexing, bracket depth on the tokens before
//! parsing (the parser recurses per bracket), and the syntax tree's depth and
//! node count, without recursion, before the checker walks it. Within these
//! limits no stage can exhaust a 2 MiB stack.

use super::error::DslError;
use super::lexer::{Span, Token};
use super::limits::{MAX_DEPTH, MAX_NODES, MAX_QUERY_BYTES, QueryLimit};
use super::parser::{Expr, ExprKind, Program};

/// Refuses a query over [`MAX_QUERY_BYTES`], before it is lexed.
pub(crate) fn check_size(source: &str) -> Result<(), DslError> {
    if source.len() <= MAX_QUERY_BYTES {
        return Ok(());
    }
    // The first character past the limit.
    let at = source.char_indices().take_while(|(i, _)| *i < MAX_QUERY_BYTES).count();
    Err(DslError::new(
        source,
        at..at + 1,
        format!(
            "query too large: {} bytes, the limit is {MAX_QUERY_BYTES} bytes",
            source.len()
        ),
    )
    .label("the limit is reached here")
    .help("split the query into several jobs")
    .limit(QueryLimit::Size))
}

/// Refuses brackets nested over [`MAX_DEPTH`], before the tokens are parsed.
pub(crate) fn check_brackets(source: &str, tokens: &[(Token, Span)]) -> Result<(), DslError> {
    let mut depth = 0usize;
    for (token, span) in tokens {
        match token {
            Token::Ctrl('(') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep(source, span.clone()));
                }
            }
            Token::Ctrl(')') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a syntax tree deeper than [`MAX_DEPTH`] or with more than
/// [`MAX_NODES`] nodes; walks it without recursion.
pub(crate) fn check_tree(source: &str, program: &Program) -> Result<(), DslError> {
    let roots = program
        .statements
        .iter()
        .map(|s| &s.value)
        .chain(program.result.as_ref());
    let mut nodes = 0usize;
    for root in roots {
        let mut stack = vec![(root, 1usize)];
        while let Some((expr, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(too_deep(source, expr.span.clone()));
            }
            nodes += 1;
            if nodes > MAX_NODES {
                return Err(too_complex(source, expr.span.clone(), "syntax nodes"));
            }
            stack.extend(children(expr).into_iter().map(|c| (c, depth + 1)));
        }
    }
    Ok(())
}

/// The error for nesting over [`MAX_DEPTH`] at `span`.
pub(crate) fn too_deep(source: &str, span: Span) -> DslError {
    DslError::new(
        source,
        span,
        format!("query too deep: it nests more than {MAX_DEPTH} levels"),
    )
    .label(format!("level {} starts here", MAX_DEPTH + 1))
    .help("name parts of the expression with `let name = ...;`")
    .limit(QueryLimit::Depth)
}

/// The error for more than [`MAX_NODES`] `what` at `span`.
pub(crate) fn too_complex(source: &str, span: Span, what: &str) -> DslError {
    DslError::new(source, span, format!("query too complex: more than {MAX_NODES} {what}"))
        .label("the limit is reached here")
        .help("split the query into several jobs")
        .limit(QueryLimit::Nodes)
}

/// The direct sub-expressions of `expr`.
pub(crate) fn children(expr: &Expr) -> Vec<&Expr> {
    match &expr.kind {
        ExprKind::Str(_)
        | ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Duration(..)
        | ExprKind::Name(_) => Vec::new(),
        ExprKind::Call { args, .. } => args.iter().collect(),
        ExprKind::Not(a) | ExprKind::Neg(a) => vec![a],
        ExprKind::Member { base, .. } => vec![base],
        ExprKind::And(a, b) | ExprKind::Or(a, b) | ExprKind::Compare(_, a, b) | ExprKind::Arith(_, a, b) => {
            vec![a, b]
        }
        ExprKind::Pipe { input, stage, .. } => vec![input, stage],
    }
}
