//! Metrics derived from aggregates: arithmetic over aggregate functions,
//! group by group (the article's `completion_rate = completed / attempts`).
//!
//! A metric node holds no state: like a derived timeline, it is computed when
//! read, from the [`Partial`]s of its input aggregates for each group. An
//! input without `group_by` has one group, which every group of the other
//! inputs sees.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::aggregate::{AggFn, AggregateNode, Group, Partial};
use crate::id::NodeId;
use crate::value::Value;

/// `+`, `-`, `*` or `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (always a float; Unknown when dividing by zero)
    Div,
}

impl ArithOp {
    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }

    /// `a op b`: integers stay integers for `+`, `-`, `*` unless they
    /// overflow; `/` is a float; division by zero is Unknown.
    pub fn apply(self, a: &Value, b: &Value) -> Option<Value> {
        let as_f64 = |v: &Value| match v {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Str(_) => None,
        };
        if let (Value::Int(x), Value::Int(y), false) = (a, b, self == ArithOp::Div) {
            let exact = match self {
                ArithOp::Add => x.checked_add(*y),
                ArithOp::Sub => x.checked_sub(*y),
                _ => x.checked_mul(*y),
            };
            if let Some(i) = exact {
                return Some(Value::Int(i));
            }
        }
        let (x, y) = (as_f64(a)?, as_f64(b)?);
        let result = match self {
            ArithOp::Add => x + y,
            ArithOp::Sub => x - y,
            ArithOp::Mul => x * y,
            ArithOp::Div if y == 0.0 => return None,
            ArithOp::Div => x / y,
        };
        result.is_finite().then_some(Value::Float(result))
    }
}

/// One input of a metric folded at an instant: its groups' partials, and
/// whether it is grouped at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputFold {
    /// Whether the input aggregate has `group_by`.
    pub grouped: bool,
    /// Each group's fold, as the aggregate's readers give them.
    pub groups: Vec<(Group, Partial)>,
}

/// An arithmetic expression over aggregate functions and numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricExpr {
    /// `function` of the node's input aggregate number `input`.
    Input {
        /// Position of the aggregate among the node's inputs.
        input: usize,
        /// The function read from it.
        function: AggFn,
    },
    /// A number.
    Const(Value),
    /// `-e`
    Neg(Box<MetricExpr>),
    /// `left op right`
    Binary {
        /// The operator.
        op: ArithOp,
        /// Left operand.
        left: Box<MetricExpr>,
        /// Right operand.
        right: Box<MetricExpr>,
    },
}

impl MetricExpr {
    /// The value for one group, from each input's fold for that group.
    pub fn evaluate(&self, inputs: &[&Partial]) -> Option<Value> {
        match self {
            MetricExpr::Input { input, function } => inputs.get(*input)?.finish(*function),
            MetricExpr::Const(v) => Some(v.clone()),
            MetricExpr::Neg(e) => ArithOp::Sub.apply(&Value::Int(0), &e.evaluate(inputs)?),
            MetricExpr::Binary { op, left, right } => op.apply(&left.evaluate(inputs)?, &right.evaluate(inputs)?),
        }
    }

    /// The metric for every group, from each input's folds in input order:
    /// the groups are those of the grouped inputs, and an ungrouped input's
    /// one group is seen by every group. Returns each group, sorted, with the
    /// keys counted by the first input and the value.
    pub fn evaluate_groups(&self, inputs: &[InputFold]) -> Vec<(Group, u64, Option<Value>)> {
        let mut groups: Vec<Group> = inputs
            .iter()
            .filter(|fold| fold.grouped)
            .flat_map(|fold| fold.groups.iter().map(|(g, _)| g.clone()))
            .collect();
        if inputs.iter().all(|fold| !fold.grouped) && inputs.iter().any(|fold| !fold.groups.is_empty()) {
            groups.push(Group::NULL);
        }
        groups.sort();
        groups.dedup();
        let empty = Partial::default();
        groups
            .into_iter()
            .map(|group| {
                let partials: Vec<&Partial> = inputs
                    .iter()
                    .map(|fold| {
                        let want = if fold.grouped { &group } else { &Group::NULL };
                        fold.groups.iter().find(|(g, _)| g == want).map_or(&empty, |(_, p)| p)
                    })
                    .collect();
                let keys = partials.first().map_or(0, |p| p.keys);
                let value = self.evaluate(&partials);
                (group, keys, value)
            })
            .collect()
    }

