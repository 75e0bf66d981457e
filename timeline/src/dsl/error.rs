//! DSL errors and warnings: what, where (line, column, span) and a hint.

use std::fmt;
use std::ops::Range;

use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};
use serde::Serialize;

/// A place in the query (a character range) and a note about it.
pub type Note = (Range<usize>, String);

/// An error in a query, with its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DslError {
    /// What is wrong.
    pub message: String,
    /// 1-based line of the error.
    pub line: usize,
    /// 1-based column (in characters) of the error.
    pub column: usize,
    /// Character range of the offending text.
    pub span: Range<usize>,
    /// A short note under the caret.
    pub label: String,
    /// A suggestion, such as the nearest known name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// A warning rather than an error: the query runs, but is probably wrong.
    #[serde(skip)]
    pub warning: bool,
    /// The query limit exceeded, when that is the error.
    #[serde(skip)]
    pub limit: Option<super::limits::QueryLimit>,
    /// Another place that explains the error; see [`DslError::notes`].
    /// (Boxed: errors travel by value through the checker.)
    #[serde(skip)]
    note: Option<Box<Note>>,
}

impl DslError {
    pub(crate) fn new(source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let (line, column) = line_column(source, span.start);
        DslError {
            message: message.into(),
            line,
            column,
            span,
            label: "here".to_string(),
            help: None,
            warning: false,
            limit: None,
            note: None,
        }
    }

    /// Adds `note` under the text at `span` (one note: a second replaces it).
    pub(crate) fn note(mut self, span: Range<usize>, note: impl Into<String>) -> Self {
        self.note = Some(Box::new((span, note.into())));
        self
    }

    /// More places that explain the error (such as the `(` that an error at
    /// the end of the query leaves unclosed), each with its note.
    pub fn notes(&self) -> &[Note] {
        self.note.as_deref().map_or(&[], std::slice::from_ref)
    }

    pub(crate) fn into_warning(mut self) -> Self {
        self.warning = true;
        self
    }

    pub(crate) fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub(crate) fn limit(mut self, limit: super::limits::QueryLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The error drawn under the source with a caret, as compilers do; `name`
    /// is the file name shown (e.g. `query.tl`). No colours.
    pub fn render(&self, source: &str, name: &str) -> String {
        // A query over the size limit is shown up to the limit only.
        let source = match self.limit {
            Some(super::limits::QueryLimit::Size) => match source.char_indices().nth(self.span.end) {
                Some((at, _)) => &source[..at],
                None => source,
            },
            _ => source,
        };
        // A caret at the end of the query needs a place to stand on.
        let length = source.chars().count();
        let padded;
        let source = if self.span.end.max(self.span.start + 1) > length {
            padded = format!("{source} ");
            padded.as_str()
        } else {
            source
        };
        let end = self.span.end.max(self.span.start + 1);
        let kind = if self.warning {
            ReportKind::Warning
        } else {
            ReportKind::Error
        };
        let mut report = Report::build(kind, (name, self.span.start..end))
            .with_config(Config::default().with_color(false).with_index_type(IndexType::Char))
            .with_message(&self.message)
            .with_label(Label::new((name, self.span.start..end)).with_message(&self.label));
        for (span, note) in self.notes() {
            let end = span.end.max(span.start + 1);
            report = report.with_label(Label::new((name, span.start..end)).with_message(note));
        }
        if let Some(help) = &self.help {
            report = report.with_help(help);
        }
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = report.finish().write((name, Source::from(source)), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl fmt::Display for DslError {
    /// `line 3, column 7: message (help: ...)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DslError {}

/// 1-based line and column of character offset `offset`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for c in source.chars().take(offset) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}
