//! Tokens to an untyped syntax tree.

// chumsky 0.9's `select!` returns its (large) error type by value; not ours to box.
#![allow(clippy::result_large_err)]

use chumsky::Stream;
use chumsky::prelude::*;

use super::error::DslError;
use super::lexer::{Span, Token};
use crate::metric::ArithOp;
use crate::value::CmpOp;

/// An untyped expression with its character span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ExprKind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Duration(i64, String),
    Name(String),
    Call {
        name: String,
        name_span: Span,
        args: Vec<Expr>,
    },
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// `base.name`, e.g. `attempts.sum`.
    Member {
        base: Box<Expr>,
        name: String,
        name_span: Span,
    },
    /// `input | stage`: per-key results into `aggregate(...)`.
    Pipe {
        input: Box<Expr>,
        bar: Span,
        stage: Box<Expr>,
    },
}

impl Drop for ExprKind {
    /// Frees a deep tree (e.g. a long `!` or `&&` chain, refused later)
    /// without recursion.
    fn drop(&mut self) {
        let mut stack = Vec::new();
        take_children(self, &mut stack);
        while let Some(mut expr) = stack.pop() {
            take_children(&mut expr.kind, &mut stack);
        }
    }
}

/// Moves the sub-expressions of `kind` onto `stack`, leaving leaves behind.
fn take_children(kind: &mut ExprKind, stack: &mut Vec<Expr>) {
    let mut take = |slot: &mut Box<Expr>| {
        if !matches!(
            slot.kind,
            ExprKind::Str(_)
                | ExprKind::Int(_)
                | ExprKind::Float(_)
                | ExprKind::Bool(_)
                | ExprKind::Duration(..)
                | ExprKind::Name(_)
        ) {
            let leaf = Expr {
                kind: ExprKind::Bool(false),
                span: 0..0,
            };
            stack.push(std::mem::replace(&mut **slot, leaf));
        }
    };
    match kind {
        ExprKind::Str(_)
        | ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Duration(..)
        | ExprKind::Name(_) => {}
        ExprKind::Call { args, .. } => stack.append(args),
        ExprKind::Not(a) | ExprKind::Neg(a) | ExprKind::Member { base: a, .. } => take(a),
        ExprKind::And(a, b) | ExprKind::Or(a, b) | ExprKind::Compare(_, a, b) | ExprKind::Arith(_, a, b) => {
            take(a);
            take(b);
        }
        ExprKind::Pipe { input, stage, .. } => {
            take(input);
            take(stage);
        }
    }
}

/// A named statement: `let name = expr;` (a binding) or `name = expr;` (an
/// output of the job).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub name: String,
    pub name_span: Span,
    pub value: Expr,
    pub output: bool,
}

/// Statements, then an optional final expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Program {
    pub statements: Vec<Statement>,
    pub result: Option<Expr>,
}

/// `lhs` and `rhs` joined into one expression that spans both.
fn join(lhs: Expr, rhs: Expr, kind: impl FnOnce(Box<Expr>, Box<Expr>) -> ExprKind) -> Expr {
    let span = lhs.span.start..rhs.span.end;
    Expr {
        kind: kind(Box::new(lhs), Box::new(rhs)),
        span,
    }
}

