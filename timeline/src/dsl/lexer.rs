//! Characters to tokens.

use std::fmt;
use std::ops::Range;

use chumsky::prelude::*;

use super::error::DslError;

pub(crate) type Span = Range<usize>;

/// A token of the DSL. Numbers keep their text so that tokens are `Eq + Hash`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    Float(String),
    /// A duration literal in milliseconds, with its text.
    Duration(i64, String),
    Let,
    True,
    False,
    /// An operator: `&&`, `||`, `!`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `=`,
    /// `|` (to an aggregate), `+`, `-`, `*`, `/`, and the likely typo `&`.
    Op(&'static str),
    /// `(`, `)`, `,`, `;` or `.`
    Ctrl(char),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "`{s}`"),
            Token::Str(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
            Token::Int(i) => write!(f, "`{i}`"),
            Token::Float(s) | Token::Duration(_, s) => write!(f, "`{s}`"),
            Token::Let => f.write_str("`let`"),
            Token::True => f.write_str("`true`"),
            Token::False => f.write_str("`false`"),
            Token::Op(op) => write!(f, "`{op}`"),
            Token::Ctrl(c) => write!(f, "`{c}`"),
        }
    }
}

/// Milliseconds per duration unit.
const UNITS: [(&str, i64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

fn lexer() -> impl Parser<char, Vec<(Token, Span)>, Error = Simple<char>> {
    let digits = filter(|c: &char| c.is_ascii_digit())
        .repeated()
        .at_least(1)
        .collect::<String>();
    // A minus sign is an operator: `a-1` is `a - 1`, and `-1` is negated by the parser.
    let number = digits
        .then(
            just('.')
                .ignore_then(
                    filter(|c: &char| c.is_ascii_digit())
                        .repeated()
                        .at_least(1)
                        .collect::<String>(),
                )
                .or_not(),
        )
        .then(
            filter(|c: &char| c.is_ascii_alphabetic())
                .repeated()
                .collect::<String>(),
        )
        .try_map(|((int, frac), unit), span: Span| {
            let text = match &frac {
                Some(frac) => format!("{int}.{frac}"),
                None => int.clone(),
            };
            if unit.is_empty() {
                return match frac {
                    Some(_) => Ok(Token::Float(text)),
                    None => text
                        .parse::<i64>()
                        .map(Token::Int)
                        .map_err(|_| Simple::custom(span, format!("integer `{text}` is out of range"))),
                };
            }
            let Some((_, per_unit)) = UNITS.iter().find(|(u, _)| *u == unit) else {
                return Err(Simple::custom(
                    span,
                    format!("unknown duration unit `{unit}` (units: ms, s, m, h, d)"),
                ));
            };
            if frac.is_some() {
                return Err(Simple::custom(
                    span,
                    format!("a duration is a positive whole number of units, found `{text}{unit}`"),
                ));
            }
            text.parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(*per_unit))
                .map(|ms| Token::Duration(ms, format!("{text}{unit}")))
                .ok_or_else(|| Simple::custom(span, format!("duration `{text}{unit}` is out of range")))
        });

    let escape = just('\\').ignore_then(choice((
        just('\\'),
        just('"'),
        just('\''),
        just('n').to('\n'),
        just('t').to('\t'),
        just('r').to('\r'),
    )));
    let string = |quote: char| {
        just(quote)
            .ignore_then(
                filter(move |c: &char| *c != '\\' && *c != quote && *c != '\n')
                    .or(escape)
                    .repeated(),
            )
            .then_ignore(just(quote))
            .collect::<String>()
            .map(Token::Str)
    };

    let op = choice((
        just("&&").to("&&"),
        just("||").to("||"),
        just("==").to("=="),
        just("!=").to("!="),
        just("<=").to("<="),
        just(">=").to(">="),
        just("<").to("<"),
        just(">").to(">"),
        just("!").to("!"),
        just("=").to("="),
        just("&").to("&"),
        just("|").to("|"),
        just("+").to("+"),
        just("-").to("-"),
        just("*").to("*"),
        just("/").to("/"),
    ))
    .map(Token::Op);

    let ctrl = one_of("(),;.").map(Token::Ctrl);

    let word = text::ident().map(|s: String| match s.as_str() {
        "let" => Token::Let,
        "true" => Token::True,
        "false" => Token::False,
        _ => Token::Ident(s),
    });

    // No error recovery: only the first error is reported, and retrying
    // after each bad character is quadratic in a long run of them.
    let token = choice((number, string('"'), string('\''), op, ctrl, word));

    let comment = just("//").then(filter(|c: &char| *c != '\n').repeated()).ignored();
    let trivia = choice((comment, filter(|c: &char| c.is_whitespace()).ignored())).repeated();

    trivia
        .ignore_then(
            token
                .map_with_span(|tok, span| (tok, span))
                .then_ignore(trivia)
                .repeated(),
        )
        .then_ignore(end())
}

/// Splits `source` into tokens, or reports the first character that starts none.
pub(crate) fn lex(source: &str) -> Result<Vec<(Token, Span)>, DslError> {
    let (tokens, errors) = lexer().parse_recovery(source);
    if let Some(error) = errors.into_iter().max_by_key(|e| e.span().start) {
        if let Some(open) = unterminated_string(source) {
            return Err(DslError::new(source, open..open + 1, "unterminated string")
                .label("this string has no closing quote")
                .help("close it with the same quote on the same line"));
        }
        let span = error.span();
        let message = match error.reason() {
            chumsky::error::SimpleReason::Custom(message) => message.clone(),
            _ => match error.found() {
                Some(c) => format!("unexpected character `{c}`"),
                None => "unexpected end of input".to_string(),
            },
        };
        return Err(DslError::new(source, span, message));
    }
    Ok(tokens.unwrap_or_default())
}

/// Character offset of a quote that opens a string never closed on its line.
fn unterminated_string(source: &str) -> Option<usize> {
    let mut chars = source.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' if chars.peek().map(|p| p.1) == Some('/') => while chars.next_if(|p| p.1 != '\n').is_some() {},
            '"' | '\'' => loop {
                match chars.next() {
                    None | Some((_, '\n')) => return Some(i),
                    Some((_, '\\')) => {
                        chars.next();
                    }
                    Some((_, q)) if q == c => break,
                    Some(_) => {}
                }
            },
            _ => {}
        }
    }
    None
}
