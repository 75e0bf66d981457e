//! Name resolution and type checking: the syntax tree to a [`TimeLineOp`].

use std::collections::HashMap;

use smol_str::SmolStr;

use super::ColumnUse;
use super::Query;
use super::error::DslError;
use super::guard;
use super::lexer::Span;
use super::limits::{MAX_DEPTH, MAX_NODES};
use super::parser::{Expr, ExprKind, Program};
use crate::aggregate::{AggFn, AggregateNode};
use crate::metric::{ArithOp, MetricExpr, MetricNode};
use crate::op::{KeyOp, LeafOp, TimeLineOp, TimelineType, Window};
use crate::plan::JobOutput;
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
    /// An aggregate across keys, and the functions it shows.
    Aggregate(AggregateNode, Vec<AggFn>),
    /// Arithmetic over aggregates; `Input`s number the aggregates.
    Metric(MetricExpr, Vec<AggregateNode>),
}

impl Typed {
    fn describe(&self) -> String {
        match self {
            Typed::Timeline(op) => op.output_type().describe().to_string(),
            Typed::Predicate(_) => "a predicate on events".to_string(),
            Typed::Column(c) => format!("the column `{c}`"),
            Typed::Literal(v) => format!("the {} literal {v}", v.type_name()),
            Typed::Duration(ms) => format!("the duration {ms}ms"),
            Typed::Aggregate(_, functions) => {
                let names: Vec<String> = functions.iter().map(AggFn::to_string).collect();
                format!("an aggregate across keys ({})", names.join(", "))
            }
            Typed::Metric(..) => "a metric across keys".to_string(),
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
    CountWhere,
    TimeSince,
    Sequence,
    AbsentAfter,
    Previous,
    TrueWithin,
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
    ("countwhere", "count_where", Function::CountWhere),
    ("timesince", "time_since", Function::TimeSince),
    ("sequence", "sequence", Function::Sequence),
    ("absentafter", "absent_after", Function::AbsentAfter),
    ("previous", "previous", Function::Previous),
    ("truewithin", "true_within", Function::TrueWithin),
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
    /// Every mention of a column, for warnings against a stream's columns.
    columns: Vec<ColumnUse>,
    /// Nodes copied by references to bindings (predicates, metrics and
    /// literals are copied; timelines are shared).
    unfolded: usize,
}

pub(crate) fn lower(source: &str, program: &Program) -> Result<Query, DslError> {
    let mut checker = Checker {
        source,
        bindings: HashMap::new(),
        columns: Vec::new(),
        unfolded: 0,
    };
    let mut bindings = Vec::new();
    let mut outputs: Vec<(String, JobOutput)> = Vec::new();
    let mut last: Option<(Typed, Span)> = None;
    for statement in &program.statements {
        let (name, name_span) = (&statement.name, &statement.name_span);
        if lookup(name).is_some() {
            return Err(checker
                .error(name_span.clone(), format!("`{name}` is the name of a function"))
                .help("choose another name"));
        }
        if statement.output && outputs.iter().any(|(n, _)| n == name) {
            return Err(checker
                .error(
                    name_span.clone(),
                    format!("the job already has an output named `{name}`"),
                )
                .help("give each output its own name"));
        }
        let typed = checker.check(&statement.value)?;
        if let Typed::Timeline(op) = &typed {
            bindings.push((name.clone(), op.clone()));
        }
        if statement.output {
            outputs.push((
                name.clone(),
                checker.output(typed.clone(), statement.value.span.clone())?,
            ));
        }
        checker.bindings.insert(name.clone(), typed.clone());
        last = Some((typed, statement.value.span.clone()));
    }
    let result = match &program.result {
        Some(expr) => Some((checker.check(expr)?, expr.span.clone())),
        None if outputs.is_empty() => last,
        None => None,
    };
    if let Some((typed, span)) = result {
        if outputs.iter().any(|(n, _)| n == "result") {
            return Err(checker
                .error(span, "the job already has an output named `result`")
                .help("name this expression: `name = ...;`"));
        }
        outputs.push(("result".to_string(), checker.output(typed, span)?));
    }
    Ok(Query {
        stream: Default::default(),
        bindings,
        outputs,
        columns: checker.columns,
    })
}

/// Checks a condition: one expression that is a predicate over columns
/// (`value == true && key != "a"`), as a filter of records that are not
/// events (changes of results).
pub(crate) fn lower_condition(source: &str, program: &Program) -> Result<Predicate, DslError> {
    let mut checker = Checker {
        source,
        bindings: HashMap::new(),
        columns: Vec::new(),
        unfolded: 0,
    };
    let expr = match (program.statements.as_slice(), &program.result) {
        ([], Some(expr)) => expr,
        _ => {
            let end = source.chars().count();
            return Err(DslError::new(source, 0..end, "a condition is one expression")
                .help("for example: value == true && key != \"test\""));
        }
    };
    match checker.check(expr)? {
        Typed::Predicate(p) => Ok(p),
        other => Err(checker
            .error(
                expr.span.clone(),
                format!("a condition tests columns, but this is {}", other.describe()),
            )
            .help("compare a column with a value, e.g. value == true")),
    }
}

impl Checker<'_> {
    fn error(&self, span: Span, message: impl Into<String>) -> DslError {
        DslError::new(self.source, span, message)
    }

    /// What a job outputs for an expression that is `typed`.
    fn output(&self, typed: Typed, span: Span) -> Result<JobOutput, DslError> {
        match typed {
            Typed::Timeline(op) => Ok(JobOutput::Timeline(op)),
            Typed::Aggregate(node, functions) => Ok(JobOutput::Aggregate { node, functions }),
            Typed::Metric(expr, inputs) => Ok(JobOutput::Metric(MetricNode::new(expr, inputs))),
            Typed::Predicate(_) => Err(self
                .error(span, "a query computes a timeline, but this is a predicate on events")
                .label("a test of one event")
                .help("make it a timeline, e.g. has_existed(...) or has_existed_within(..., 5s)")),
            other => Err(self
                .error(
                    span,
                    format!("a query computes a timeline, but this is {}", other.describe()),
                )
                .help("use latest_event_to_state(column) for the values of a column over time")),
        }
    }

    /// Types `expr`; refuses predicates and metrics nested deeper than
    /// [`MAX_DEPTH`] (possible through `let` bindings only).
    fn check(&mut self, expr: &Expr) -> Result<Typed, DslError> {
        // Debug builds use kilobytes of stack per level: grow it on the heap
        // rather than overflow a small thread's stack within MAX_DEPTH.
        let typed = stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, || self.check_expr(expr))?;
        let depth = match &typed {
            Typed::Predicate(p) => predicate_shape(p).1,
            Typed::Metric(m, _) => metric_shape(m).1,
            _ => 0,
        };
        if depth > MAX_DEPTH {
            return Err(guard::too_deep(self.source, expr.span.clone()));
        }
        Ok(typed)
    }