fn expr() -> impl Parser<Token, Expr, Error = Simple<Token>> + Clone {
    recursive(|expr| {
        let literal = select! {
            Token::Str(s) => ExprKind::Str(s),
            Token::Int(i) => ExprKind::Int(i),
            Token::Float(s) => ExprKind::Float(s.parse().unwrap_or(f64::NAN)),
            Token::Duration(ms, text) => ExprKind::Duration(ms, text),
            Token::True => ExprKind::Bool(true),
            Token::False => ExprKind::Bool(false),
        }
        .labelled("a value")
        .map_with_span(|kind, span| Expr { kind, span });

        let name = select! { Token::Ident(s) => s }.labelled("a name");

        let args = expr
            .clone()
            .separated_by(just(Token::Ctrl(',')))
            .allow_trailing()
            .delimited_by(just(Token::Ctrl('(')), just(Token::Ctrl(')')));

        let call_or_name = name
            .map_with_span(|name, span| (name, span))
            .then(args.or_not())
            .map_with_span(|((name, name_span), args), span| Expr {
                kind: match args {
                    Some(args) => ExprKind::Call { name, name_span, args },
                    None => ExprKind::Name(name),
                },
                span,
            });

        let parenthesised = expr
            .clone()
            .delimited_by(just(Token::Ctrl('(')), just(Token::Ctrl(')')))
            .map_with_span(|inner: Expr, span| Expr { kind: inner.kind, span });

        let atom = choice((literal, call_or_name, parenthesised)).labelled("an expression");

        let postfix = atom
            .then(
                just(Token::Ctrl('.'))
                    .ignore_then(select! { Token::Ident(s) => s }.labelled("a function name"))
                    .map_with_span(|name, span: Span| (name, span))
                    .repeated(),
            )
            .foldl(|base, (name, name_span)| {
                let span = base.span.start..name_span.end;
                Expr {
                    kind: ExprKind::Member {
                        base: Box::new(base),
                        name,
                        name_span,
                    },
                    span,
                }
            });

        let prefix = select! { Token::Op("!") => '!', Token::Op("-") => '-' };
        let unary = prefix
            .map_with_span(|op, span: Span| (op, span))
            .repeated()
            .then(postfix)
            .foldr(|(op, op_span), operand| {
                let span = op_span.start..operand.span.end;
                let kind = match (op, operand.kind) {
                    ('-', ExprKind::Int(i)) => ExprKind::Int(-i),
                    ('-', ExprKind::Float(x)) => ExprKind::Float(-x),
                    ('-', kind) => ExprKind::Neg(Box::new(Expr {
                        kind,
                        span: operand.span,
                    })),
                    (_, kind) => ExprKind::Not(Box::new(Expr {
                        kind,
                        span: operand.span,
                    })),
                };
                Expr { kind, span }
            });

        let product = unary
            .clone()
            .then(
                select! { Token::Op("*") => ArithOp::Mul, Token::Op("/") => ArithOp::Div }
                    .then(unary)
                    .repeated(),
            )
            .foldl(|lhs, (op, rhs)| join(lhs, rhs, |a, b| ExprKind::Arith(op, a, b)));

        let sum = product
            .clone()
            .then(
                select! { Token::Op("+") => ArithOp::Add, Token::Op("-") => ArithOp::Sub }
                    .then(product)
                    .repeated(),
            )
            .foldl(|lhs, (op, rhs)| join(lhs, rhs, |a, b| ExprKind::Arith(op, a, b)));

        let cmp_op = select! {
            Token::Op("==") => CmpOp::Eq,
            Token::Op("!=") => CmpOp::Ne,
            Token::Op("<") => CmpOp::Lt,
            Token::Op("<=") => CmpOp::Le,
            Token::Op(">") => CmpOp::Gt,
            Token::Op(">=") => CmpOp::Ge,
        };
        let comparison = sum.clone().then(cmp_op.then(sum).or_not()).map(|(lhs, rhs)| match rhs {
            None => lhs,
            Some((op, rhs)) => join(lhs, rhs, |a, b| ExprKind::Compare(op, a, b)),
        });

        let conjunction = comparison
            .clone()
            .then(just(Token::Op("&&")).ignore_then(comparison).repeated())
            .foldl(|lhs, rhs| join(lhs, rhs, ExprKind::And));

        let disjunction = conjunction
            .clone()
            .then(just(Token::Op("||")).ignore_then(conjunction).repeated())
            .foldl(|lhs, rhs| join(lhs, rhs, ExprKind::Or));

        // What follows `|` should be `aggregate(...)`; any operand parses, so
        // that the checker can say what was meant (often `||`).
        disjunction
            .clone()
            .then(
                just(Token::Op("|"))
                    .map_with_span(|_, span: Span| span)
                    .then(disjunction)
                    .repeated(),
            )
            .foldl(|input, (bar, stage)| {
                let span = input.span.start..stage.span.end;
                Expr {
                    kind: ExprKind::Pipe {
                        input: Box::new(input),
                        bar,
                        stage: Box::new(stage),
                    },
                    span,
                }
            })
    })
}

