//! Any text through the server's submit path, on a thread with tokio's
//! 2 MiB stack: parse, check, plan, register, compile the evaluation, and
//! serialize the plan. A refusal must carry a position; a query within the
//! limits must never exhaust the stack; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timeline::registry::JobRegistry;
use timeline::{CompiledPlan, Evaluation};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let text = text.to_string();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || submit(&text))
        .expect("spawn")
        .join()
        .expect("the submit path panicked");
});

fn submit(text: &str) {
    let mut registry = JobRegistry::new();
    match registry.submit(Some("fuzz"), text) {
        Ok(submitted) => {
            let plan = submitted.job().plan.clone();
            let json = serde_json::to_string(&plan).expect("plans serialize");
            assert!(json.len() < 1000 * plan.nodes.len() + text.len() * 4 + 4096, "plan not linear");
            let _ = Evaluation::of_plan(&plan);
            let _ = CompiledPlan::new(plan);
            // Submitting the same again is a no-op.
            assert!(registry.submit(Some("fuzz"), text).is_ok());
            assert!(registry.remove("fuzz").is_some());
        }
        Err(timeline::registry::SubmitError::Query(e)) => {
            assert!(e.line >= 1 && e.column >= 1);
            let _ = e.render(text, "fuzz.tl");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