    fn check_expr(&mut self, expr: &Expr) -> Result<Typed, DslError> {
        let span = expr.span.clone();
        match &expr.kind {
            ExprKind::Str(s) => Ok(Typed::Literal(Value::str(s))),
            ExprKind::Int(i) => Ok(Typed::Literal(Value::Int(*i))),
            ExprKind::Float(x) => Ok(Typed::Literal(Value::Float(*x))),
            ExprKind::Bool(b) => Ok(Typed::Literal(Value::Bool(*b))),
            ExprKind::Duration(ms, _) => Ok(Typed::Duration(*ms)),
            ExprKind::Name(name) => {
                if let Some(bound) = self.bindings.get(name) {
                    self.unfolded = self.unfolded.saturating_add(weight(bound));
                    if self.unfolded > MAX_NODES {
                        return Err(guard::too_complex(
                            self.source,
                            span,
                            "nodes once `let` bindings are unfolded",
                        ));
                    }
                    return Ok(bound.clone());
                }
                if let Some((canonical, _)) = lookup(name) {
                    return Err(self
                        .error(span, format!("`{name}` is a function; call it with its arguments"))
                        .help(format!("e.g. {canonical}(...)")));
                }
                Ok(self.column(name, span))
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
            ExprKind::Neg(inner) => {
                let typed = self.check(inner)?;
                match typed {
                    Typed::Duration(ms) => Ok(Typed::Duration(-ms)),
                    Typed::Literal(Value::Int(i)) => Ok(Typed::Literal(Value::Int(-i))),
                    Typed::Literal(Value::Float(x)) => Ok(Typed::Literal(Value::Float(-x))),
                    other => {
                        let (expr, inputs) = self.metric_operand(other, inner.span.clone(), "-")?;
                        Ok(Typed::Metric(MetricExpr::Neg(Box::new(expr)), inputs))
                    }
                }
            }
            ExprKind::Arith(op, a, b) => {
                let (ta, tb) = (self.check(a)?, self.check(b)?);
                self.arithmetic(*op, span, (ta, a.span.clone()), (tb, b.span.clone()))
            }
            ExprKind::Member { base, name, name_span } => {
                let typed = self.check(base)?;
                self.member(typed, base.span.clone(), name, name_span.clone())
            }
            ExprKind::Pipe { input, bar, stage } => {
                let typed = self.check(input)?;
                self.pipe(typed, input.span.clone(), bar.clone(), stage)
            }
        }
    }

    /// `input | aggregate(group_by(col), functions..., shards(n))`
    fn pipe(&mut self, input: Typed, input_span: Span, bar: Span, stage: &Expr) -> Result<Typed, DslError> {
        let ExprKind::Call { name, name_span, args } = &stage.kind else {
            return Err(self.not_an_aggregate_stage(&input, input_span.clone(), bar, stage));
        };
        if normalise(name) != "aggregate" {
            if lookup(name).is_some() || self.bindings.contains_key(name) {
                return Err(self.not_an_aggregate_stage(&input, input_span.clone(), bar, stage));
            }
            let mut err = self
                .error(name_span.clone(), format!("unknown function `{name}` after `|`"))
                .label("not aggregate");
            if strsim::levenshtein(&normalise(name), "aggregate") <= 3 {
                err = err.help("did you mean `aggregate`?");
            } else {
                err = err.help("`|` sends per-key results to aggregate(...)");
            }
            return Err(err);
        }
        let source = match input {
            Typed::Timeline(op) => op,
            Typed::Predicate(_) => {
                return Err(self
                    .error(
                        input_span,
                        "`aggregate` takes a timeline per key, found a predicate on events",
                    )
                    .help("make it a timeline first, e.g. has_existed(...) | aggregate(count_true)"));
            }
            other => {
                return Err(self
                    .error(
                        input_span,
                        format!("`aggregate` takes a timeline per key, found {}", other.describe()),
                    )
                    .help("aggregate a per-key timeline, e.g. duration_where(...) | aggregate(avg)"));
            }
        };
        let mut group_by: Option<(SmolStr, Span)> = None;
        let mut shards: Option<u32> = None;
        let mut functions: Vec<AggFn> = Vec::new();
        for arg in args {
            match &arg.kind {
                ExprKind::Call { name, args: inner, .. } if normalise(name) == "groupby" => {
                    if let Some((_, first)) = &group_by {
                        let first = self.error(first.clone(), "");
                        return Err(self
                            .error(arg.span.clone(), "an aggregate has one `group_by`")
                            .help(format!("the first is at line {}, column {}", first.line, first.column)));
                    }
                    let column = match inner.as_slice() {
                        [one] => match self.check(one)? {
                            Typed::Column(c) => Some(c),
                            Typed::Literal(Value::Str(s)) => Some(s),
                            _ => None,
                        },
                        _ => None,
                    };
                    let Some(column) = column else {
                        return Err(self
                            .error(arg.span.clone(), "`group_by` takes one column")
                            .help("e.g. group_by(cdnChange)"));
                    };
                    group_by = Some((column, arg.span.clone()));
                }
                ExprKind::Call { name, args: inner, .. } if normalise(name) == "shards" => {
                    let n = match inner.as_slice() {
                        [
                            Expr {
                                kind: ExprKind::Int(n @ 1..=1024),
                                ..
                            },
                        ] => *n as u32,
                        _ => {
                            return Err(self
                                .error(arg.span.clone(), "`shards` takes a whole number from 1 to 1024")
                                .help("e.g. shards(8): each group's keys spread over 8 aggregators"));
                        }
                    };
                    shards = Some(n);
                }
                ExprKind::Name(f) if !self.bindings.contains_key(f) => {
                    let function = self.aggregate_function(f, arg.span.clone(), &source)?;
                    if !functions.contains(&function) {
                        functions.push(function);
                    }
                }
                _ => {
                    return Err(self
                        .error(
                            arg.span.clone(),
                            "`aggregate` takes group_by(column), shards(n) and function names",
                        )
                        .help("e.g. aggregate(group_by(cdnChange), count, avg, p90)"));
                }
            }
        }
        if functions.is_empty() {
            return Err(self
                .error(stage.span.clone(), "`aggregate` needs at least one function")
                .help(format!(
                    "functions: {}, or any percentile p1 ... p99",
                    AggFn::NAMED.join(", ")
                )));
        }
        let node = AggregateNode::new(source, group_by.as_ref().map(|(c, _)| c.as_str()), shards.unwrap_or(1));
        Ok(Typed::Aggregate(node, functions))
    }

    fn not_an_aggregate_stage(&mut self, input: &Typed, input_span: Span, bar: Span, stage: &Expr) -> DslError {
        let boolean = |t: &Typed| {
            matches!(t, Typed::Predicate(_))
                || matches!(t, Typed::Timeline(op) if op.output_type() == TimelineType::Bool)
        };
        let err = self
            .error(bar.clone(), "`|` sends per-key results to `aggregate(...)`")
            .label("a pipe");
        if let Some(help) = self.pipe_precedence_help(input_span, stage) {
            return err.help(help);
        }
        let stage_is_boolean = self.check(stage).map(|t| boolean(&t)).unwrap_or(false);
        if boolean(input) && stage_is_boolean {
            err.help("logical or is `||`")
        } else {
            err.help("e.g. duration_where(...) | aggregate(group_by(cdnChange), avg, p90)")
        }
    }

    /// For `x | aggregate(...) + 1`, which parses as `x | (aggregate(...) + 1)`
    /// since `|` binds loosest: the parentheses that make the aggregate an
    /// operand.
    fn pipe_precedence_help(&self, input_span: Span, stage: &Expr) -> Option<String> {
        let (mut operand, mut operator) = (stage, None);
        loop {
            match &operand.kind {
                ExprKind::Arith(op, a, _) => (operand, operator) = (a, Some(op.symbol().to_string())),
                ExprKind::Compare(op, a, _) => (operand, operator) = (a, Some(op.to_string())),
                ExprKind::And(a, _) => (operand, operator) = (a, Some("&&".to_string())),
                ExprKind::Or(a, _) => (operand, operator) = (a, Some("||".to_string())),
                _ => break,
            }
        }
        // The aggregate call, and what binds tighter than the pipe after it.
        let (call, tighter) = match &operand.kind {
            ExprKind::Member { base, name, .. } => (&**base, format!(".{name}")),
            _ => (operand, operator?),
        };
        let ExprKind::Call { name, .. } = &call.kind else {
            return None;
        };
        if normalise(name) != "aggregate" {
            return None;
        }
        let text = |span: Span| -> String {
            self.source
                .chars()
                .skip(span.start)
                .take(span.end.saturating_sub(span.start))
                .collect()
        };
        let piped = text(input_span.start..call.span.end);
        let rest = text(call.span.end..stage.span.end);
        Some(format!(
            "`|` binds looser than `{tighter}`: put the aggregate in parentheses, `({}){}`",
            piped.trim(),
            rest.trim_end()
        ))
    }

    /// An aggregate function named `name`, checked against the type of `source`.
    fn aggregate_function(&self, name: &str, span: Span, source: &TimeLineOp) -> Result<AggFn, DslError> {
        let Some(function) = AggFn::parse(name) else {
            let nearest = AggFn::NAMED
                .iter()
                .map(|f| (strsim::levenshtein(name, f), *f))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d);
            let mut err = self
                .error(span, format!("unknown aggregate function `{name}`"))
                .label("not an aggregate function");
            err = match nearest {
                Some((_, f)) => err.help(format!("did you mean `{f}`?")),
                None => err.help(format!(
                    "functions: {}, or any percentile p1 ... p99",
                    AggFn::NAMED.join(", ")
                )),
            };
            return Err(err);
        };
        if function == AggFn::CountTrue && source.output_type() != TimelineType::Bool {
            return Err(self
                .error(
                    span,
                    format!(
                        "`count_true` counts keys whose value is true, but this aggregates {}",
                        source.output_type().describe()
                    ),
                )
                .help("use count, sum, avg, min, max or a percentile"));
        }
        Ok(function)
    }

