//! Result formats of `timeline eval`: JSON lines, CSV and an aligned table.

use std::io::{self, Write};

use clap::ValueEnum;
use timeline::{SpanView, Value};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header.
    Csv,
    /// An aligned table for reading.
    Table,
}

fn json(value: &Option<Value>) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn plain(value: &Option<Value>) -> String {
    match value {
        None => String::new(),
        Some(Value::Str(s)) => s.to_string(),
        Some(v) => v.to_string(),
    }
}

/// Writes one value per key.
pub fn write_values(out: &mut impl Write, format: Format, rows: &[(&str, Option<Value>)]) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for (key, value) in rows {
                writeln!(
                    out,
                    "{{\"key\":{},\"value\":{}}}",
                    serde_json::Value::from(*key),
                    json(value)
                )?;
            }
        }
        Format::Csv => {
            writeln!(out, "key,value")?;
            for (key, value) in rows {
                writeln!(out, "{},{}", csv_field(key), csv_field(&plain(value)))?;
            }
        }
        Format::Table => {
            let cells: Vec<(String, String)> = rows
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        v.as_ref().map_or("unknown".to_string(), |v| plain(&Some(v.clone()))),
                    )
                })
                .collect();
            let width = cells.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0).max(3);
            writeln!(out, "{:width$}  value", "key")?;
            for (key, value) in cells {
                writeln!(out, "{key:width$}  {value}")?;
            }
        }
    }
    Ok(())
}

/// Writes every key's spans.
pub fn write_timelines(out: &mut impl Write, format: Format, rows: &[(&str, Vec<SpanView>)]) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for (key, spans) in rows {
                let spans = serde_json::to_string(spans).unwrap_or_default();
                writeln!(
                    out,
                    "{{\"key\":{},\"timeline\":{spans}}}",
                    serde_json::Value::from(*key)
                )?;
            }
        }
        Format::Csv => {
            writeln!(out, "key,start,end,value,rising")?;
            for (key, spans) in rows {
                for s in spans {
                    let end = s.end.map(|e| e.to_string()).unwrap_or_default();
                    writeln!(
                        out,
                        "{},{},{end},{},{}",
                        csv_field(key),
                        s.start,
                        csv_field(&plain(&s.value)),
                        s.rising
                    )?;
                }
            }
        }
        Format::Table => {
            let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0).max(3);
            writeln!(out, "{:width$}  spans", "key")?;
            for (key, spans) in rows {
                let text: Vec<String> = spans.iter().map(|s| s.to_string()).collect();
                writeln!(out, "{key:width$}  {}", text.join(" "))?;
            }
        }
    }
    Ok(())
}
