//! The optional header of a query: the stream it reads, and how that
//! stream's fields are named.
//!
//! ```text
//! from cards key card;
//! from sensors key machine time ts id seq;
//! ```
//!
//! A query without a header reads the default stream. The header is read
//! from the tokens before the program; `from` is a keyword only there.

use smol_str::SmolStr;

use super::error::DslError;
use super::lexer::{Span, Token};
use crate::stream::StreamRef;

/// Takes the header off the front of `tokens`, if there is one.
pub(crate) fn split(source: &str, tokens: Vec<(Token, Span)>) -> Result<(StreamRef, Vec<(Token, Span)>), DslError> {
    let starts_header = matches!(
        tokens.as_slice(),
        [(Token::Ident(from), _), (Token::Ident(_) | Token::Str(_), _), ..] if from == "from"
    );
    if !starts_header {
        return Ok((StreamRef::default(), tokens));
    }
    let mut rest = tokens.into_iter();
    let (_, from_span) = rest.next().expect("matched above");
    let (stream, _) = name(source, rest.next(), &from_span, "a stream name after `from`")?;
    let mut header = StreamRef {
        name: Some(stream),
        ..Default::default()
    };
    let mut last = from_span.clone();
    loop {
        match rest.next() {
            Some((Token::Ctrl(';'), _)) => return Ok((header, rest.collect())),
            Some((Token::Ident(word), span)) if matches!(word.as_str(), "key" | "time" | "id") => {
                let (field, field_span) = name(source, rest.next(), &span, &format!("a field name after `{word}`"))?;
                let slot = match word.as_str() {
                    "key" => &mut header.key,
                    "time" => &mut header.time,
                    _ => &mut header.id,
                };
                if slot.is_some() {
                    return Err(DslError::new(source, span, format!("`{word}` is given twice"))
                        .help("name each of key, time and id once"));
                }
                *slot = Some(field);
                last = field_span;
            }
            Some((other, span)) => {
                return Err(
                    DslError::new(source, span, format!("unexpected {other} in the stream header"))
                        .help("the header is `from <stream> [key <field>] [time <field>] [id <field>];`"),
                );
            }
            None => {
                return Err(
                    DslError::new(source, last.end..last.end + 1, "the stream header has no `;`")
                        .help("end it with `;`: from cards key card;"),
                );
            }
        }
    }
}

fn name(source: &str, token: Option<(Token, Span)>, after: &Span, what: &str) -> Result<(SmolStr, Span), DslError> {
    match token {
        Some((Token::Ident(n) | Token::Str(n), span)) if !n.is_empty() => Ok((SmolStr::new(n), span)),
        Some((other, span)) => Err(DslError::new(source, span, format!("expected {what}, found {other}"))),
        None => Err(DslError::new(
            source,
            after.end..after.end + 1,
            format!("expected {what}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::dsl::parse_query;

    #[test]
    fn a_header_names_the_stream_and_its_fields() {
        let q = parse_query("from sensors key machine time ts id seq;\nhas_existed(temp > 90)").unwrap();
        assert_eq!(q.stream.name(), "sensors");
        let fields = (
            q.stream.key.as_deref(),
            q.stream.time.as_deref(),
            q.stream.id.as_deref(),
        );
        assert_eq!(fields, (Some("machine"), Some("ts"), Some("seq")));
        let q = parse_query("from \"my-stream\"; has_existed(a == 1)").unwrap();
        assert_eq!(q.stream.name(), "my-stream");
        let q = parse_query("has_existed(from == 1)").unwrap();
        assert_eq!(q.stream.name, None, "`from` is a keyword only in front");
        assert_eq!(q.columns[0].name, "from");
    }

    #[test]
    fn a_bad_header_says_what_and_where() {
        for (query, line, column, says) in [
            ("from cards key card\nhas_existed(a == 1)", 2, 1, "unexpected"),
            (
                "from cards key card key c2; has_existed(a == 1)",
                1,
                21,
                "`key` is given twice",
            ),
            (
                "from cards key; has_existed(a == 1)",
                1,
                15,
                "expected a field name after `key`",
            ),
            ("from cards key card", 1, 20, "has no `;`"),
            ("from cards when x; has_existed(a == 1)", 1, 12, "unexpected"),
        ] {
            let e = parse_query(query).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{query}: {e}");
            assert!(e.message.contains(says), "{query}: {}", e.message);
        }
    }
}