    /// `aggregate.function`: the aggregate read with that one function.
    fn member(&self, base: Typed, base_span: Span, name: &str, name_span: Span) -> Result<Typed, DslError> {
        match base {
            Typed::Aggregate(node, _) => {
                let function = self.aggregate_function(name, name_span, node.source())?;
                Ok(Typed::Aggregate(node, vec![function]))
            }
            Typed::Timeline(_) => Err(self
                .error(
                    base_span,
                    format!("`.{name}` reads a function of an aggregate, but this is a timeline per key"),
                )
                .help(format!("aggregate it first: ... | aggregate({name})"))),
            other => Err(self
                .error(
                    base_span,
                    format!("`.{name}` reads a function of an aggregate, found {}", other.describe()),
                )
                .help("e.g. attempts.sum, where attempts = ... | aggregate(sum, avg)")),
        }
    }

    /// One side of `+ - * /` as a metric expression over its aggregates.
    fn metric_operand(&self, typed: Typed, span: Span, op: &str) -> Result<(MetricExpr, Vec<AggregateNode>), DslError> {
        match typed {
            Typed::Literal(v @ (Value::Int(_) | Value::Float(_))) => Ok((MetricExpr::Const(v), Vec::new())),
            Typed::Duration(ms) => Ok((MetricExpr::Const(Value::Int(ms)), Vec::new())),
            Typed::Metric(expr, inputs) => Ok((expr, inputs)),
            Typed::Aggregate(node, functions) => match functions.as_slice() {
                [function] => Ok((
                    MetricExpr::Input {
                        input: 0,
                        function: *function,
                    },
                    vec![node],
                )),
                several => {
                    let names: Vec<String> = several.iter().map(AggFn::to_string).collect();
                    Err(self
                        .error(
                            span,
                            format!("this aggregate shows {}: say which one `{op}` uses", names.join(", ")),
                        )
                        .help(format!("e.g. name.{}", names[0])))
                }
            },
            Typed::Timeline(_) => Err(self
                .error(
                    span,
                    format!("`{op}` works on aggregates across keys, found a timeline per key"),
                )
                .help("aggregate it first: ... | aggregate(sum)")),
            other => Err(self
                .error(
                    span,
                    format!("`{op}` works on aggregates and numbers, found {}", other.describe()),
                )
                .help("e.g. completed / attempts, where both are ... | aggregate(...)")),
        }
    }

