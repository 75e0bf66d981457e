//! Aggregate functions and the partial folds they finish from.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// An aggregate function: what a group's values at an instant fold into.
///
/// Numeric functions read integers and floats, and booleans as 1 and 0; they
/// skip strings. Over no numbers they are Unknown; `count` and `count_true`
/// are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum AggFn {
    /// Keys with a known value.
    Count,
    /// Keys whose value is `true`.
    CountTrue,
    /// Sum of the numbers (an integer while every number is one).
    Sum,
    /// Mean of the numbers.
    Avg,
    /// Least number.
    Min,
    /// Greatest number.
    Max,
    /// The `p`-th percentile (1..=99), by nearest rank: the least number `v`
    /// such that at least `p`% of the numbers are `<= v`.
    Percentile(u8),
}

impl AggFn {
    /// What a read shows when it names no function.
    pub const DEFAULTS: [AggFn; 5] = [AggFn::Count, AggFn::Sum, AggFn::Avg, AggFn::Min, AggFn::Max];

    /// Reads function names, comma-separated (`count, p90`); empty (or only
    /// blanks): [`AggFn::DEFAULTS`].
    pub fn parse_list(text: &str) -> Result<Vec<AggFn>, String> {
        if text.trim().is_empty() {
            return Ok(Self::DEFAULTS.to_vec());
        }
        text.split(',').map(|f| f.trim().parse::<AggFn>()).collect()
    }

    /// Every function with a fixed name, for suggestions.
    pub const NAMED: [&'static str; 9] = ["count", "count_true", "sum", "avg", "min", "max", "p50", "p90", "p99"];

    /// Reads a function name: `count`, `count_true`, `sum`, `avg` (or `mean`),
    /// `min`, `max`, `median`, `p1` ... `p99`.
    pub fn parse(name: &str) -> Option<AggFn> {
        Some(match name {
            "count" => AggFn::Count,
            "count_true" => AggFn::CountTrue,
            "sum" => AggFn::Sum,
            "avg" | "mean" => AggFn::Avg,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "median" => AggFn::Percentile(50),
            _ => {
                let digits = name.strip_prefix('p')?;
                if digits.starts_with('0') {
                    return None;
                }
                match digits.parse::<u8>() {
                    Ok(p @ 1..=99) => AggFn::Percentile(p),
                    _ => return None,
                }
            }
        })
    }

    /// Whether the function needs every number, not only running totals.
    pub fn needs_values(self) -> bool {
        matches!(self, AggFn::Percentile(_))
    }
}

impl fmt::Display for AggFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggFn::Count => f.write_str("count"),
            AggFn::CountTrue => f.write_str("count_true"),
            AggFn::Sum => f.write_str("sum"),
            AggFn::Avg => f.write_str("avg"),
            AggFn::Min => f.write_str("min"),
            AggFn::Max => f.write_str("max"),
            AggFn::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

impl FromStr for AggFn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AggFn::parse(s).ok_or_else(|| format!("unknown aggregate function `{s}`"))
    }
}

impl From<AggFn> for String {
    fn from(f: AggFn) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for AggFn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// A number as the numeric functions see it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    /// The number a value counts as: booleans are 1 and 0, strings none.
    pub fn of(value: &Value) -> Option<Number> {
        match value {
            Value::Int(i) => Some(Number::Int(*i)),
            Value::Float(x) => Some(Number::Float(*x)),
            Value::Bool(b) => Some(Number::Int(i64::from(*b))),
            Value::Str(_) => None,
        }
    }

    fn as_value(self) -> Value {
        match self {
            Number::Int(i) => Value::Int(i),
            Number::Float(x) => Value::Float(x),
        }
    }

    fn total_cmp(&self, other: &Number) -> Ordering {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => return a.cmp(b),
            (Number::Float(a), Number::Float(b)) => return a.total_cmp(b),
            _ => {}
        }
        self.as_value()
            .partial_order(&other.as_value())
            .unwrap_or_else(|| self.as_f64().total_cmp(&other.as_f64()))
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(x) => x,
        }
    }
}

