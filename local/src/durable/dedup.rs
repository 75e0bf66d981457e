//! Repeats left out of the log: under at-least-once delivery a batch is often
//! sent again; its identified events that the engine already applied (same
//! key, time, id and content, for the same leaves) add nothing, so they are
//! neither logged nor applied again. Events without an id are always kept.

use rustc_hash::FxHashSet;
use timeline::Event;

use timeline::repeats::content_digest;

use crate::engine::{Engine, fingerprint_with};
use crate::store::{decode_record, encode_record};

use super::Ingest;

/// Removes from each ingest the events already applied or already in an
/// earlier ingest of the group, re-encoding the record of any batch that
/// lost some (an empty record: nothing to log). Returns the events left out.
pub(super) fn leave_out_repeats(engine: &Engine, ingests: &mut [Ingest]) -> usize {
    let mut in_group: FxHashSet<(u16, u64)> = FxHashSet::default();
    let mut dropped = 0;
    for ingest in ingests {
        let before = ingest.events.len();
        ingest.events.retain(|event| {
            if event.id.is_none() {
                return true;
            }
            let content = content_digest(event);
            !engine.is_known(ingest.stream, event, &ingest.target, content)
                && in_group.insert((ingest.stream, fingerprint_with(event, &ingest.target, content)))
        });
        if ingest.events.len() == before {
            continue;
        }
        dropped += before - ingest.events.len();
        ingest.record = if ingest.events.is_empty() {
            Vec::new()
        } else {
            reencode(&ingest.record, &ingest.events)
        };
    }
    dropped
}

/// The record with the same header and `events` as its body (JSON lines, in
/// the stream's own field names, so that recovery reads it as any other).
pub(super) fn reencode(record: &[u8], events: &[Event]) -> Vec<u8> {
    let (header, _) = decode_record(record).expect("the writer's own records decode");
    let spec = header.stream();
    let mut body = Vec::new();
    for event in events {
        serde_json::to_writer(&mut body, &event.to_json_with(&spec.key, &spec.time, &spec.id))
            .expect("events serialize");
        body.push(b'\n');
    }
    encode_record(&header, &body)
}
