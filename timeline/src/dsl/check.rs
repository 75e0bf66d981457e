//! Name resolution and type checking: the syntax tree to a [`TimeLineOp`].

use std::collections::HashMap;

use smol_str::SmolStr;

use super::Query;
use super::error::DslError;
use super::lexer::Span;
use super::parser::{Expr, ExprKind, Program};
use crate::op::{TimeLineOp, TimelineType};
use crate::predicate::Predicate;
use crate::value::{CmpOp, Value};

/// What an expression turned out to be.
#[derive(Debug, Clone)]
enum Typed {
    Timeline(TimeLineOp),
    Predicate(Predicate),
    Column(SmolStr),
    Literal(Value),
    /// A duration literal, in ms (also usable as an integer literal).
    Duration(i64),
}

impl Typed {
    fn describe(&self) -> String {
        match self {
            Typed::Timeline(op) => op.output_type().describe().to_string(),
            Typed::Predicate(_) => "a predicate on events".to_string(),
            Typed::Column(c) => format!("the column `{c}`"),
            Typed::Literal(v) => format!("the {} literal {v}", v.type_name()),
            Typed::Duration(ms) => format!("the duration {ms}ms"),
        }
    }
}

/// The functions of the DSL, by canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    LatestEventToState,
    HasExisted,
    HasExistedWithin,
    DurationWhere,
    DurationInCurState,
    Col,
    Compare(CmpOp),
    And,
    Or,
    Not,
}

/// Every accepted spelling, normalised (lowercase, no underscores), with the
/// canonical name shown in messages.
const FUNCTIONS: &[(&str, &str, Function)] = &[
    (
        "latesteventtostate",
        "latest_event_to_state",
        Function::LatestEventToState,
    ),
    (
        "tllatesteventtostate",
        "latest_event_to_state",
        Function::LatestEventToState,
    ),
    ("tleventtostate", "latest_event_to_state", Function::LatestEventToState),
    ("eventtostate", "latest_event_to_state", Function::LatestEventToState),
    ("hasexisted", "has_existed", Function::HasExisted),
    ("tlhasexisted", "has_existed", Function::HasExisted),
    ("hasexistedwithin", "has_existed_within", Function::HasExistedWithin),
    ("tlhasexistedwithin", "has_existed_within", Function::HasExistedWithin),
    ("durationwhere", "duration_where", Function::DurationWhere),
    ("tldurationwhere", "duration_where", Function::DurationWhere),
    (
        "durationincurstate",
        "duration_in_cur_state",
        Function::DurationInCurState,
    ),
    (
        "tldurationincurstate",
        "duration_in_cur_state",
        Function::DurationInCurState,
    ),
    ("col", "col", Function::Col),
    ("equalto", "equal_to", Function::Compare(CmpOp::Eq)),
    ("notequalto", "not_equal_to", Function::Compare(CmpOp::Ne)),
    ("greaterthan", "greater_than", Function::Compare(CmpOp::Gt)),
    (
        "greaterthanorequalto",
        "greater_than_or_equal_to",
        Function::Compare(CmpOp::Ge),
    ),
    ("lessthan", "less_than", Function::Compare(CmpOp::Lt)),
    (
        "lessthanorequalto",
        "less_than_or_equal_to",
        Function::Compare(CmpOp::Le),
    ),
    ("and", "and", Function::And),
    ("or", "or", Function::Or),
    ("not", "not", Function::Not),
];

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn lookup(name: &str) -> Option<(&'static str, Function)> {
    let key = normalise(name);
    FUNCTIONS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, canonical, f)| (*canonical, *f))
}

/// The known function name nearest to `name`, if it is near enough to be a typo.
fn nearest_function(name: &str) -> Option<&'static str> {
    let key = normalise(name);
    FUNCTIONS
        .iter()
        .map(|(k, canonical, _)| (strsim::levenshtein(&key, k), *canonical))
        .filter(|(distance, _)| *distance <= (key.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, canonical)| canonical)
}

struct Checker<'s> {
    source: &'s str,
    bindings: HashMap<String, Typed>,
}

