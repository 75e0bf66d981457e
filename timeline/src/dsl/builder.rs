//! Building queries in Rust, in the article's style:
//!
//! ```
//! use timeline::dsl::*;
//! use std::time::Duration;
//!
//! let cirr = tl_duration_where(
//!     tl_has_existed(col("playerStateChange").equal_to("play"))
//!         & !tl_has_existed_within(col("userAction").equal_to("seek"), Duration::from_secs(5))
//!         & tl_latest_event_to_state(col("playerStateChange")).equal_to("buffer")
//!         & tl_latest_event_to_state(col("cdnChange")).equal_to("CDN1"),
//! );
//! assert!(cirr.check().is_ok());
//! ```

use std::time::Duration;

use smol_str::SmolStr;

use crate::op::{TimeLineOp, Window};
use crate::predicate::Predicate;
use crate::value::{CmpOp, Value};

/// A column of the events, to compare in a predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column(SmolStr);

/// The column `name`.
pub fn col(name: &str) -> Column {
    Column(SmolStr::new(name))
}

macro_rules! comparisons {
    ($($(#[$doc:meta])* $method:ident => $op:expr;)*) => {
        impl Column {
            $($(#[$doc])* pub fn $method(&self, value: impl Into<Value>) -> Predicate {
                Predicate::compare(&self.0, $op, value)
            })*
        }
        impl TimeLineOp {
            $($(#[$doc])* pub fn $method(self, value: impl Into<Value>) -> TimeLineOp {
                self.compare($op, value)
            })*
        }
    };
}

comparisons! {
    /// `== value`
    equal_to => CmpOp::Eq;
    /// `!= value`
    not_equal_to => CmpOp::Ne;
    /// `> value`
    greater_than => CmpOp::Gt;
    /// `>= value`
    greater_than_or_equal_to => CmpOp::Ge;
    /// `< value`
    less_than => CmpOp::Lt;
    /// `<= value`
    less_than_or_equal_to => CmpOp::Le;
}

/// `has_existed(predicate)`
pub fn tl_has_existed(predicate: Predicate) -> TimeLineOp {
    TimeLineOp::has_existed(predicate)
}

/// `has_existed_within(predicate, within)`, the window rounded down to whole ms.
pub fn tl_has_existed_within(predicate: Predicate, within: Duration) -> TimeLineOp {
    TimeLineOp::has_existed_within(predicate, i64::try_from(within.as_millis()).unwrap_or(i64::MAX))
}

/// `latest_event_to_state(column)`
pub fn tl_latest_event_to_state(column: Column) -> TimeLineOp {
    TimeLineOp::latest_event_to_state(&column.0)
}

/// `latest_event_to_state(column)`, as the paper spells it.
pub fn tl_event_to_state(column: Column) -> TimeLineOp {
    tl_latest_event_to_state(column)
}

/// `duration_where(timeline)`
pub fn tl_duration_where(timeline: TimeLineOp) -> TimeLineOp {
    timeline.duration_where()
}

/// `duration_in_cur_state(timeline)`
pub fn tl_duration_in_cur_state(timeline: TimeLineOp) -> TimeLineOp {
    timeline.duration_in_cur_state()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `count_where(timeline)`
pub fn tl_count_where(timeline: TimeLineOp) -> TimeLineOp {
    timeline.count_where()
}

/// `tumbling(width)`, whole ms.
pub fn tumbling(width: Duration) -> Window {
    Window::Tumbling { width_ms: ms(width) }
}

/// `sliding(width)`, whole ms.
pub fn sliding(width: Duration) -> Window {
    Window::Sliding { width_ms: ms(width) }
}

/// `duration_where(timeline, window)`
pub fn tl_duration_where_in(timeline: TimeLineOp, window: Window) -> TimeLineOp {
    timeline.duration_where_in(window)
}

/// `count_where(timeline, window)`
pub fn tl_count_where_in(timeline: TimeLineOp, window: Window) -> TimeLineOp {
    timeline.count_where_in(window)
}

/// `time_since(predicate)`
pub fn tl_time_since(predicate: Predicate) -> TimeLineOp {
    TimeLineOp::time_since(predicate)
}

/// `previous(timeline)`
pub fn tl_previous(timeline: TimeLineOp) -> TimeLineOp {
    timeline.previous()
}

/// `true_within(timeline, within)`, whole ms.
pub fn tl_true_within(timeline: TimeLineOp, within: Duration) -> TimeLineOp {
    timeline.true_within(ms(within))
}

/// `sequence(steps..., within(within))`; `None`: no bound.
pub fn tl_sequence(steps: Vec<Predicate>, within: Option<Duration>) -> TimeLineOp {
    TimeLineOp::sequence(steps, within.map(ms))
}

/// `absent_after(start, completion, within)`, whole ms.
pub fn tl_absent_after(start: Predicate, completion: Predicate, within: Duration) -> TimeLineOp {
    TimeLineOp::absent_after(start, completion, ms(within))
}

impl std::ops::Not for TimeLineOp {
    type Output = TimeLineOp;
    fn not(self) -> TimeLineOp {
        self.negate()
    }
}

impl std::ops::BitAnd for TimeLineOp {
    type Output = TimeLineOp;
    fn bitand(self, rhs: TimeLineOp) -> TimeLineOp {
        self.and(rhs)
    }
}

impl std::ops::BitOr for TimeLineOp {
    type Output = TimeLineOp;
    fn bitor(self, rhs: TimeLineOp) -> TimeLineOp {
        self.or(rhs)
    }
}