    /// `a op b` over aggregates and numbers.
    fn arithmetic(
        &self,
        op: ArithOp,
        span: Span,
        (a, a_span): (Typed, Span),
        (b, b_span): (Typed, Span),
    ) -> Result<Typed, DslError> {
        let (left, mut inputs) = self.metric_operand(a, a_span, op.symbol())?;
        let (mut right, right_inputs) = self.metric_operand(b, b_span, op.symbol())?;
        // Number the right side's aggregates after the left side's, sharing equal ones.
        let mut renumber = Vec::with_capacity(right_inputs.len());
        for node in right_inputs {
            match inputs.iter().position(|n| n.id() == node.id()) {
                Some(i) => renumber.push(i),
                None => {
                    inputs.push(node);
                    renumber.push(inputs.len() - 1);
                }
            }
        }
        renumber_inputs(&mut right, &renumber);
        let mut columns = inputs.iter().filter_map(|n| n.spec().group_by.as_ref());
        if let Some(first) = columns.next()
            && let Some(other) = columns.find(|c| *c != first)
        {
            return Err(self
                .error(
                    span,
                    format!(
                        "`{}` combines aggregates grouped by `{first}` and by `{other}`",
                        op.symbol()
                    ),
                )
                .help("group both by the same column, or leave one without group_by"));
        }
        let expr = MetricExpr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        };
        if inputs.is_empty() {
            return match expr.evaluate(&[]) {
                Some(v) => Ok(Typed::Literal(v)),
                None => Err(self.error(span, "this arithmetic of numbers has no value (division by zero?)")),
            };
        }
        Ok(Typed::Metric(expr, inputs))
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