pub(crate) fn lower(source: &str, program: &Program) -> Result<Query, DslError> {
    let mut checker = Checker {
        source,
        bindings: HashMap::new(),
    };
    let mut bindings = Vec::new();
    let mut last: Option<(Typed, Span)> = None;
    for (name, name_span, value) in &program.bindings {
        if lookup(name).is_some() {
            return Err(checker
                .error(name_span.clone(), format!("`{name}` is the name of a function"))
                .help("choose another name for the binding"));
        }
        let typed = checker.check(value)?;
        if let Typed::Timeline(op) = &typed {
            bindings.push((name.clone(), op.clone()));
        }
        checker.bindings.insert(name.clone(), typed.clone());
        last = Some((typed, value.span.clone()));
    }
    let (result, span) = match &program.result {
        Some(expr) => (checker.check(expr)?, expr.span.clone()),
        None => last.expect("the parser rejects an empty program"),
    };
    match result {
        Typed::Timeline(result) => Ok(Query { bindings, result }),
        Typed::Predicate(_) => Err(checker
            .error(span, "a query computes a timeline, but this is a predicate on events")
            .label("a test of one event")
            .help("make it a timeline, e.g. has_existed(...) or has_existed_within(..., 5s)")),
        other => Err(checker
            .error(
                span,
                format!("a query computes a timeline, but this is {}", other.describe()),
            )
            .help("use latest_event_to_state(column) for the values of a column over time")),
    }
}