/// The fold of some values of one group at one instant: enough to finish
/// every [`AggFn`]; partials of the shards of a group merge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Keys with a known value.
    pub keys: u64,
    /// Keys whose value is `true`.
    pub trues: u64,
    /// Values that are numbers.
    pub numbers: u64,
    int_sum: i128,
    float_sum: f64,
    /// Neumaier compensation of `float_sum`.
    float_error: f64,
    floats: bool,
    min: Option<Number>,
    max: Option<Number>,
    /// Every number, kept only when a percentile is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<Vec<Number>>,
}

impl Partial {
    /// An empty fold; `keep_values` keeps every number (for percentiles).
    pub fn new(keep_values: bool) -> Partial {
        Partial {
            values: keep_values.then(Vec::new),
            ..Partial::default()
        }
    }

    /// An empty fold that keeps what `functions` need.
    pub fn for_functions(functions: &[AggFn]) -> Partial {
        Partial::new(functions.iter().any(|f| f.needs_values()))
    }

    /// Adds one key's value.
    pub fn add(&mut self, value: &Value) {
        self.keys += 1;
        if *value == Value::Bool(true) {
            self.trues += 1;
        }
        if let Some(n) = Number::of(value) {
            self.add_number(n);
        }
    }

    fn add_number(&mut self, n: Number) {
        self.numbers += 1;
        match n {
            Number::Int(i) => self.int_sum += i128::from(i),
            Number::Float(x) => {
                self.floats = true;
                self.add_float(x);
            }
        }
        if self.min.is_none_or(|m| n.total_cmp(&m) == Ordering::Less) {
            self.min = Some(n);
        }
        if self.max.is_none_or(|m| n.total_cmp(&m) == Ordering::Greater) {
            self.max = Some(n);
        }
        if let Some(values) = &mut self.values {
            values.push(n);
        }
    }

    fn add_float(&mut self, x: f64) {
        let sum = self.float_sum + x;
        self.float_error += if self.float_sum.abs() >= x.abs() {
            (self.float_sum - sum) + x
        } else {
            (x - sum) + self.float_sum
        };
        self.float_sum = sum;
    }

    /// Adds another fold of the same group and instant (another shard's).
    pub fn merge(&mut self, other: &Partial) {
        self.keys += other.keys;
        self.trues += other.trues;
        self.numbers += other.numbers;
        self.int_sum += other.int_sum;
        self.add_float(other.float_sum);
        self.float_error += other.float_error;
        self.floats |= other.floats;
        for n in [other.min, other.max].into_iter().flatten() {
            if self.min.is_none_or(|m| n.total_cmp(&m) == Ordering::Less) {
                self.min = Some(n);
            }
            if self.max.is_none_or(|m| n.total_cmp(&m) == Ordering::Greater) {
                self.max = Some(n);
            }
        }
        match (&mut self.values, &other.values) {
            (Some(mine), Some(theirs)) => mine.extend_from_slice(theirs),
            // The other fold dropped its numbers: no percentile can be told.
            (mine @ Some(_), None) if other.numbers > 0 => *mine = None,
            _ => {}
        }
    }

    /// The value of `function` over the fold; `None` is Unknown (a numeric
    /// function over no numbers, or a percentile of a fold that did not keep
    /// its values).
    pub fn finish(&self, function: AggFn) -> Option<Value> {
        match function {
            AggFn::Count => Some(Value::Int(self.keys as i64)),
            AggFn::CountTrue => Some(Value::Int(self.trues as i64)),
            _ if self.numbers == 0 => None,
            AggFn::Sum => Some(self.sum()),
            AggFn::Avg => {
                let total = self.int_sum as f64 + self.float_sum + self.float_error;
                Some(Value::Float(total / self.numbers as f64))
            }
            AggFn::Min => self.min.map(Number::as_value),
            AggFn::Max => self.max.map(Number::as_value),
            AggFn::Percentile(p) => {
                let values = self.values.as_ref()?;
                let rank = (usize::from(p) * values.len()).div_ceil(100).max(1);
                let mut sorted = values.clone();
                let (_, nth, _) = sorted.select_nth_unstable_by(rank - 1, Number::total_cmp);
                Some(nth.as_value())
            }
        }
    }

    fn sum(&self) -> Value {
        if self.floats {
            Value::Float(self.int_sum as f64 + self.float_sum + self.float_error)
        } else {
            match i64::try_from(self.int_sum) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Float(self.int_sum as f64),
            }
        }
    }
}
