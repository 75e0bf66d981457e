//! Any text through the DSL: parse, type-check, render errors, and for valid
//! queries re-parse the canonical form. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match timeline::dsl::parse(text) {
        Ok(op) => {
            let again = timeline::dsl::parse(&op.canonical()).expect("canonical form parses");
            assert_eq!(again.id(), op.id());
            let _ = timeline::ExecutionPlan::new(&op).expect("parsed queries are well typed");
        }
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1);
            let _ = e.render(text, "fuzz.tl");
        }
    }
});
