//! Any bytes as an event, then through every leaf operator. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timeline::{CompiledPlan, EventParser, ExecutionPlan};

fuzz_target!(|data: &[u8]| {
    let parser = EventParser::default();
    let Ok(event) = parser.parse_bytes(data) else { return };
    let query = r#"duration_where(has_existed(a == 1) && !has_existed_within(b > 2.5, 5s)) > 10
        || latest_event_to_state(c) == "x""#;
    let plan = CompiledPlan::new(ExecutionPlan::new(&timeline::dsl::parse(query).unwrap()).unwrap());
    let mut states = plan.new_leaf_states();
    plan.apply(&mut states, &event);
    plan.apply(&mut states, &event);
    let out = plan.evaluate_result(&states);
    let _ = out.value_at(event.time);
});
