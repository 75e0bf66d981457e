//! Values of columns and timelines, and how they compare.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

/// Event time: milliseconds since an epoch of the user's choosing.
pub type Time = i64;

/// The earliest event time the contract admits: -2^62 ms.
pub const MIN_TIME: Time = -(1 << 62);

/// The latest event time the contract admits: 2^62 ms.
pub const MAX_TIME: Time = 1 << 62;

/// `ms` if it lies in [[`MIN_TIME`], [`MAX_TIME`]], else an error naming the bounds.
pub fn bounded_time(ms: i128) -> Result<Time, String> {
    if (i128::from(MIN_TIME)..=i128::from(MAX_TIME)).contains(&ms) {
        Ok(ms as Time)
    } else {
        Err(format!(
            "{ms} ms is out of range: times must lie in [-2^62, 2^62] ms ({MIN_TIME} to {MAX_TIME})"
        ))
    }
}

/// One value of a column or of a timeline at an instant.
///
/// Integers and floats are distinct variants but compare numerically with each
/// other. Strings are stored inline up to 23 bytes, so the short state names that
/// make up most timelines never allocate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A floating-point number (never NaN when read from JSON or the DSL).
    Float(f64),
    /// A string, compared by byte order.
    Str(SmolStr),
}

impl Value {
    /// A string value.
    pub fn str(s: impl AsRef<str>) -> Self {
        Value::Str(SmolStr::new(s.as_ref()))
    }

    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
        }
    }

    /// The order of two values, or `None` when their types do not compare
    /// (a string with a number, a boolean with anything but a boolean).
    pub fn partial_order(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Int(a), Value::Float(b)) => int_float_order(*a, *b),
            (Value::Float(a), Value::Int(b)) => int_float_order(*b, *a).map(Ordering::reverse),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Str(a), Value::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// `self op other` under the comparison rules of the semantics: numbers
    /// compare numerically, strings by bytes, booleans only with booleans; a
    /// comparison of mismatched types is false, except `!=`, which is true.
    pub fn compare(&self, op: CmpOp, other: &Value) -> bool {
        match self.partial_order(other) {
            Some(ordering) => op.holds(ordering),
            None => op == CmpOp::Ne,
        }
    }

    /// Whether `self` and `other` are one state: values that compare equal
    /// (`2` and `2.0`) are; values of types that do not compare (`1` and
    /// `true`) are not.
    pub fn same_state(&self, other: &Value) -> bool {
        self.partial_order(other) == Some(Ordering::Equal)
    }

    /// Converts a JSON scalar; `None` for null, arrays and objects.
    pub fn from_json(json: &serde_json::Value) -> Option<Value> {
        match json {
            serde_json::Value::Bool(b) => Some(Value::Bool(*b)),
            serde_json::Value::Number(n) => Some(match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64()?),
            }),
            serde_json::Value::String(s) => Some(Value::str(s)),
            _ => None,
        }
    }
}

/// Exact order of an integer and a float (no rounding of large integers).
fn int_float_order(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Every i64 lies in [-2^63, 2^63); floats outside that range order trivially.
    if f >= 9_223_372_036_854_775_808.0 {
        return Some(Ordering::Less);
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Some(Ordering::Greater);
    }
    let truncated = f.trunc();
    match i.cmp(&(truncated as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - truncated)),
        other => Some(other),
    }
}

impl fmt::Display for Value {
    /// Writes the value as a DSL literal: strings quoted, floats with a point.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.fract() == 0.0 && x.is_finite() => write!(f, "{x:.1}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{}", serde_json::Value::String(s.to_string())),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(SmolStr::from(s))
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i64::from(i))
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// A comparison operator: `==`, `!=`, `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// Whether `a op b` holds when `a` and `b` are in `ordering`.
    pub fn holds(self, ordering: Ordering) -> bool {
        match self {
            CmpOp::Eq => ordering == Ordering::Equal,
            CmpOp::Ne => ordering != Ordering::Equal,
            CmpOp::Lt => ordering == Ordering::Less,
            CmpOp::Le => ordering != Ordering::Greater,
            CmpOp::Gt => ordering == Ordering::Greater,
            CmpOp::Ge => ordering != Ordering::Less,
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }

    /// The operator's DSL symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert!(Value::Int(3).compare(CmpOp::Lt, &Value::Float(3.5)));
        assert!(Value::Float(3.0).compare(CmpOp::Eq, &Value::Int(3)));
        assert!(Value::Int(i64::MAX).compare(CmpOp::Lt, &Value::Float(1e19)));
        assert!(Value::Int(-4).compare(CmpOp::Lt, &Value::Float(-3.5)));
        assert!(Value::Int(-3).compare(CmpOp::Gt, &Value::Float(-3.5)));
    }

    #[test]
    fn mismatched_types_are_false_except_not_equal() {
        let s = Value::str("1");
        let i = Value::Int(1);
        for op in [CmpOp::Eq, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge] {
            assert!(!s.compare(op, &i), "{op}");
        }
        assert!(s.compare(CmpOp::Ne, &i));
        assert!(!Value::Bool(true).compare(CmpOp::Eq, &Value::Int(1)));
    }

    #[test]
    fn equal_numbers_are_one_state_and_types_stay_apart() {
        assert!(Value::Int(2).same_state(&Value::Float(2.0)));
        assert!(Value::Float(-0.0).same_state(&Value::Int(0)));
        assert!(!Value::Int(1).same_state(&Value::Bool(true)));
        assert!(!Value::str("2").same_state(&Value::Int(2)));
    }

    #[test]
    fn times_are_bounded_and_the_error_names_the_bounds() {
        assert_eq!(bounded_time(1 << 62), Ok(MAX_TIME));
        assert_eq!(bounded_time(-(1 << 62)), Ok(MIN_TIME));
        let err = bounded_time(i128::from(i64::MAX) + 1).unwrap_err();
        assert!(err.contains("out of range") && err.contains("2^62"), "{err}");
        assert!(bounded_time(MIN_TIME as i128 - 1).is_err());
    }

    #[test]
    fn strings_compare_by_bytes() {
        assert!(Value::str("B").compare(CmpOp::Lt, &Value::str("a")));
        assert!(Value::str("é").compare(CmpOp::Gt, &Value::str("z")));
    }

    #[test]
    fn display_is_a_dsl_literal() {
        assert_eq!(Value::str("a\"b").to_string(), r#""a\"b""#);
        assert_eq!(Value::Float(2.0).to_string(), "2.0");
        assert_eq!(Value::Float(2.5).to_string(), "2.5");
    }
}
