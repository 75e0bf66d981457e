//! Result formats of `timeline eval`: JSON lines, CSV and an aligned table.

use std::io::{self, Write};

use clap::ValueEnum;
use timeline::{Group, SpanView, Value};

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

/// Writes one value per key; `output` names the job's output when it has several.
pub fn write_values(
    out: &mut impl Write,
    format: Format,
    output: Option<&str>,
    rows: &[(&str, Option<Value>)],
) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            let prefix = output.map_or(String::new(), |o| format!("\"output\":{},", serde_json::Value::from(o)));
            for (key, value) in rows {
                writeln!(
                    out,
                    "{{{prefix}\"key\":{},\"value\":{}}}",
                    serde_json::Value::from(*key),
                    json(value)
                )?;
            }
        }
        Format::Csv => {
            match output {
                Some(o) => writeln!(out, "# {o}\nkey,value")?,
                None => writeln!(out, "key,value")?,
            }
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
            if let Some(o) = output {
                writeln!(out, "{o}:")?;
            }
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

/// One group of an aggregate or metric output, for printing.
pub struct GroupLine<'a> {
    /// The output's name.
    pub output: &'a str,
    /// The group.
    pub group: &'a Group,
    /// Keys counted.
    pub keys: u64,
    /// Function (or `value`) and its value.
    pub values: &'a [(String, Option<Value>)],
}

/// Writes aggregate and metric outputs, a line per group.
pub fn write_groups(out: &mut impl Write, format: Format, rows: &[GroupLine<'_>]) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for row in rows {
                // Fields in a fixed order: output, group, keys, then the functions.
                write!(
                    out,
                    "{{\"output\":{},\"group\":{},\"keys\":{}",
                    serde_json::Value::from(row.output),
                    serde_json::to_string(row.group).unwrap_or_else(|_| "null".into()),
                    row.keys
                )?;
                for (name, value) in row.values {
                    write!(out, ",{}:{}", serde_json::Value::from(name.as_str()), json(value))?;
                }
                writeln!(out, "}}")?;
            }
        }
        Format::Csv => {
            writeln!(out, "output,group,keys,function,value")?;
            for row in rows {
                for (name, value) in row.values {
                    writeln!(
                        out,
                        "{},{},{},{name},{}",
                        csv_field(row.output),
                        csv_field(&row.group.label()),
                        row.keys,
                        csv_field(&plain(value))
                    )?;
                }
            }
        }
        Format::Table => {
            let labels: Vec<String> = rows.iter().map(|r| r.group.label()).collect();
            let w_out = rows.iter().map(|r| r.output.chars().count()).max().unwrap_or(0).max(6);
            let w_group = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0).max(5);
            writeln!(out, "{:w_out$}  {:w_group$}  {:>8}  values", "output", "group", "keys")?;
            for (row, label) in rows.iter().zip(&labels) {
                let values: Vec<String> = row
                    .values
                    .iter()
                    .map(|(n, v)| {
                        format!(
                            "{n}={}",
                            v.as_ref().map_or("unknown".to_string(), |v| plain(&Some(v.clone())))
                        )
                    })
                    .collect();
                writeln!(
                    out,
                    "{:w_out$}  {label:w_group$}  {:>8}  {}",
                    row.output,
                    row.keys,
                    values.join("  ")
                )?;
            }
        }
    }
    Ok(())
}
