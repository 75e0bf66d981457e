//! The driver component: where a job starts.
//!
//! A `Driver(job)` agent takes the job's DSL, checks it (so that a typo is
//! reported with its line and column without a round trip), and asks `Core` to
//! plan and register it; submitting the same DSL again returns the same plan.

#![deny(missing_docs)]

use timeline_api::views::JobError;

/// Checks a job's DSL before it is sent to `Core`.
pub fn check(query: &str) -> Result<(), JobError> {
    timeline::dsl::parse_query(query)
        .map(|_| ())
        .map_err(|e| JobError::new(query, "bad_query", format!("invalid query: {e}"), Some(&e)))
}

#[cfg(target_family = "wasm")]
mod agent;

#[cfg(test)]
mod tests {
    #[test]
    fn typos_are_caught_before_core() {
        let e = super::check("duration_where(has_existd(a == 1))").unwrap_err();
        assert_eq!((e.line, e.column), (Some(1), Some(16)));
        assert!(super::check("duration_where(has_existed(a == 1))").is_ok());
        assert!(super::check("n = has_existed(a == 1) | aggregate(count_true)").is_ok());
    }
}
