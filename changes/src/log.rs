//! A job's changes in memory: ids given in order, pages read after an id.
//! Pure, so that it is tested natively; the `Changes` agent keeps one.

use serde::{Deserialize, Serialize};
use timeline_api::views::{ChangeView, ChangesView};

/// Most changes a page holds.
pub const MAX_LIMIT: usize = 10_000;
/// Changes a page holds when no limit is given.
pub const DEFAULT_LIMIT: usize = 1000;

/// Every change of one job, by id.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ChangeLog {
    changes: Vec<ChangeView>,
}

impl ChangeLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest id (0: none).
    pub fn last(&self) -> u64 {
        self.changes.last().map_or(0, |c| c.id)
    }

    /// Gives each of `changes` the next id and keeps it; the last id.
    pub fn record(&mut self, changes: Vec<ChangeView>) -> u64 {
        for mut change in changes {
            change.id = self.last() + 1;
            self.changes.push(change);
        }
        self.last()
    }

    /// Up to `limit` changes after `after` that `condition` (DSL) keeps.
    pub fn page(
        &self,
        job: &str,
        after: u64,
        limit: Option<u32>,
        condition: Option<&str>,
    ) -> Result<ChangesView, String> {
        let limit = match limit.map(|l| l as usize) {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
            Some(l) => return Err(format!("`limit` is 1 to {MAX_LIMIT}, not {l}")),
        };
        let condition = condition
            .filter(|c| !c.is_empty())
            .map(|c| {
                timeline::dsl::parse_condition(c).map_err(|e| {
                    format!(
                        "bad `where` condition at line {}, column {}: {}",
                        e.line, e.column, e.message
                    )
                })
            })
            .transpose()?;
        // Ids are 1, 2, 3, ...: the change after `after` is at index `after`.
        let from = usize::try_from(after).unwrap_or(usize::MAX).min(self.changes.len());
        let mut page = ChangesView::empty(job, after, self.last());
        page.fill(self.changes[from..].iter().cloned(), limit, condition.as_ref());
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeline::changes::Change;
    use timeline::{SpanValue, Value};

    fn change(key: &str, new: bool) -> ChangeView {
        ChangeView::of_key(
            "alert",
            key,
            &Change {
                from: 5,
                until: None,
                old: SpanValue::Unknown,
                new: SpanValue::Known(Value::Bool(new)),
            },
        )
    }

    #[test]
    fn ids_follow_each_other_and_pages_resume_after_an_id() {
        let mut log = ChangeLog::new();
        assert_eq!(log.record(vec![change("a", false), change("b", true)]), 2);
        assert_eq!(log.record(vec![change("a", true)]), 3);
        let page = log.page("j", 1, Some(1), None).unwrap();
        assert_eq!(
            (page.changes[0].id, page.changes[0].key.as_deref(), page.next),
            (2, Some("b"), 2)
        );
        let alerts = log.page("j", 0, None, Some("value == true && key == \"a\"")).unwrap();
        assert_eq!(alerts.changes.iter().map(|c| c.id).collect::<Vec<_>>(), [3]);
        assert_eq!((alerts.next, alerts.last), (3, 3));
        assert_eq!(log.page("j", 99, None, None).unwrap().changes, vec![]);
        assert!(log.page("j", 0, Some(0), None).unwrap_err().contains("limit"));
        assert!(
            log.page("j", 0, None, Some("value =="))
                .unwrap_err()
                .contains("line 1, column 9")
        );
    }
}