    /// The functions read from input `input`.
    pub fn functions_of(&self, input: usize) -> Vec<AggFn> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let MetricExpr::Input { input: i, function } = e
                && *i == input
                && !out.contains(function)
            {
                out.push(*function);
            }
        });
        out
    }

    fn visit(&self, f: &mut impl FnMut(&MetricExpr)) {
        f(self);
        match self {
            MetricExpr::Neg(e) => e.visit(f),
            MetricExpr::Binary { left, right, .. } => {
                left.visit(f);
                right.visit(f);
            }
            _ => {}
        }
    }

    /// The expression as text, with `input(i, function)` writing an input.
    pub fn render(&self, input: &impl Fn(usize, AggFn) -> String) -> String {
        match self {
            MetricExpr::Input { input: i, function } => input(*i, *function),
            MetricExpr::Const(v) => v.to_string(),
            MetricExpr::Neg(e) => format!("-{}", e.render(input)),
            MetricExpr::Binary { op, left, right } => {
                format!("({} {} {})", left.render(input), op.symbol(), right.render(input))
            }
        }
    }
}

/// A derived metric: an expression over aggregate nodes, with its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricNode {
    expr: MetricExpr,
    inputs: Vec<AggregateNode>,
    id: NodeId,
}

impl MetricNode {
    /// A metric over `inputs`; `expr` refers to them by position.
    pub fn new(expr: MetricExpr, inputs: Vec<AggregateNode>) -> Self {
        // Inputs by id, so that the key's size does not grow with them.
        let key = expr.render(&|i, function| match inputs.get(i) {
            Some(node) => format!("{}.{function}", node.id()),
            None => format!("<missing input {i}>"),
        });
        let id = NodeId::derive("metric", &key);
        MetricNode { expr, inputs, id }
    }

    /// The expression.
    pub fn expr(&self) -> &MetricExpr {
        &self.expr
    }

    /// The input aggregates, in the order the expression numbers them.
    pub fn inputs(&self) -> &[AggregateNode] {
        &self.inputs
    }

    /// The group column of the grouped inputs, if any.
    pub fn group_by(&self) -> Option<&str> {
        self.inputs.iter().find_map(|i| i.spec().group_by.as_deref())
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The canonical form: valid DSL, the inputs in full.
    pub fn canonical(&self) -> String {
        self.expr.render(&|i, function| match self.inputs.get(i) {
            Some(node) => format!("({})", node.dsl(&[function], false)),
            None => format!("<missing input {i}>"),
        })
    }

    /// The metric in DSL with its inputs' bounded descriptions.
    pub fn description(&self) -> String {
        self.expr.render(&|i, function| match self.inputs.get(i) {
            Some(node) => format!("({})", node.description(&[function], false)),
            None => format!("<missing input {i}>"),
        })
    }
}

impl fmt::Display for MetricNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_keeps_integers_and_divides_to_floats() {
        let (i, j) = (Value::Int(7), Value::Int(2));
        assert_eq!(ArithOp::Add.apply(&i, &j), Some(Value::Int(9)));
        assert_eq!(ArithOp::Mul.apply(&i, &j), Some(Value::Int(14)));
        assert_eq!(ArithOp::Div.apply(&i, &j), Some(Value::Float(3.5)));
        assert_eq!(ArithOp::Div.apply(&i, &Value::Int(0)), None);
        assert_eq!(
            ArithOp::Add.apply(&Value::Int(i64::MAX), &Value::Int(1)),
            Some(Value::Float(i64::MAX as f64 + 1.0))
        );
        assert_eq!(ArithOp::Sub.apply(&Value::Float(1.5), &j), Some(Value::Float(-0.5)));
    }

    #[test]
    fn evaluates_per_group_from_the_inputs_partials() {
        // completed / attempts
        let expr = MetricExpr::Binary {
            op: ArithOp::Div,
            left: Box::new(MetricExpr::Input {
                input: 0,
                function: AggFn::CountTrue,
            }),
            right: Box::new(MetricExpr::Input {
                input: 1,
                function: AggFn::Sum,
            }),
        };
        let mut completed = Partial::new(false);
        for b in [true, false, true] {
            completed.add(&Value::Bool(b));
        }
        let mut attempts = Partial::new(false);
        for n in [1, 2, 1] {
            attempts.add(&Value::Int(n));
        }
        assert_eq!(expr.evaluate(&[&completed, &attempts]), Some(Value::Float(0.5)));
        assert_eq!(expr.evaluate(&[&completed, &Partial::default()]), None);
        assert_eq!(expr.functions_of(1), [AggFn::Sum]);
        let names = ["a", "b"];
        assert_eq!(
            expr.render(&|i, f| format!("{f}({})", names[i])),
            "(count_true(a) / sum(b))"
        );
        let neg = MetricExpr::Neg(Box::new(MetricExpr::Const(Value::Int(3))));
        assert_eq!(neg.evaluate(&[]), Some(Value::Int(-3)));
    }
}
