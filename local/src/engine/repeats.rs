//! Recognising repeated deliveries: a fingerprint of an identified event (its
//! key, time, id and content) and of where it goes, so that the writer can
//! leave out of the log what it already holds.

use std::hash::{Hash, Hasher};

use timeline::Event;
use timeline::repeats::content_digest;

use super::Target;

/// A 64-bit fingerprint of `event` as delivered to `target`, or none for an
/// event without an id (which cannot be told from a new one with the same
/// content). Columns are taken in name order, so field order does not matter;
/// `2` and `2.0` are different content.
pub fn fingerprint(event: &Event, target: &Target) -> Option<u64> {
    event.id.as_ref()?;
    Some(fingerprint_with(event, target, content_digest(event)))
}

/// [`fingerprint`] of an identified event whose content digest
/// ([`content_digest`]) is `content`.
pub fn fingerprint_with(event: &Event, target: &Target, content: u64) -> u64 {
    // SipHash with fixed keys: no weak spots for structured input.
    let mut h = std::hash::DefaultHasher::new();
    event.key.as_str().hash(&mut h);
    event.time.hash(&mut h);
    event.id.as_deref().unwrap_or_default().hash(&mut h);
    match target {
        Target::AllLeaves => 0u8.hash(&mut h),
        Target::Leaf(node) => {
            1u8.hash(&mut h);
            node.to_string().hash(&mut h);
        }
    }
    content.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use timeline::EventParser;

    fn fp(line: &str) -> Option<u64> {
        fingerprint(&EventParser::default().parse(line).unwrap(), &Target::AllLeaves)
    }

    #[test]
    fn same_identified_event_same_fingerprint_whatever_the_field_order() {
        let a = fp(r#"{"session_id":"k","time":5,"event_id":"e","x":1,"s":"a"}"#);
        let b = fp(r#"{"s":"a","x":1,"event_id":"e","time":5,"session_id":"k"}"#);
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    #[test]
    fn any_difference_or_no_id_is_another_event() {
        let base = fp(r#"{"session_id":"k","time":5,"event_id":"e","x":1}"#);
        for other in [
            r#"{"session_id":"j","time":5,"event_id":"e","x":1}"#,
            r#"{"session_id":"k","time":6,"event_id":"e","x":1}"#,
            r#"{"session_id":"k","time":5,"event_id":"f","x":1}"#,
            r#"{"session_id":"k","time":5,"event_id":"e","x":2}"#,
            r#"{"session_id":"k","time":5,"event_id":"e","x":1.0}"#,
            r#"{"session_id":"k","time":5,"event_id":"e","y":1}"#,
        ] {
            assert_ne!(base, fp(other), "{other}");
        }
        assert_eq!(fp(r#"{"session_id":"k","time":5,"x":1}"#), None);
    }
}
