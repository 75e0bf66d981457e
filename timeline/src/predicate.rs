//! Predicates: tests of one event, the argument of `has_existed` and
//! `has_existed_within`.

use std::fmt;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::event::Event;
use crate::value::{CmpOp, Value};

/// A test of one event: column comparisons combined with `&&`, `||` and `!`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Predicate {
    /// `column op value`; false when the event lacks the column.
    Compare {
        /// The column tested.
        column: SmolStr,
        /// The comparison.
        op: CmpOp,
        /// The literal compared with.
        value: Value,
    },
    /// Both hold.
    And(Box<Predicate>, Box<Predicate>),
    /// Either holds.
    Or(Box<Predicate>, Box<Predicate>),
    /// Does not hold.
    Not(Box<Predicate>),
}

impl Predicate {
    /// `column op value`.
    pub fn compare(column: impl AsRef<str>, op: CmpOp, value: impl Into<Value>) -> Self {
        Predicate::Compare {
            column: SmolStr::new(column.as_ref()),
            op,
            value: value.into(),
        }
    }

    /// Whether `event` satisfies the predicate.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Predicate::Compare { column, op, value } => {
                event.column(column).is_some_and(|found| found.compare(*op, value))
            }
            Predicate::And(a, b) => a.matches(event) && b.matches(event),
            Predicate::Or(a, b) => a.matches(event) || b.matches(event),
            Predicate::Not(a) => !a.matches(event),
        }
    }

    /// The same predicate with the operands of every `&&` and `||` in canonical
    /// order, so that `a && b` and `b && a` print (and hash) alike.
    pub fn canonical(&self) -> Predicate {
        match self {
            Predicate::Compare { .. } => self.clone(),
            Predicate::And(a, b) => {
                let (a, b) = ordered(a.canonical(), b.canonical());
                Predicate::And(Box::new(a), Box::new(b))
            }
            Predicate::Or(a, b) => {
                let (a, b) = ordered(a.canonical(), b.canonical());
                Predicate::Or(Box::new(a), Box::new(b))
            }
            Predicate::Not(a) => Predicate::Not(Box::new(a.canonical())),
        }
    }

    /// The columns the predicate reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Predicate::Compare { column, .. } => out.push(column),
            Predicate::And(a, b) | Predicate::Or(a, b) => {
                a.collect_columns(out);
                b.collect_columns(out);
            }
            Predicate::Not(a) => a.collect_columns(out),
        }
    }
}

fn ordered(a: Predicate, b: Predicate) -> (Predicate, Predicate) {
    if b.to_string() < a.to_string() { (b, a) } else { (a, b) }
}

impl fmt::Display for Predicate {
    /// Writes the predicate in the DSL, fully parenthesised where nested.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Predicate::Compare { column, op, value } => {
                crate::id::write_identifier(f, column)?;
                write!(f, " {op} {value}")
            }
            Predicate::And(a, b) => write!(f, "({a} && {b})"),
            Predicate::Or(a, b) => write!(f, "({a} || {b})"),
            Predicate::Not(a) => write!(f, "!({a})"),
        }
    }
}

impl std::ops::BitAnd for Predicate {
    type Output = Predicate;
    fn bitand(self, rhs: Predicate) -> Predicate {
        Predicate::And(Box::new(self), Box::new(rhs))
    }
}

impl std::ops::BitOr for Predicate {
    type Output = Predicate;
    fn bitor(self, rhs: Predicate) -> Predicate {
        Predicate::Or(Box::new(self), Box::new(rhs))
    }
}

impl std::ops::Not for Predicate {
    type Output = Predicate;
    fn not(self) -> Predicate {
        Predicate::Not(Box::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventParser;

    fn event(json: &str) -> Event {
        EventParser::default().parse(json).unwrap()
    }

    #[test]
    fn absent_column_is_false_even_for_not_equal() {
        let e = event(r#"{"session_id":"s","time":1,"a":"x"}"#);
        assert!(!Predicate::compare("b", CmpOp::Ne, "x").matches(&e));
        assert!(
            Predicate::compare("a", CmpOp::Ne, 3).matches(&e),
            "mismatched types: != is true"
        );
        assert!(!Predicate::compare("a", CmpOp::Eq, 3).matches(&e));
    }

    #[test]
    fn combinators() {
        let e = event(r#"{"session_id":"s","time":1,"a":"x","n":5}"#);
        let a = Predicate::compare("a", CmpOp::Eq, "x");
        let n = Predicate::compare("n", CmpOp::Gt, 7);
        assert!(!(a.clone() & n.clone()).matches(&e));
        assert!((a.clone() | n.clone()).matches(&e));
        assert!((!n.clone()).matches(&e));
        assert_eq!((a.clone() & n.clone()).canonical(), (n & a).canonical());
    }
}
