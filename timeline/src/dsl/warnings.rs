//! Warnings about a query against the stream it reads: columns no event has
//! carried, comparisons with a literal of a type the column never had, and
//! the stream's key, time or id field used as a column. They are warnings,
//! not errors: the column may still arrive.

use super::error::DslError;
use super::{ColumnUse, Query};
use crate::stream::{Columns, StreamSpec, ValueType};

/// The warnings for `query` (whose text is `source`) on `stream`, whose
/// events so far carried `columns`; none about columns before any event.
pub fn warnings(source: &str, query: &Query, stream: &StreamSpec, columns: &Columns) -> Vec<DslError> {
    let mut out = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    for ColumnUse {
        name,
        span,
        compared_with,
    } in &query.columns
    {
        if stream.is_field(name) {
            if !named.contains(&name.as_str()) {
                let role = if *name == stream.key {
                    "key"
                } else if *name == stream.time {
                    "time"
                } else {
                    "id"
                };
                out.push(
                    DslError::new(
                        source,
                        span.clone(),
                        format!("`{name}` is the {role} field of stream `{}`, not a column", stream.name),
                    )
                    .label("never a column")
                    .help("every event has it, so a test of it says nothing of the key's state")
                    .into_warning(),
                );
                named.push(name);
            }
            continue;
        }
        if columns.is_empty() {
            continue;
        }
        let Some(stats) = columns.get(name) else {
            if !named.contains(&name.as_str()) {
                let known = columns.sorted();
                let nearest = known
                    .iter()
                    .map(|c| (strsim::jaro_winkler(&c.name, name), c.name.as_str()))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                let help = match nearest {
                    Some((_, n)) => format!("did you mean `{n}`?"),
                    None => format!(
                        "its columns: {}",
                        known
                            .iter()
                            .map(|c| format!("`{}`", c.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                out.push(
                    DslError::new(
                        source,
                        span.clone(),
                        format!("no event of stream `{}` has carried the column `{name}`", stream.name),
                    )
                    .label("unknown column")
                    .help(help)
                    .into_warning(),
                );
                named.push(name);
            }
            continue;
        };
        if let Some(literal) = compared_with {
            let ty = ValueType::of(literal);
            if !stats.types.iter().any(|t| t.compares_with(ty)) {
                let seen: Vec<&str> = stats.types.iter().map(|t| t.name()).collect();
                out.push(
                    DslError::new(
                        source,
                        span.clone(),
                        format!(
                            "`{name}` is compared with {} {}, but its values have been {}",
                            if ty == ValueType::Int { "an" } else { "a" },
                            ty.name(),
                            seen.join(" or ")
                        ),
                    )
                    .label("never true")
                    .help(format!("compare it with a {} value", seen[0]))
                    .into_warning(),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::parse_query;

    fn warn(query: &str, events: &[&str]) -> Vec<DslError> {
        let spec = StreamSpec::default();
        let mut columns = Columns::new();
        for e in events {
            columns.observe(&spec.parser().parse(e).unwrap());
        }
        warnings(query, &parse_query(query).unwrap(), &spec, &columns)
    }

    const EVENTS: &[&str] = &[
        r#"{"session_id":"a","time":1,"state":"play","n":2}"#,
        r#"{"session_id":"a","time":2,"n":2.5}"#,
    ];

    #[test]
    fn unknown_columns_name_the_nearest_one_once() {
        let w = warn("has_existed(stte == \"play\") && !has_existed(stte == \"x\")", EVENTS);
        assert_eq!(w.len(), 1, "one warning per column: {w:?}");
        assert_eq!((w[0].line, w[0].column), (1, 13));
        assert_eq!(w[0].help.as_deref(), Some("did you mean `state`?"));
        assert!(w[0].warning);
        let w = warn("has_existed(zzz == 1)", EVENTS);
        assert_eq!(
            w[0].help.as_deref(),
            Some("its columns: `n`, `state`"),
            "no near name: the list"
        );
        assert!(
            warn("has_existed(zzz == 1)", &[]).is_empty(),
            "nothing is known before any event"
        );
    }

    #[test]
    fn literals_of_a_type_the_column_never_had_warn_and_numbers_compare_by_value() {
        let w = warn("latest_event_to_state(state) == 5", EVENTS);
        assert!(
            w[0].message.contains("an integer") && w[0].message.contains("string"),
            "{}",
            w[0].message
        );
        assert!(warn("has_existed(n == 2)", EVENTS).is_empty());
        assert!(warn("has_existed(n > 2.25)", EVENTS).is_empty());
        assert!(
            warn("has_existed(state == \"buffer\")", EVENTS).is_empty(),
            "a new value of a known type"
        );
    }

    #[test]
    fn the_key_time_and_id_fields_are_not_columns() {
        for (query, role) in [
            ("latest_event_to_state(time)", "time"),
            ("has_existed(session_id == \"a\")", "key"),
            ("has_existed(event_id == \"e\")", "id"),
        ] {
            let w = warn(query, &[]);
            assert_eq!(w.len(), 1, "{query}");
            assert!(w[0].message.contains(&format!("the {role} field")), "{}", w[0].message);
        }
    }
}