fn program() -> impl Parser<Token, Program, Error = Simple<Token>> {
    let statement = just(Token::Let)
        .or_not()
        .then(
            select! { Token::Ident(s) => s }
                .labelled("a name")
                .map_with_span(|n, span| (n, span)),
        )
        .then_ignore(just(Token::Op("=")))
        .then(expr())
        .then_ignore(just(Token::Ctrl(';')).or_not())
        .map(|((binding, (name, name_span)), value)| Statement {
            name,
            name_span,
            value,
            output: binding.is_none(),
        });
    statement
        .repeated()
        .then(expr().then_ignore(just(Token::Ctrl(';')).or_not()).or_not())
        .then_ignore(end())
        .map(|(statements, result)| Program { statements, result })
}

/// Refuses a `(` that is never closed: the error points at the end of the
/// query, where the `)` is missing, and at the `(` itself.
pub(crate) fn check_closed(source: &str, tokens: &[(Token, Span)]) -> Result<(), DslError> {
    let mut open: Vec<&Span> = Vec::new();
    for (token, span) in tokens {
        match token {
            Token::Ctrl('(') => open.push(span),
            // An extra `)` is the parser's to report, where it stands.
            Token::Ctrl(')') if open.pop().is_none() => return Ok(()),
            _ => {}
        }
    }
    let Some(unclosed) = open.last() else {
        return Ok(());
    };
    // Just after the query's last character, comments and blanks left out.
    let end = tokens.last().map_or(0, |(_, span)| span.end);
    let missing = if open.len() == 1 {
        "`)`".to_string()
    } else {
        format!("{} `)`", open.len())
    };
    Err(
        DslError::new(source, end..end, "unclosed `(`: the query ends before its `)`")
            .label(format!("expected {missing} here"))
            .note((*unclosed).clone(), "this `(` is never closed")
            .help(format!("add {missing} where the parenthesised part ends")),
    )
}

/// Parses tokens into a program, or reports the first syntax error.
pub(crate) fn parse(source: &str, tokens: Vec<(Token, Span)>) -> Result<Program, DslError> {
    let end = source.chars().count();
    if tokens.is_empty() {
        return Err(DslError::new(source, end..end, "the query is empty")
            .help("write an expression, e.g. duration_where(latest_event_to_state(state) == \"buffer\")"));
    }
    let stream = Stream::from_iter(end..end + 1, tokens.into_iter());
    program().parse(stream).map_err(|errors| {
        let error = errors.into_iter().next().expect("chumsky reports at least one error");
        syntax_error(source, error)
    })
}

fn syntax_error(source: &str, error: Simple<Token>) -> DslError {
    use chumsky::error::SimpleReason;
    let span = error.span();
    if let SimpleReason::Unclosed { span: open, delimiter } = error.reason() {
        return DslError::new(source, open.clone(), format!("unclosed `{delimiter}`"))
            .label("opened here")
            .help(format!(
                "add the matching `)` (the query ends at line {})",
                source.lines().count().max(1)
            ));
    }
    let found = match error.found() {
        Some(token) => format!("unexpected {token}"),
        None => "unexpected end of the query".to_string(),
    };
    let mut expected: Vec<String> = error
        .expected()
        .filter_map(|t| t.as_ref().map(|t| t.to_string()))
        .collect();
    expected.sort();
    expected.dedup();
    let message = match (error.label(), expected.len()) {
        (Some(label), _) => format!("{found}, expected {label}"),
        (None, 0) => found,
        (None, n) if n > 6 => format!("{found}, expected an operator or the end of the query"),
        (None, _) => format!("{found}, expected {}", expected.join(" or ")),
    };
    let mut err = DslError::new(source, span, message);
    let hint = match error.found() {
        Some(Token::Op("=")) => Some("to compare, write `==`"),
        Some(Token::Op("&")) => Some("logical and is `&&`"),
        Some(Token::Op("|")) => Some("logical or is `||`"),
        Some(Token::Ident(word)) => match word.to_ascii_lowercase().as_str() {
            "and" => Some("logical and is `&&`"),
            "or" => Some("logical or is `||`"),
            "not" => Some("negation is `!`"),
            _ if expected.iter().any(|e| e == "`,`" || e == "`)`") => Some("separate arguments with `,`"),
            _ => None,
        },
        _ => None,
    };
    if let Some(hint) = hint {
        err = err.help(hint);
    }
    err
}
