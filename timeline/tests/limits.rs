//! Hostile queries: each limit refused with its message and position, deep
//! but allowed queries run on a 2 MiB stack (tokio's default), and plans
//! grow with the query's text, not with its unfolded tree.

use timeline::dsl::{MAX_DEPTH, MAX_NODES, MAX_QUERY_BYTES, QueryLimit, parse_query};
use timeline::{CompiledPlan, EventParser, ExecutionPlan, Value};

/// Runs `f` on a thread with a 2 MiB stack, as a tokio worker would.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no stack overflow, no panic")
}

fn refused(query: String) -> timeline::dsl::DslError {
    on_small_stack(move || parse_query(&query).expect_err("refused"))
}

/// The plan of `query`, evaluated over events of key `k` with column `a`
/// set to each of `values` at times 0, 1, ...
fn evaluate(query: &str, values: &[i64]) -> timeline::Output {
    let parsed = parse_query(query).unwrap();
    let plan = CompiledPlan::new(ExecutionPlan::from_outputs(&parsed.outputs).unwrap());
    let parser = EventParser::default();
    let mut states = plan.new_leaf_states();
    for (t, a) in values.iter().enumerate() {
        let line = format!(r#"{{"session_id":"k","time":{t},"event_id":"e{t}","a":{a}}}"#);
        plan.apply(&mut states, &parser.parse(&line).unwrap());
    }
    plan.evaluate_result(&states)
}

#[test]
fn a_query_over_the_size_limit_is_refused_before_lexing() {
    let query = format!("has_existed(a == \"{}\")", "x".repeat(MAX_QUERY_BYTES));
    let err = refused(query.clone());
    assert_eq!(err.limit, Some(QueryLimit::Size));
    assert_eq!(QueryLimit::Size.code(), "query_too_large");
    assert!(err.message.contains("query too large"), "{err}");
    assert!(err.message.contains(&MAX_QUERY_BYTES.to_string()), "{err}");
    assert_eq!((err.line, err.column), (1, MAX_QUERY_BYTES + 1));
    assert!(err.render(&query, "q").contains("query too large"));
}

#[test]
fn deep_brackets_are_refused_before_parsing() {
    // 100k `(` made the parser exhaust memory; 60k fit the size limit.
    let err = refused("(".repeat(60_000));
    assert_eq!(err.limit, Some(QueryLimit::Depth));
    assert!(err.message.contains("query too deep"), "{err}");
    assert!(err.message.contains(&MAX_DEPTH.to_string()), "{err}");
    assert_eq!((err.line, err.column), (1, MAX_DEPTH + 1));
}

#[test]
fn long_negation_and_operator_chains_are_refused() {
    // The issue's repro: 1,400 `!` overflowed a tokio worker's stack.
    let nots = format!("duration_where({}has_existed(a == 1))", "!".repeat(1400));
    let err = refused(nots);
    assert_eq!(err.limit, Some(QueryLimit::Depth), "{err}");
    assert_eq!(QueryLimit::Depth.code(), "query_too_deep");
    for op in ["&&", "||"] {
        let chain = vec!["has_existed(a == 1)"; 1400].join(op);
        let err = refused(format!("duration_where({chain})"));
        assert_eq!(err.limit, Some(QueryLimit::Depth), "{op}: {err}");
        assert_eq!(err.line, 1);
    }
    // Predicates too: a chain inside has_existed.
    let err = refused(format!("has_existed({})", vec!["a == 1"; 1400].join(" || ")));
    assert_eq!(err.limit, Some(QueryLimit::Depth), "{err}");
}

#[test]
fn too_many_nodes_are_refused_with_the_position() {
    // Each statement is within the depth limit; together they have too many nodes.
    let statement = |i: usize| format!("let v{i} = {};\n", vec!["x"; 200].join(" && "));
    let query: String = (0..30).map(statement).collect();
    assert!(query.len() < MAX_QUERY_BYTES);
    let err = refused(query);
    assert_eq!(err.limit, Some(QueryLimit::Nodes), "{err}");
    assert_eq!(QueryLimit::Nodes.code(), "query_too_complex");
    assert!(err.message.contains(&MAX_NODES.to_string()), "{err}");
    assert!(err.line > 20, "{err}");
}

#[test]
fn bindings_that_unfold_exponentially_are_refused() {
    // Predicates are copied where used: p20 would have 2^20 comparisons.
    let mut query = String::from("let p0 = a == 1;\n");
    for i in 1..=20 {
        query.push_str(&format!("let p{i} = p{} || p{};\n", i - 1, i - 1));
    }
    query.push_str("has_existed(p20)");
    let err = refused(query);
    assert_eq!(err.limit, Some(QueryLimit::Nodes), "{err}");
    assert!(err.message.contains("unfolded"), "{err}");

    // Through bindings, a predicate can nest deeper than any one statement.
    let mut query = String::from("let p0 = a == 1;\n");
    for i in 1..=5 {
        query.push_str(&format!("let p{i} = {}p{};\n", "!".repeat(100), i - 1));
    }
    query.push_str("has_existed(p5)");
    let err = refused(query);
    assert_eq!(err.limit, Some(QueryLimit::Depth), "{err}");
}

#[test]
fn deep_but_allowed_queries_run_on_a_small_stack() {
    let out = on_small_stack(|| {
        // Nesting just under the limit, of each kind.
        let nots = format!("duration_where({}has_existed(a == 1))", "!".repeat(MAX_DEPTH - 10));
        let parens = format!(
            "duration_where({}has_existed(a == 1){})",
            "(".repeat(MAX_DEPTH - 10),
            ")".repeat(MAX_DEPTH - 10)
        );
        let chain = format!(
            "duration_where({})",
            vec!["has_existed(a == 1)"; MAX_DEPTH - 10].join(" && ")
        );
        let predicate = format!("duration_where(has_existed({}(a == 1)))", "!".repeat(MAX_DEPTH - 10));
        let metric = format!(
            "r = {};",
            vec!["(has_existed(a == 1) | aggregate(count))"; MAX_DEPTH - 10].join(" - ")
        );
        for query in [&nots, &parens, &chain, &predicate, &metric] {
            let parsed = parse_query(query).unwrap();
            ExecutionPlan::from_outputs(&parsed.outputs).unwrap();
        }
        // An even number of `!`: the same as has_existed(a == 1).
        (evaluate(&nots, &[0, 1, 0, 0]), evaluate(&chain, &[0, 1, 0, 0]))
    });
    assert_eq!(out.0.value_at(3), Some(Value::Int(2)));
    assert_eq!(out.1.value_at(3), Some(Value::Int(2)));
}

/// `let v1 = has_existed(a == 1); let v_i = v_{i-1} && has_existed(a == i); ...`
fn let_chain(n: usize) -> String {
    let mut query = String::from("let v1 = has_existed(a == 1);\n");
    for i in 2..=n {
        query.push_str(&format!("let v{i} = v{} && has_existed(a == {i});\n", i - 1));
    }
    query.push_str(&format!("duration_where(v{n})"));
    query
}

#[test]
fn a_long_let_chain_plans_in_linear_size_on_a_small_stack() {
    let (per_node, nodes, result) = on_small_stack(|| {
        let query = let_chain(1000);
        let parsed = parse_query(&query).unwrap();
        let plan = ExecutionPlan::from_outputs(&parsed.outputs).unwrap();
        let json = serde_json::to_string(&plan).unwrap();
        let values: Vec<i64> = (1..=1000).collect();
        let out = evaluate(&query, &values);
        (json.len() / plan.nodes.len(), plan.nodes.len(), out.value_at(1005))
    });
    assert_eq!(nodes, 2000, "1,000 leaves, 999 `&&` and duration_where");
    // Linear: a node's id, operator, children and bounded description.
    // (Each node embedded its whole subtree before: ~20 kB per node.)
    assert!(per_node < 400, "{per_node} bytes per node");
    // Every a == i has existed from t = i - 1 = 999 on.
    assert_eq!(result, Some(Value::Int(6)));
}

#[test]
fn a_binding_used_twice_is_one_node() {
    // Unfolded, v30 would have 2^30 leaves; shared, it has 31 nodes.
    let mut query = String::from("let v0 = has_existed(a == 1);\n");
    for i in 1..=30 {
        query.push_str(&format!("let v{i} = v{} && !v{};\n", i - 1, i - 1));
    }
    query.push_str("count_where(v30)");
    let parsed = on_small_stack(move || parse_query(&query).unwrap());
    let plan = ExecutionPlan::from_outputs(&parsed.outputs).unwrap();
    assert_eq!(plan.nodes.len(), 1 + 30 * 2 + 1);
    let json = serde_json::to_string(&plan).unwrap();
    assert!(json.len() < 400 * plan.nodes.len(), "{} bytes", json.len());
    assert!(plan.query.len() < 1000, "{}", plan.query);
}

#[test]
fn a_long_run_of_bad_characters_is_refused_at_once() {
    // The lexer retried after each bad character: quadratic (minutes for
    // 60k digits of an out-of-range integer, 15 s for 65k `@` in a debug build).
    for (text, message) in [("9", "is out of range"), ("@", "unexpected character `@`")] {
        let started = std::time::Instant::now();
        let err = refused(text.repeat(60_000));
        assert!(err.message.contains(message), "{err}");
        assert_eq!((err.line, err.column), (1, 1));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(20), "{text}: {took:?}");
    }
}
