//! `timeline gen cirr`: realistic synthetic video playback sessions.
//!
//! Each session starts on a CDN, initialises, plays, and then rebuffers,
//! seeks, pauses, switches CDN and changes bitrate at random until it stops or
//! completes. Events are written interleaved across sessions in time order,
//! except that a fraction arrive late (displaced by up to 5 minutes) and a
//! fraction are delivered twice (same `event_id`). Output is deterministic for
//! a given seed.

use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// Options of the CIRR generator.
#[derive(Debug, Clone)]
pub struct CirrOptions {
    /// Number of sessions (keys).
    pub sessions: u64,
    /// Random seed.
    pub seed: u64,
    /// Fraction of events delivered late.
    pub late: f64,
    /// Fraction of events delivered twice.
    pub duplicates: f64,
}

/// 2023-11-14T22:13:20Z, the first session's earliest start.
const BASE_TIME: i64 = 1_700_000_000_000;
/// Sessions are generated, and written, in groups of this many.
const GROUP: u64 = 2048;
/// Each group of sessions starts within this window after the previous one.
const GROUP_WINDOW_MS: i64 = 600_000;

struct Generated {
    arrival: i64,
    time: i64,
    session: u64,
    seq: u32,
    column: &'static str,
    value: Value,
}

enum Value {
    Str(&'static str),
    Int(i64),
}

/// Writes CIRR events as JSON lines; returns how many lines were written.
pub fn write_cirr(options: &CirrOptions, out: &mut impl Write) -> io::Result<u64> {
    let mut rng = Pcg64::seed_from_u64(options.seed);
    let mut written = 0;
    let mut line = Vec::with_capacity(160);
    let mut first = 0;
    while first < options.sessions {
        let last = (first + GROUP).min(options.sessions);
        let group_start = BASE_TIME + (first / GROUP) as i64 * GROUP_WINDOW_MS;
        let mut events = Vec::new();
        for session in first..last {
            let start = group_start + rng.random_range(0..GROUP_WINDOW_MS);
            session_events(&mut rng, session, start, &mut events);
        }
        let n = events.len();
        for i in 0..n {
            if rng.random_bool(options.duplicates) {
                let e = &events[i];
                let copy = Generated {
                    arrival: e.time + rng.random_range(0..60_000),
                    time: e.time,
                    session: e.session,
                    seq: e.seq,
                    column: e.column,
                    value: match e.value {
                        Value::Str(s) => Value::Str(s),
                        Value::Int(i) => Value::Int(i),
                    },
                };
                events.push(copy);
            }
            if rng.random_bool(options.late) {
                events[i].arrival += rng.random_range(1_000..300_000);
            }
        }
        events.sort_by_key(|e| (e.arrival, e.session, e.seq));
        for e in &events {
            line.clear();
            write!(
                line,
                "{{\"session_id\":\"session-{:06}\",\"time\":{},\"event_id\":\"s{}-{}\",\"{}\":",
                e.session, e.time, e.session, e.seq, e.column
            )?;
            match e.value {
                Value::Str(s) => write!(line, "\"{s}\"}}")?,
                Value::Int(i) => write!(line, "{i}}}")?,
            }
            line.push(b'\n');
            out.write_all(&line)?;
            written += 1;
        }
        first = last;
    }
    Ok(written)
}

fn session_events(rng: &mut Pcg64, session: u64, start: i64, out: &mut Vec<Generated>) {
    const CDNS: [&str; 3] = ["CDN1", "CDN2", "CDN3"];
    let mut seq = 0u32;
    let mut t = start;
    let mut push = |out: &mut Vec<Generated>, t: i64, column: &'static str, value: Value| {
        out.push(Generated {
            arrival: t,
            time: t,
            session,
            seq,
            column,
            value,
        });
        seq += 1;
    };
    let mut cdn = CDNS[rng.random_range(0..CDNS.len())];
    push(out, t, "cdnChange", Value::Str(cdn));
    push(out, t, "playerStateChange", Value::Str("init"));
    if rng.random_bool(0.5) {
        t += rng.random_range(100..2_000);
        push(out, t, "playerStateChange", Value::Str("buffer"));
    }
    t += rng.random_range(300..3_000);
    push(out, t, "playerStateChange", Value::Str("play"));
    for _ in 0..rng.random_range(5..40) {
        t += rng.random_range(2_000..60_000);
        match rng.random_range(0..100) {
            0..35 => {
                push(out, t, "playerStateChange", Value::Str("buffer"));
                t += rng.random_range(200..12_000);
                push(out, t, "playerStateChange", Value::Str("play"));
            }
            35..50 => {
                push(out, t, "userAction", Value::Str("seek"));
                if rng.random_bool(0.7) {
                    t += rng.random_range(0..1_000);
                    push(out, t, "playerStateChange", Value::Str("buffer"));
                    t += rng.random_range(200..8_000);
                    push(out, t, "playerStateChange", Value::Str("play"));
                }
            }
            50..65 => {
                push(out, t, "playerStateChange", Value::Str("pause"));
                t += rng.random_range(1_000..30_000);
                push(out, t, "playerStateChange", Value::Str("play"));
            }
            65..75 => {
                cdn = CDNS[(CDNS.iter().position(|c| *c == cdn).unwrap_or(0) + rng.random_range(1..3)) % 3];
                push(out, t, "cdnChange", Value::Str(cdn));
            }
            _ => push(out, t, "bitrate", Value::Int(rng.random_range(1..12) * 500)),
        }
    }
    t += rng.random_range(1_000..30_000);
    let end = if rng.random_bool(0.6) { "complete" } else { "stop" };
    push(out, t, "playerStateChange", Value::Str(end));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_with_late_and_repeated_events() {
        let options = CirrOptions {
            sessions: 50,
            seed: 7,
            late: 0.05,
            duplicates: 0.05,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let n = write_cirr(&options, &mut a).unwrap();
        write_cirr(&options, &mut b).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, n);
        let parser = timeline::EventParser::default();
        let events: Vec<_> = lines.iter().map(|l| parser.parse(l).unwrap()).collect();
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
        assert!(ids.len() < events.len(), "some events are delivered twice");
        assert!(
            events.windows(2).any(|w| w[1].time < w[0].time),
            "some events arrive late"
        );
        let keys: std::collections::HashSet<_> = events.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys.len(), 50);
    }
}
