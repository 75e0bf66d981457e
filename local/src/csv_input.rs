//! Events from CSV with a header row, for `timeline eval`: each row becomes
//! the JSON object the JSONL path reads, so that both formats mean the same.
//!
//! A row's fields are named by the header. An empty field is absent (as JSON
//! `null`). The key and id fields are text; the time field is whole
//! milliseconds or an RFC 3339 time; any other field is `true`/`false`, an
//! integer, a number, or else text.

use std::io::Read;
use std::sync::{Arc, Mutex};

/// Where each row came from, and why rows that are not CSV were refused.
#[derive(Debug, Default)]
pub struct CsvRows {
    /// The input line (1-based; the header is line 1) of each row given, in order.
    pub lines: Vec<u64>,
    /// (row, 1-based, and why) of rows that could not be read as CSV.
    pub errors: Vec<(u64, String)>,
}

impl CsvRows {
    /// The input line of the `row`-th row given (1-based).
    pub fn input_line(&self, row: u64) -> u64 {
        self.lines
            .get((row as usize).wrapping_sub(1))
            .copied()
            .unwrap_or(row + 1)
    }

    /// Why row `row` could not be read as CSV, if it could not.
    pub fn error(&self, row: u64) -> Option<&str> {
        self.errors.iter().find(|(r, _)| *r == row).map(|(_, e)| e.as_str())
    }
}

/// Reads CSV and gives JSON lines: one per row, in order.
pub struct CsvAsJsonLines<R: Read> {
    reader: csv::Reader<R>,
    header: Vec<String>,
    /// Which header field is the time.
    time: Option<usize>,
    /// For each header field, whether it is read as text (the key and id).
    text: Vec<bool>,
    record: csv::StringRecord,
    /// Where rows came from (rows may span lines), shared with the caller.
    rows: Arc<Mutex<CsvRows>>,
    pending: Vec<u8>,
    at: usize,
    done: bool,
}

impl<R: Read> CsvAsJsonLines<R> {
    /// A reader of `input`, whose events' key, time and id are in the fields
    /// named `key`, `time` and `id`.
    pub fn new(input: R, key: &str, time: &str, id: &str) -> std::io::Result<Self> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("CSV header: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        if header.iter().all(|h| h.is_empty()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "CSV: the first line must name the fields",
            ));
        }
        let text = header.iter().map(|h| h == key || h == id).collect();
        Ok(CsvAsJsonLines {
            time: header.iter().position(|h| h == time),
            header,
            reader,
            text,
            record: csv::StringRecord::new(),
            rows: Arc::default(),
            pending: Vec::new(),
            at: 0,
            done: false,
        })
    }

    /// Where the rows came from, filled in as they are read.
    pub fn rows(&self) -> Arc<Mutex<CsvRows>> {
        self.rows.clone()
    }

    /// Puts the next row, as a JSON line, into `pending`; false at the end.
    fn next_row(&mut self) -> std::io::Result<bool> {
        self.pending.clear();
        self.at = 0;
        match self.reader.read_record(&mut self.record) {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(e) => {
                // A row that is not CSV: a line the JSON path rejects goes on
                // in its place, and the reason is kept for the report.
                let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
                rows.lines.push(e.position().map_or(0, |p| p.line()));
                let row = rows.lines.len() as u64;
                rows.errors.push((row, format!("not a CSV row: {e}")));
                self.pending.extend_from_slice(b"!\n");
                return Ok(true);
            }
        }
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines
            .push(self.record.position().map_or(0, |p| p.line()));
        let mut object = serde_json::Map::new();
        for (i, field) in self.record.iter().enumerate() {
            if field.is_empty() {
                continue;
            }
            let name = self
                .header
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("column_{}", i + 1));
            let value = if self.text.get(i).copied().unwrap_or(false) {
                serde_json::Value::from(field)
            } else if Some(i) == self.time {
                match field.parse::<i64>() {
                    Ok(ms) => serde_json::Value::from(ms),
                    Err(_) => serde_json::Value::from(field),
                }
            } else {
                typed(field)
            };
            object.insert(name, value);
        }
        serde_json::to_writer(&mut self.pending, &object).map_err(std::io::Error::other)?;
        self.pending.push(b'\n');
        Ok(true)
    }
}

/// A field's value: a boolean, an integer, a number, or text.
fn typed(field: &str) -> serde_json::Value {
    match field {
        "true" => return true.into(),
        "false" => return false.into(),
        _ => {}
    }
    if let Ok(i) = field.parse::<i64>() {
        return i.into();
    }
    let numeric = field.bytes().any(|b| b.is_ascii_digit())
        && field
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    match field.parse::<f64>() {
        Ok(x) if numeric && x.is_finite() => serde_json::Number::from_f64(x).map_or_else(|| field.into(), Into::into),
        _ => field.into(),
    }
}

impl<R: Read> Read for CsvAsJsonLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.pending.len() {
            if self.done || !self.next_row()? {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(csv: &str) -> Vec<serde_json::Value> {
        let mut out = String::new();
        CsvAsJsonLines::new(csv.as_bytes(), "session_id", "time", "event_id")
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn rows_become_the_json_objects_the_jsonl_path_reads() {
        let got = lines(
            "session_id,time,event_id,state,bitrate,ad,n\n\
             007,7000,42,buffer,1.5,true,3\n\
             k,2026-12-05T07:16:11Z,,\"say \"\"hi\"\"\",,false,-2\n",
        );
        assert_eq!(
            got,
            [
                json(
                    r#"{"ad":true,"bitrate":1.5,"event_id":"42","n":3,"session_id":"007","state":"buffer","time":7000}"#
                ),
                json(r#"{"ad":false,"n":-2,"session_id":"k","state":"say \"hi\"","time":"2026-12-05T07:16:11Z"}"#),
            ]
        );
    }

    #[test]
    fn text_that_only_looks_like_a_number_stays_text() {
        let got = lines("session_id,time,a,b,c\nk,1,1.2.3,inf,NaN\n");
        assert_eq!(
            got,
            [json(r#"{"a":"1.2.3","b":"inf","c":"NaN","session_id":"k","time":1}"#)]
        );
    }
}