impl Checker<'_> {
    fn error(&self, span: Span, message: impl Into<String>) -> DslError {
        DslError::new(self.source, span, message)
    }

    fn check(&mut self, expr: &Expr) -> Result<Typed, DslError> {
        let span = expr.span.clone();
        match &expr.kind {
            ExprKind::Str(s) => Ok(Typed::Literal(Value::str(s))),
            ExprKind::Int(i) => Ok(Typed::Literal(Value::Int(*i))),
            ExprKind::Float(x) => Ok(Typed::Literal(Value::Float(*x))),
            ExprKind::Bool(b) => Ok(Typed::Literal(Value::Bool(*b))),
            ExprKind::Duration(ms, _) => Ok(Typed::Duration(*ms)),
            ExprKind::Name(name) => {
                if let Some(bound) = self.bindings.get(name) {
                    return Ok(bound.clone());
                }
                if let Some((canonical, _)) = lookup(name) {
                    return Err(self
                        .error(span, format!("`{name}` is a function; call it with its arguments"))
                        .help(format!("e.g. {canonical}(...)")));
                }
                Ok(Typed::Column(SmolStr::new(name)))
            }
            ExprKind::Not(inner) => {
                let inner = self.check(inner)?;
                self.logical("!", span, inner, None)
            }
            ExprKind::And(a, b) => {
                let (a, b) = (self.check(a)?, self.check(b)?);
                self.logical("&&", span, a, Some(b))
            }
            ExprKind::Or(a, b) => {
                let (a, b) = (self.check(a)?, self.check(b)?);
                self.logical("||", span, a, Some(b))
            }
            ExprKind::Compare(op, a, b) => {
                let (ta, tb) = (self.check(a)?, self.check(b)?);
                self.compare(*op, span, (ta, a.span.clone()), (tb, b.span.clone()))
            }
            ExprKind::Call { name, name_span, args } => self.call(name, name_span.clone(), span, args),
        }
    }

    fn logical(&self, op: &'static str, span: Span, a: Typed, b: Option<Typed>) -> Result<Typed, DslError> {
        let operands: Vec<&Typed> = std::iter::once(&a).chain(b.as_ref()).collect();
        let all_predicates = operands.iter().all(|t| matches!(t, Typed::Predicate(_)));
        let all_bool_timelines = operands
            .iter()
            .all(|t| matches!(t, Typed::Timeline(op) if op.output_type() == TimelineType::Bool));
        if all_predicates {
            let mut preds = operands.into_iter().map(|t| match t {
                Typed::Predicate(p) => p.clone(),
                _ => unreachable!("checked above"),
            });
            let first = preds.next().expect("at least one operand");
            return Ok(Typed::Predicate(match (op, preds.next()) {
                ("!", _) => !first,
                ("&&", Some(second)) => first & second,
                (_, Some(second)) => first | second,
                (_, None) => first,
            }));
        }
        if all_bool_timelines {
            let mut ops = operands.into_iter().map(|t| match t {
                Typed::Timeline(op) => op.clone(),
                _ => unreachable!("checked above"),
            });
            let first = ops.next().expect("at least one operand");
            return Ok(Typed::Timeline(match (op, ops.next()) {
                ("!", _) => first.negate(),
                ("&&", Some(second)) => first.and(second),
                (_, Some(second)) => first.or(second),
                (_, None) => first,
            }));
        }
        let any_predicate = operands.iter().any(|t| matches!(t, Typed::Predicate(_)));
        let any_timeline = operands.iter().any(|t| matches!(t, Typed::Timeline(_)));
        if any_predicate && any_timeline {
            return Err(self
                .error(
                    span,
                    format!("`{op}` cannot combine a predicate on events with a timeline"),
                )
                .label("a predicate and a timeline")
                .help("turn the predicate into a timeline with has_existed(...) or has_existed_within(..., d)"));
        }
        let bad = operands
            .iter()
            .find(|t| {
                !matches!(t, Typed::Predicate(_))
                    && !matches!(t, Typed::Timeline(op) if op.output_type() == TimelineType::Bool)
            })
            .expect("some operand is not boolean");
        let mut err = self.error(
            span,
            format!(
                "`{op}` needs boolean timelines or predicates, but an operand is {}",
                bad.describe()
            ),
        );
        err = match bad {
            Typed::Timeline(t) if t.output_type() == TimelineType::State => {
                err.help("compare the state with a value first, e.g. latest_event_to_state(c) == \"x\"")
            }
            Typed::Timeline(_) => err.help("compare the duration with a limit first, e.g. duration_where(...) > 10s"),
            Typed::Column(c) => err.help(format!("compare the column with a value, e.g. {c} == true")),
            _ => err,
        };
        Err(err)
    }

    fn compare(
        &self,
        op: CmpOp,
        span: Span,
        (a, a_span): (Typed, Span),
        (b, b_span): (Typed, Span),
    ) -> Result<Typed, DslError> {
        let literal = |t: &Typed| match t {
            Typed::Literal(v) => Some(v.clone()),
            Typed::Duration(ms) => Some(Value::Int(*ms)),
            _ => None,
        };
        // Put the literal on the right.
        let (subject, subject_span, value, op) = match (literal(&a), literal(&b)) {
            (_, Some(v)) if literal(&a).is_none() => (a, a_span, v, op),
            (Some(v), None) => (b, b_span, v, op.flipped()),
            (Some(_), Some(_)) => {
                return Err(self
                    .error(span, "comparison of two literals")
                    .help("compare a column or a timeline with a value"));
            }
            (None, _) => {
                return Err(self
                    .error(
                        b_span,
                        format!("`{op}` compares with a literal value, found {}", b.describe()),
                    )
                    .help("comparing two columns or two timelines is not supported; compare each with a value"));
            }
        };
        match subject {
            Typed::Column(column) => Ok(Typed::Predicate(Predicate::compare(column, op, value))),
            Typed::Timeline(tl) => Ok(Typed::Timeline(tl.compare(op, value))),
            other => Err(self
                .error(
                    subject_span,
                    format!("`{op}` compares a column or a timeline, found {}", other.describe()),
                )
                .help(
                    "e.g. state == \"buffer\" (a predicate) or latest_event_to_state(state) == \"buffer\" (a timeline)",
                )),
        }
    }

    fn call(&mut self, name: &str, name_span: Span, span: Span, args: &[Expr]) -> Result<Typed, DslError> {
        let Some((canonical, function)) = lookup(name) else {
            let mut err = self
                .error(name_span, format!("unknown function `{name}`"))
                .label("not a function");
            if let Some(nearest) = nearest_function(name) {
                err = err.help(format!("did you mean `{nearest}`?"));
            } else {
                err = err.help("functions: latest_event_to_state, has_existed, has_existed_within, duration_where, duration_in_cur_state");
            }
            return Err(err);
        };
        let expected_args = match function {
            Function::HasExistedWithin | Function::Compare(_) | Function::And | Function::Or => 2,
            _ => 1,
        };
        if args.len() != expected_args {
            let what = if expected_args == 1 {
                "1 argument".to_string()
            } else {
                format!("{expected_args} arguments")
            };
            return Err(self
                .error(span, format!("`{canonical}` takes {what}, found {}", args.len()))
                .help(usage(function)));
        }
        match function {
            Function::Col => match &args[0].kind {
                ExprKind::Str(s) => Ok(Typed::Column(SmolStr::new(s))),
                ExprKind::Name(n) if !self.bindings.contains_key(n) => Ok(Typed::Column(SmolStr::new(n))),
                _ => Err(self
                    .error(args[0].span.clone(), "`col` takes a column name")
                    .help("e.g. col(\"playerStateChange\")")),
            },
            Function::LatestEventToState => match self.check(&args[0])? {
                Typed::Column(c) => Ok(Typed::Timeline(TimeLineOp::latest_event_to_state(&c))),
                Typed::Literal(Value::Str(s)) => Ok(Typed::Timeline(TimeLineOp::latest_event_to_state(&s))),
                other => Err(self
                    .error(
                        args[0].span.clone(),
                        format!("`latest_event_to_state` takes a column, found {}", other.describe()),
                    )
                    .help(usage(function))),
            },
            Function::HasExisted | Function::HasExistedWithin => {
                let predicate = match self.check(&args[0])? {
                    Typed::Predicate(p) => p,
                    Typed::Timeline(_) => {
                        return Err(self
                            .error(
                                args[0].span.clone(),
                                format!("`{canonical}` takes a predicate on events, found a timeline"),
                            )
                            .label("a timeline")
                            .help(
                                "test the event's columns directly, e.g. has_existed(playerStateChange == \"play\")",
                            ));
                    }
                    Typed::Column(c) => {
                        return Err(self
                            .error(
                                args[0].span.clone(),
                                format!("`{canonical}` takes a predicate on events, found the column `{c}`"),
                            )
                            .help(format!("compare the column with a value, e.g. {c} == true")));
                    }
                    other => {
                        return Err(self
                            .error(
                                args[0].span.clone(),
                                format!("`{canonical}` takes a predicate on events, found {}", other.describe()),
                            )
                            .help(usage(function)));
                    }
                };
                if function == Function::HasExisted {
                    return Ok(Typed::Timeline(TimeLineOp::has_existed(predicate)));
                }
                match self.check(&args[1])? {
                    Typed::Duration(ms) | Typed::Literal(Value::Int(ms)) if ms > 0 => {
                        Ok(Typed::Timeline(TimeLineOp::has_existed_within(predicate, ms)))
                    }
                    other => Err(self
                        .error(
                            args[1].span.clone(),
                            format!(
                                "the window of `has_existed_within` must be a positive duration, found {}",
                                other.describe()
                            ),
                        )
                        .help("e.g. 5s, 500ms, 10m, 1h, 1d (a bare integer is milliseconds)")),
                }
            }
            Function::DurationWhere => match self.check(&args[0])? {
                Typed::Timeline(tl) if tl.output_type() == TimelineType::Bool => {
                    Ok(Typed::Timeline(tl.duration_where()))
                }
                Typed::Predicate(_) => Err(self
                    .error(
                        args[0].span.clone(),
                        "`duration_where` takes a boolean timeline, found a predicate on events",
                    )
                    .label("a test of one event, not a timeline")
                    .help(
                        "a predicate holds at an instant only; use has_existed(...) or latest_event_to_state(c) == v",
                    )),
                other => {
                    let mut err = self.error(
                        args[0].span.clone(),
                        format!("`duration_where` takes a boolean timeline, found {}", other.describe()),
                    );
                    if matches!(&other, Typed::Timeline(t) if t.output_type() == TimelineType::State) {
                        err = err.help(
                            "compare the state with a value, e.g. duration_where(latest_event_to_state(c) == \"x\")",
                        );
                    }
                    Err(err)
                }
            },
            Function::DurationInCurState => match self.check(&args[0])? {
                Typed::Timeline(tl) => Ok(Typed::Timeline(tl.duration_in_cur_state())),
                Typed::Column(c) => Err(self
                    .error(
                        args[0].span.clone(),
                        format!("`duration_in_cur_state` takes a timeline, found the column `{c}`"),
                    )
                    .help(format!("e.g. duration_in_cur_state(latest_event_to_state({c}))"))),
                other => Err(self
                    .error(
                        args[0].span.clone(),
                        format!("`duration_in_cur_state` takes a timeline, found {}", other.describe()),
                    )
                    .help(usage(function))),
            },
            Function::Compare(op) => {
                let (a, b) = (self.check(&args[0])?, self.check(&args[1])?);
                self.compare(op, span, (a, args[0].span.clone()), (b, args[1].span.clone()))
            }
            Function::And | Function::Or => {
                let (a, b) = (self.check(&args[0])?, self.check(&args[1])?);
                self.logical(if function == Function::And { "&&" } else { "||" }, span, a, Some(b))
            }
            Function::Not => {
                let a = self.check(&args[0])?;
                self.logical("!", span, a, None)
            }
        }
    }
}

fn usage(function: Function) -> &'static str {
    match function {
        Function::LatestEventToState => "usage: latest_event_to_state(column)",
        Function::HasExisted => "usage: has_existed(column == value)",
        Function::HasExistedWithin => "usage: has_existed_within(column == value, 5s)",
        Function::DurationWhere => "usage: duration_where(boolean timeline)",
        Function::DurationInCurState => "usage: duration_in_cur_state(timeline)",
        Function::Col => "usage: col(\"column name\")",
        Function::Compare(_) => "usage: equal_to(timeline or column, value)",
        Function::And | Function::Or => "usage: and(a, b)",
        Function::Not => "usage: not(a)",
    }
}