    /// A column mentioned at `span`.
    fn column(&mut self, name: &str, span: Span) -> Typed {
        self.columns.push(ColumnUse {
            name: name.to_string(),
            span,
            compared_with: None,
        });
        Typed::Column(SmolStr::new(name))
    }

    fn compare(
        &mut self,
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
        let compared = match &subject {
            Typed::Column(column) => Some(column.to_string()),
            Typed::Timeline(tl) => match tl.operator() {
                KeyOp::Leaf(LeafOp::LatestEventToState { column }) => Some(column.to_string()),
                _ => None,
            },
            _ => None,
        };
        if let Some(name) = compared {
            self.columns.push(ColumnUse {
                name,
                span: span.clone(),
                compared_with: Some(value.clone()),
            });
        }
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
            if matches!(normalise(name).as_str(), "aggregate" | "groupby" | "shards") {
                return Err(self
                    .error(name_span, format!("`{name}` belongs after `|`"))
                    .help("e.g. duration_where(...) | aggregate(group_by(cdnChange), avg)"));
            }
            let mut err = self
                .error(name_span, format!("unknown function `{name}`"))
                .label("not a function");
            if let Some(nearest) = nearest_function(name) {
                err = err.help(format!("did you mean `{nearest}`?"));
            } else {
                err = err.help(
                    "functions: latest_event_to_state, has_existed, has_existed_within, duration_where, \
                     duration_in_cur_state, count_where, time_since, previous, true_within, sequence, absent_after",
                );
            }
            return Err(err);
        };
        if function == Function::Sequence {
            return self.sequence(span, args);
        }
        if matches!(function, Function::DurationWhere | Function::CountWhere) && args.len() == 2 {
            let window = self.window(canonical, &args[1])?;
            let Typed::Timeline(over) = self.call(name, name_span, span, &args[..1])? else {
                unreachable!("duration_where and count_where give timelines")
            };
            let input = over.children()[0].clone();
            return Ok(Typed::Timeline(if function == Function::DurationWhere {
                input.duration_where_in(window)
            } else {
                input.count_where_in(window)
            }));
        }
        let expected_args = match function {
            Function::HasExistedWithin | Function::TrueWithin | Function::Compare(_) | Function::And | Function::Or => {
                2
            }
            Function::AbsentAfter => 3,
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
                ExprKind::Str(s) => Ok(self.column(s, args[0].span.clone())),
                ExprKind::Name(n) if !self.bindings.contains_key(n) => Ok(self.column(n, args[0].span.clone())),
                _ => Err(self
                    .error(args[0].span.clone(), "`col` takes a column name")
                    .help("e.g. col(\"playerStateChange\")")),
            },
            Function::LatestEventToState => match self.check(&args[0])? {
                Typed::Column(c) => Ok(Typed::Timeline(TimeLineOp::latest_event_to_state(&c))),
                Typed::Literal(Value::Str(s)) => {
                    self.columns.push(ColumnUse {
                        name: s.to_string(),
                        span: args[0].span.clone(),
                        compared_with: None,
                    });
                    Ok(Typed::Timeline(TimeLineOp::latest_event_to_state(&s)))
                }
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
            Function::CountWhere => match self.check(&args[0])? {
                Typed::Timeline(tl) if tl.output_type() == TimelineType::Bool => Ok(Typed::Timeline(tl.count_where())),
                other => Err(self
                    .error(
                        args[0].span.clone(),
                        format!("`count_where` takes a boolean timeline, found {}", other.describe()),
                    )
                    .help(usage(function))),
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
            Function::TimeSince => {
                let predicate = self.predicate_arg(canonical, function, &args[0])?;
                Ok(Typed::Timeline(TimeLineOp::time_since(predicate)))
            }
            Function::AbsentAfter => {
                let start = self.predicate_arg(canonical, function, &args[0])?;
                let completion = self.predicate_arg(canonical, function, &args[1])?;
                let within = self.window_arg(canonical, &args[2])?;
                Ok(Typed::Timeline(TimeLineOp::absent_after(start, completion, within)))
            }
            Function::Previous => match self.check(&args[0])? {
                Typed::Timeline(tl) => Ok(Typed::Timeline(tl.previous())),
                other => Err(self
                    .error(
                        args[0].span.clone(),
                        format!("`previous` takes a timeline, found {}", other.describe()),
                    )
                    .help(usage(function))),
            },
            Function::TrueWithin => {
                let tl = match self.check(&args[0])? {
                    Typed::Timeline(tl) if tl.output_type() == TimelineType::Bool => tl,
                    Typed::Predicate(_) => {
                        return Err(self
                            .error(
                                args[0].span.clone(),
                                "`true_within` takes a boolean timeline, found a predicate on events",
                            )
                            .help("for events, has_existed_within(predicate, d) says the same"));
                    }
                    other => {
                        return Err(self
                            .error(
                                args[0].span.clone(),
                                format!("`true_within` takes a boolean timeline, found {}", other.describe()),
                            )
                            .help(usage(function)));
                    }
                };
                let within = self.window_arg(canonical, &args[1])?;
                Ok(Typed::Timeline(tl.true_within(within)))
            }
            Function::Sequence => unreachable!("checked above"),
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

/// Most steps of a `sequence`.
const MAX_SEQUENCE_STEPS: usize = 32;

impl Checker<'_> {
    /// An argument that must be a predicate on events.
    fn predicate_arg(&mut self, canonical: &str, function: Function, arg: &Expr) -> Result<Predicate, DslError> {
        match self.check(arg)? {
            Typed::Predicate(p) => Ok(p),
            Typed::Timeline(_) => Err(self
                .error(
                    arg.span.clone(),
                    format!("`{canonical}` takes a predicate on events, found a timeline"),
                )
                .label("a timeline")
                .help("test the event's columns directly, e.g. has_existed(playerStateChange == \"play\")")),
            Typed::Column(c) => Err(self
                .error(
                    arg.span.clone(),
                    format!("`{canonical}` takes a predicate on events, found the column `{c}`"),
                )
                .help(format!("compare the column with a value, e.g. {c} == true"))),
            other => Err(self
                .error(
                    arg.span.clone(),
                    format!("`{canonical}` takes a predicate on events, found {}", other.describe()),
                )
                .help(usage(function))),
        }
    }

    /// An argument that must be a positive duration (a bare integer is ms).
    fn window_arg(&mut self, canonical: &str, arg: &Expr) -> Result<i64, DslError> {
        match self.check(arg)? {
            Typed::Duration(ms) | Typed::Literal(Value::Int(ms)) if ms > 0 => Ok(ms),
            other => Err(self
                .error(
                    arg.span.clone(),
                    format!(
                        "the window of `{canonical}` must be a positive duration, found {}",
                        other.describe()
                    ),
                )
                .help("e.g. 5s, 500ms, 10m, 1h, 1d (a bare integer is milliseconds)")),
        }
    }

    /// The window argument of `duration_where` or `count_where`:
    /// `tumbling(d)` or `sliding(d)`.
    fn window(&mut self, canonical: &str, arg: &Expr) -> Result<Window, DslError> {
        let help = format!("e.g. {canonical}(b, tumbling(1m)) or {canonical}(b, sliding(5m))");
        let ExprKind::Call { name, args, .. } = &arg.kind else {
            let found = match &arg.kind {
                ExprKind::Duration(..) | ExprKind::Int(_) => "a bare duration".to_string(),
                _ => self.check(arg)?.describe(),
            };
            return Err(self
                .error(
                    arg.span.clone(),
                    format!("the window of `{canonical}` is tumbling(d) or sliding(d), found {found}"),
                )
                .help(help));
        };
        let kind = normalise(name);
        if kind != "tumbling" && kind != "sliding" {
            return Err(self
                .error(
                    arg.span.clone(),
                    format!("the window of `{canonical}` is tumbling(d) or sliding(d), found `{name}(...)`"),
                )
                .help(help));
        }
        let [width] = args.as_slice() else {
            return Err(self
                .error(
                    arg.span.clone(),
                    format!("`{kind}` takes 1 duration, found {}", args.len()),
                )
                .help(help));
        };
        let width_ms = self.window_arg(&kind, width)?;
        Ok(if kind == "tumbling" {
            Window::Tumbling { width_ms }
        } else {
            Window::Sliding { width_ms }
        })
    }

    /// `sequence(p1, ..., pn)` or `sequence(p1, ..., pn, within(d))`.
    fn sequence(&mut self, span: Span, args: &[Expr]) -> Result<Typed, DslError> {
        let (steps, within) = match args.split_last() {
            Some((last, steps)) if matches!(&last.kind, ExprKind::Call { name, .. } if normalise(name) == "within") => {
                let ExprKind::Call { args: inner, .. } = &last.kind else {
                    unreachable!("matched above")
                };
                let [d] = inner.as_slice() else {
                    return Err(self
                        .error(
                            last.span.clone(),
                            format!("`within` takes 1 duration, found {}", inner.len()),
                        )
                        .help("e.g. within(1h)"));
                };
                (steps, Some(self.window_arg("sequence", d)?))
            }
            _ => (args, None),
        };
        if steps.len() < 2 || steps.len() > MAX_SEQUENCE_STEPS {
            return Err(self
                .error(
                    span,
                    format!(
                        "`sequence` takes 2 to {MAX_SEQUENCE_STEPS} predicates (and `within(d)`), found {}",
                        steps.len()
                    ),
                )
                .help(usage(Function::Sequence)));
        }
        let mut predicates = Vec::with_capacity(steps.len());
        for step in steps {
            if matches!(&step.kind, ExprKind::Call { name, .. } if normalise(name) == "within") {
                return Err(self
                    .error(step.span.clone(), "`within(d)` comes last in `sequence`")
                    .help(usage(Function::Sequence)));
            }
            predicates.push(self.predicate_arg("sequence", Function::Sequence, step)?);
        }
        Ok(Typed::Timeline(TimeLineOp::sequence(predicates, within)))
    }
}

fn usage(function: Function) -> &'static str {
    match function {
        Function::TimeSince => "usage: time_since(column == value)",
        Function::Sequence => "usage: sequence(step == \"view\", step == \"cart\", within(1h))",
        Function::AbsentAfter => "usage: absent_after(order == \"placed\", order == \"paid\", 10m)",
        Function::Previous => "usage: previous(timeline)",
        Function::TrueWithin => "usage: true_within(boolean timeline, 5s)",
        Function::LatestEventToState => "usage: latest_event_to_state(column)",
        Function::HasExisted => "usage: has_existed(column == value)",
        Function::HasExistedWithin => "usage: has_existed_within(column == value, 5s)",
        Function::DurationWhere => "usage: duration_where(boolean timeline[, tumbling(1m) | sliding(5m)])",
        Function::DurationInCurState => "usage: duration_in_cur_state(timeline)",
        Function::CountWhere => "usage: count_where(boolean timeline[, tumbling(1m) | sliding(5m)])",
        Function::Col => "usage: col(\"column name\")",
        Function::Compare(_) => "usage: equal_to(timeline or column, value)",
        Function::And | Function::Or => "usage: and(a, b)",
        Function::Not => "usage: not(a)",
    }
}

/// Points `Input { input: i }` at `map[i]`.
fn renumber_inputs(expr: &mut MetricExpr, map: &[usize]) {
    match expr {
        MetricExpr::Input { input, .. } => *input = map[*input],
        MetricExpr::Const(_) => {}
        MetricExpr::Neg(e) => renumber_inputs(e, map),
        MetricExpr::Binary { left, right, .. } => {
            renumber_inputs(left, map);
            renumber_inputs(right, map);
        }
    }
}

/// Stack left below which the checker continues on a new segment.
const STACK_RED_ZONE: usize = 64 * 1024;
/// Size of each new stack segment.
const STACK_SEGMENT: usize = 1024 * 1024;

/// Nodes a copy of `typed` adds (string bytes count a node per 16).
fn weight(typed: &Typed) -> usize {
    match typed {
        Typed::Timeline(_) | Typed::Column(_) | Typed::Duration(_) => 1,
        Typed::Literal(Value::Str(s)) => 1 + s.len() / 16,
        Typed::Literal(_) => 1,
        Typed::Predicate(p) => {
            let (nodes, _, bytes) = predicate_shape(p);
            nodes.saturating_add(bytes / 16)
        }
        Typed::Aggregate(_, functions) => 1 + functions.len(),
        Typed::Metric(m, inputs) => metric_shape(m).0.saturating_add(inputs.len()),
    }
}

/// Nodes, depth and string bytes of a predicate, without recursion.
fn predicate_shape(p: &Predicate) -> (usize, usize, usize) {
    let (mut nodes, mut depth, mut bytes) = (0usize, 0usize, 0usize);
    let mut stack = vec![(p, 1usize)];
    while let Some((p, d)) = stack.pop() {
        nodes += 1;
        depth = depth.max(d);
        match p {
            Predicate::Compare { column, value, .. } => {
                bytes += column.len();
                if let Value::Str(s) = value {
                    bytes += s.len();
                }
            }
            Predicate::And(a, b) | Predicate::Or(a, b) => stack.extend([(&**a, d + 1), (&**b, d + 1)]),
            Predicate::Not(a) => stack.push((a, d + 1)),
        }
    }
    (nodes, depth, bytes)
}

/// Nodes and depth of a metric expression, without recursion.
fn metric_shape(m: &MetricExpr) -> (usize, usize) {
    let (mut nodes, mut depth) = (0usize, 0usize);
    let mut stack = vec![(m, 1usize)];
    while let Some((m, d)) = stack.pop() {
        nodes += 1;
        depth = depth.max(d);
        match m {
            MetricExpr::Input { .. } | MetricExpr::Const(_) => {}
            MetricExpr::Neg(a) => stack.push((a, d + 1)),
            MetricExpr::Binary { left, right, .. } => stack.extend([(&**left, d + 1), (&**right, d + 1)]),
        }
    }
    (nodes, depth)
}
