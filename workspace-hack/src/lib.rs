//! Empty: this crate exists for its dependencies' features (see its
//! Cargo.toml), so that `timeline-local` and `timeline-feeder` build their
//! shared dependencies once, whichever packages a build selects.
