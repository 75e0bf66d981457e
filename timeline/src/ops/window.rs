//! Windows for `duration_where` and `count_where`: `tumbling(w)` (fixed
//! windows aligned to time 0) and `sliding(w)` (the last `w` ms).

use serde::{Deserialize, Serialize};

use crate::timeline::Timeline;
use crate::value::Time;

/// Most spans a windowed operator writes for one key; past them its value is
/// Unknown (a window of 1 ms over years would otherwise take all memory).
pub const MAX_WINDOW_SPANS: usize = 1 << 20;

/// The window an aggregate over time is taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// `tumbling(w)`: `[floor(t / w) * w, ...)`, windows aligned to time 0.
    Tumbling {
        /// Width in ms, > 0.
        width_ms: i64,
    },
    /// `sliding(w)`: the last `w` ms before `t`.
    Sliding {
        /// Width in ms, > 0.
        width_ms: i64,
    },
}

impl Window {
    /// Its width in ms (at least 1).
    pub fn width(&self) -> i64 {
        match *self {
            Window::Tumbling { width_ms } | Window::Sliding { width_ms } => width_ms.max(1),
        }
    }

    /// The DSL: `tumbling(60000ms)`.
    pub fn dsl(&self) -> String {
        match self {
            Window::Tumbling { .. } => format!("tumbling({}ms)", self.width()),
            Window::Sliding { .. } => format!("sliding({}ms)", self.width()),
        }
    }
}

/// The start of the tumbling window of width `w` that holds `t`.
pub fn window_start(t: Time, w: i64) -> Time {
    t.div_euclid(w).saturating_mul(w)
}

/// The stretches where `input` is true, as `[start, end)` (`None`: open).
pub fn true_stretches(input: &Timeline) -> Vec<(Time, Option<Time>)> {
    let mut out: Vec<(Time, Option<Time>)> = Vec::new();
    for (i, span) in input.spans().iter().enumerate() {
        if span.value.as_bool() == Some(true) {
            out.push((span.start, input.end_of(i)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_zero_for_negative_times_too() {
        assert_eq!(window_start(59_999, 60_000), 0);
        assert_eq!(window_start(60_000, 60_000), 60_000);
        assert_eq!(window_start(-1, 60_000), -60_000);
        assert_eq!(window_start(i64::MIN, 7), i64::MIN);
    }
}
