//! Empty: a build script, so that the build-dependencies (and their
//! features) take part in the build.
fn main() {}
