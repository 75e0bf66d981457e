use super::*;
use std::time::Duration;

const CIRR: &str = r#"
// connection-induced rebuffering on CDN1
duration_where(
  has_existed(playerStateChange == "play")
  && !has_existed_within(userAction == "seek", 5s)
  && latest_event_to_state(playerStateChange) == "buffer"
  && latest_event_to_state(cdnChange) == "CDN1")
"#;

fn cirr_builder() -> TimeLineOp {
    tl_duration_where(
        tl_has_existed(col("playerStateChange").equal_to("play"))
            & !tl_has_existed_within(col("userAction").equal_to("seek"), Duration::from_secs(5))
            & tl_latest_event_to_state(col("playerStateChange")).equal_to("buffer")
            & tl_latest_event_to_state(col("cdnChange")).equal_to("CDN1"),
    )
}

fn err(src: &str) -> DslError {
    match parse(src) {
        Ok(op) => panic!("expected an error for {src:?}, got {op}"),
        Err(e) => e,
    }
}

#[test]
fn text_builder_and_article_spellings_agree() {
    let text = parse(CIRR).unwrap();
    assert_eq!(text.id(), cirr_builder().id());
    let article = parse(
        r#"
        let t1 = TLHasExisted(col("playerStateChange") == 'play')
        let t2 = TLHasExistedWithin(col("userAction") == 'seek', 5000);
        let t3 = TLEventToState(col('playerStateChange')) == 'buffer';
        let t4 = TLEventToState(col('cdnChange')) == 'CDN1';
        let result = TLDurationWhere(And(And(And(t1, Not(t2)), t3), t4));
        "#,
    )
    .unwrap();
    assert_eq!(article.id(), text.id(), "{article}\n{text}");
    let q = parse_query("let a = has_existed(x == 1); let b = !a; a || b").unwrap();
    assert_eq!(q.bindings.len(), 2);
    // Operands of `||` are ordered by node id.
    let canonical = q.timeline().unwrap().canonical();
    assert!(
        canonical == "(!has_existed(x == 1) || has_existed(x == 1))"
            || canonical == "(has_existed(x == 1) || !has_existed(x == 1))",
        "{canonical}"
    );
    assert_eq!(parse(&canonical).unwrap().id(), q.timeline().unwrap().id());
}

#[test]
fn canonical_form_reparses_to_the_same_node() {
    let op = parse(CIRR).unwrap();
    for node in op.post_order() {
        let again = parse(&node.canonical()).unwrap();
        assert_eq!(again.id(), node.id(), "{}", node.canonical());
    }
    let odd = parse(r#"latest_event_to_state(col("a b")) != -1.5"#).unwrap();
    assert_eq!(parse(&odd.canonical()).unwrap().id(), odd.id());
}

#[test]
fn literals_durations_and_comparisons() {
    let op = parse("duration_in_cur_state(latest_event_to_state(s)) >= 10m").unwrap();
    assert_eq!(
        op.canonical(),
        "(duration_in_cur_state(latest_event_to_state(s)) >= 600000)"
    );
    for (src, ms) in [
        ("1ms", 1),
        ("2s", 2000),
        ("3m", 180_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("250", 250),
    ] {
        let op = parse(&format!("has_existed_within(a == true, {src})")).unwrap();
        assert!(op.canonical().ends_with(&format!(", {ms}ms)")), "{src}: {op}");
    }
    let flipped = parse(r#""CDN1" == latest_event_to_state(cdn)"#).unwrap();
    assert_eq!(
        flipped.id(),
        parse(r#"latest_event_to_state(cdn) == "CDN1""#).unwrap().id()
    );
    let lt = parse("5 < duration_where(has_existed(a > 2.5))").unwrap();
    assert_eq!(lt.canonical(), "(duration_where(has_existed(a > 2.5)) > 5)");
    assert!(parse("has_existed(a == \"x\\\"y\" || !(b <= -3))").is_ok());
}

#[test]
fn errors_give_line_column_and_a_caret() {
    let e = err("duration_where(\n  has_existd(a == 1))");
    assert_eq!((e.line, e.column), (2, 3));
    assert!(e.message.contains("unknown function `has_existd`"), "{e}");
    assert_eq!(e.help.as_deref(), Some("did you mean `has_existed`?"));
    let rendered = e.render("duration_where(\n  has_existd(a == 1))", "q.tl");
    assert!(rendered.contains("q.tl:2:3"), "{rendered}");
    assert!(
        rendered.contains("^") || rendered.contains("─┬─") || rendered.contains("┬"),
        "{rendered}"
    );

    let e = err("TLHasExistd(a == 1)");
    assert_eq!(e.help.as_deref(), Some("did you mean `has_existed`?"));
    let e = err("latest_event_to_stat(a)");
    assert_eq!(e.help.as_deref(), Some("did you mean `latest_event_to_state`?"));
}

#[test]
fn operator_typos_get_hints() {
    let e = err("has_existed(a = 1)");
    assert_eq!((e.line, e.column), (1, 15));
    assert_eq!(e.help.as_deref(), Some("to compare, write `==`"));
    assert_eq!(
        err("has_existed(a == 1) & has_existed(b == 2)").help.as_deref(),
        Some("logical and is `&&`")
    );
    assert_eq!(
        err("has_existed(a == 1) | has_existed(b == 2)").help.as_deref(),
        Some("logical or is `||`")
    );
    assert_eq!(
        err("has_existed(a == 1) and has_existed(b == 2)").help.as_deref(),
        Some("logical and is `&&`")
    );
}

#[test]
fn type_errors_are_clear() {
    let e = err("duration_where(latest_event_to_state(cdn))");
    assert!(
        e.message
            .contains("`duration_where` takes a boolean timeline, found a state timeline"),
        "{e}"
    );
    assert_eq!(e.column, 16);
    let e = err("has_existed(a == 1) && 5");
    assert!(
        e.message
            .contains("`&&` needs boolean timelines or predicates, but an operand is the integer literal 5"),
        "{e}"
    );
    let e = err("duration_where(playerStateChange == \"play\")");
    assert!(e.message.contains("found a predicate on events"), "{e}");
    let e = err("has_existed(latest_event_to_state(a) == 1)");
    assert!(
        e.message.contains("takes a predicate on events, found a timeline"),
        "{e}"
    );
    let e = err("a == 1 && has_existed(b == 1)");
    assert!(
        e.message
            .contains("cannot combine a predicate on events with a timeline"),
        "{e}"
    );
    let e = err("a == 1");
    assert!(
        e.message
            .contains("a query computes a timeline, but this is a predicate"),
        "{e}"
    );
    let e = err("has_existed_within(a == 1, -5)");
    assert!(e.message.contains("positive duration"), "{e}");
    let e = err("has_existed_within(a == 1, 5x)");
    assert!(e.message.contains("unknown duration unit `x`"), "{e}");
    let e = err("latest_event_to_state(a) == latest_event_to_state(b)");
    assert!(e.message.contains("compares with a literal value"), "{e}");
    let e = err("has_existed(a == 1, 2)");
    assert!(e.message.contains("takes 1 argument, found 2"), "{e}");
}

#[test]
fn syntax_errors_point_at_the_spot() {
    let e = err("duration_where(has_existed(a == 1)");
    assert!(
        e.message.contains("unclosed `(`") || e.message.contains("end of the query"),
        "{e}"
    );
    let e = err("has_existed(a == \"open)");
    assert!(
        e.message.contains("unterminated string") || e.message.contains("unexpected"),
        "{e}"
    );
    assert_eq!((e.line, e.column), (1, 18));
    let e = err("   ");
    assert!(e.message.contains("empty"), "{e}");
    let e = err("has_existed(a == 1) )");
    assert_eq!(e.column, 21, "{e}");
    let e = err("has_existed(a == 1) @");
    assert!(e.message.contains("unexpected character `@`"), "{e}");
}

const COMPLETION_RATE: &str = r#"
// The article's completion rate, per CDN.
let play = has_existed(playerStateChange == "play");
attempts = count_where(play) | aggregate(group_by(cdnChange), sum);
completed = has_existed(playerStateChange == "complete") | aggregate(group_by(cdnChange), count_true);
completion_rate = completed / attempts;
"#;

fn query_err(src: &str) -> DslError {
    match parse_query(src) {
        Ok(q) => panic!("expected an error for {src:?}, got {} outputs", q.outputs.len()),
        Err(e) => e,
    }
}

#[test]
fn named_metrics_aggregate_and_divide() {
    use crate::plan::JobOutput;
    let q = parse_query(COMPLETION_RATE).unwrap();
    let names: Vec<&str> = q.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["attempts", "completed", "completion_rate"]);
    let JobOutput::Aggregate { node, functions } = &q.outputs[0].1 else {
        panic!("attempts is an aggregate")
    };
    assert_eq!(functions, &[crate::AggFn::Sum]);
    assert_eq!(node.spec().group_by.as_deref(), Some("cdnChange"));
    assert!(node.id().as_str().starts_with("aggregate-"));
    let JobOutput::Metric(rate) = &q.outputs[2].1 else {
        panic!("completion_rate is a metric")
    };
    assert_eq!(rate.inputs().len(), 2);
    assert_eq!(rate.inputs()[1].id(), node.id(), "the metric reads the same aggregate");
    assert_eq!(rate.group_by(), Some("cdnChange"));
    // The canonical form is DSL that names the same metric.
    let again = parse_query(&format!("r = {};", rate.canonical())).unwrap();
    assert_eq!(again.outputs[0].1.id(), rate.id(), "{}", rate.canonical());
    // Functions are read, not stored: a different choice is the same aggregate.
    let p90 = parse_query(
        r#"count_where(has_existed(playerStateChange == "play")) | aggregate(group_by(cdnChange), p90, avg)"#,
    )
    .unwrap();
    assert_eq!(p90.outputs[0].0, "result");
    assert_eq!(p90.outputs[0].1.id(), node.id());
    assert!(parse(COMPLETION_RATE).is_err(), "parse() is for one timeline per key");
}

#[test]
fn members_arithmetic_and_constants() {
    use crate::plan::JobOutput;
    let q = parse_query(
        "d = duration_where(has_existed(a == 1)) | aggregate(avg, max, shards(4));
         spread = (d.max - d.avg) / 1000;
         neg = -d.max;",
    )
    .unwrap();
    let JobOutput::Metric(spread) = &q.outputs[1].1 else {
        panic!("a metric")
    };
    assert_eq!(spread.inputs().len(), 1, "d is one input read twice");
    let JobOutput::Aggregate { node, .. } = &q.outputs[0].1 else {
        panic!("an aggregate")
    };
    assert_eq!(node.spec().shards, 4);
    assert!(parse_query("x = has_existed(a == 1) | aggregate(count); y = -x;").is_ok());
    // Minus is an operator everywhere now; literals still negate.
    assert_eq!(
        parse("latest_event_to_state(a) > -5").unwrap().canonical(),
        "(latest_event_to_state(a) > -5)"
    );
    assert_eq!(
        parse("latest_event_to_state(a) > 10-5").unwrap().canonical(),
        "(latest_event_to_state(a) > 5)"
    );
}

#[test]
fn aggregate_errors_say_what_and_where() {
    let e = query_err("x = duration_where(has_existed(a == 1)) | aggregate(avrg)");
    assert_eq!((e.line, e.column), (1, 53));
    assert!(e.message.contains("unknown aggregate function `avrg`"), "{e}");
    assert_eq!(e.help.as_deref(), Some("did you mean `avg`?"));

    let e = query_err("x = duration_where(has_existed(a == 1)) | aggregate(count_true)");
    assert!(
        e.message.contains("`count_true` counts keys whose value is true"),
        "{e}"
    );

    let e = query_err("x = has_existed(a == 1) | aggregate(group_by(cdn))");
    assert!(e.message.contains("needs at least one function"), "{e}");

    let e = query_err("x = has_existed(a == 1) | agregate(count)");
    assert_eq!(e.help.as_deref(), Some("did you mean `aggregate`?"));

    let e = query_err("x = aggregate(count)");
    assert!(e.message.contains("belongs after `|`"), "{e}");

    let e = query_err(
        "a = has_existed(a == 1) | aggregate(group_by(cdn), count);
         b = has_existed(b == 1) | aggregate(group_by(os), count);
         r = a / b;",
    );
    assert_eq!((e.line, e.column), (3, 14));
    assert!(e.message.contains("grouped by `cdn` and by `os`"), "{e}");

    let e = query_err("a = has_existed(a == 1) | aggregate(count, count_true);\nr = a / 2;");
    assert_eq!((e.line, e.column), (2, 5));
    assert!(e.message.contains("shows count, count_true: say which"), "{e}");
    assert_eq!(e.help.as_deref(), Some("e.g. name.count"));

    let e = query_err("r = duration_where(has_existed(a == 1)) / 2;");
    assert!(e.message.contains("found a timeline per key"), "{e}");

    let e = query_err("a = has_existed(a == 1) | aggregate(count);\na = has_existed(b == 1) | aggregate(count);");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("already has an output named `a`"), "{e}");

    let e = query_err("x = (a == 1) | aggregate(count)");
    assert!(e.message.contains("found a predicate on events"), "{e}");

    let e = query_err("x = duration_where(has_existed(a == 1)).sum");
    assert!(e.message.contains("`.sum` reads a function of an aggregate"), "{e}");

    let e = query_err("x = has_existed(a == 1) | aggregate(group_by(a), group_by(b), count)");
    assert!(e.message.contains("one `group_by`"), "{e}");
    assert_eq!(e.help.as_deref(), Some("the first is at line 1, column 37"));

    let e = query_err("x = has_existed(a == 1) | aggregate(count, shards(0))");
    assert!(e.message.contains("from 1 to 1024"), "{e}");

    let e = query_err("x = count_where(latest_event_to_state(a))");
    assert!(e.message.contains("`count_where` takes a boolean timeline"), "{e}");
}

#[test]
fn a_missing_paren_points_at_the_end_and_at_the_open_paren() {
    let src = "duration_where(has_existed(a == 1)";
    let e = err(src);
    assert!(e.message.contains("unclosed `(`"), "{e}");
    // The caret stands just after the last character, where `)` is missing.
    assert_eq!((e.line, e.column, e.span.clone()), (1, 35, 34..34), "{e}");
    assert_eq!(e.notes(), [(14..15, "this `(` is never closed".to_string())]);
    let drawn = e.render(src, "query");
    assert!(drawn.contains("this `(` is never closed"), "{drawn}");
    assert!(drawn.contains("expected `)` here"), "{drawn}");
    // Both places are drawn under the query's line.
    assert!(drawn.contains(&format!("1 │ {src}")), "{drawn}");

    let src = "// rebuffering\nduration_where(\n  has_existed(a == 1)\n  && has_existed(b == 2)\n";
    let e = err(src);
    assert_eq!((e.line, e.column), (4, 25), "{e}");
    assert_eq!(e.notes()[0].0, 29..30);
    let drawn = e.render(src, "cirr.tl");
    assert!(drawn.contains("cirr.tl:4:25"), "{drawn}");
    assert!(drawn.contains("this `(` is never closed"), "{drawn}");

    let e = err("has_existed((a == 1)");
    assert!(e.label.contains("expected `)`"), "{e:?}");
    let e = err("has_existed((a == 1");
    assert!(e.label.contains("expected 2 `)`"), "{e:?}");
}

#[test]
fn an_end_of_query_error_draws_its_caret() {
    let src = "has_existed(a == 1) &&";
    let e = err(src);
    assert!(e.message.contains("end of the query"), "{e}");
    let drawn = e.render(src, "query");
    assert!(drawn.contains(&format!("1 │ {src}")), "{drawn}");
    assert!(drawn.contains('┬'), "no caret: {drawn}");
}

#[test]
fn aggregate_in_arithmetic_without_parentheses_suggests_them() {
    for (src, fixed) in [
        (
            "has_existed(a == 1) | aggregate(count_true) + 1",
            "(has_existed(a == 1) | aggregate(count_true)) + 1",
        ),
        (
            "rate = count_where(has_existed(a == 1)) | aggregate(sum) / 2;",
            "(count_where(has_existed(a == 1)) | aggregate(sum)) / 2",
        ),
        (
            "count_where(has_existed(a == 1)) | aggregate(avg, max).max * 2",
            "(count_where(has_existed(a == 1)) | aggregate(avg, max)).max * 2",
        ),
        (
            "count_where(has_existed(a == 1)) | aggregate(avg, max).max",
            "(count_where(has_existed(a == 1)) | aggregate(avg, max)).max",
        ),
    ] {
        let e = query_err(src);
        let help = e.help.clone().unwrap_or_default();
        assert!(help.contains(&format!("`{fixed}`")), "{src}: {help}");
        assert!(help.contains("binds looser"), "{help}");
        parse_query(fixed).unwrap_or_else(|e| panic!("the suggestion {fixed} fails: {e}"));
    }
}

#[test]
fn temporal_operators_parse_to_what_the_builder_builds() {
    let view = || col("action").equal_to("view");
    let cart = || col("action").equal_to("cart");
    let pairs = [
        (
            r#"sequence(action == "view", action == "cart", within(1h))"#,
            tl_sequence(vec![view(), cart()], Some(Duration::from_secs(3600))),
        ),
        (
            r#"sequence(action == "view", action == "cart")"#,
            tl_sequence(vec![view(), cart()], None),
        ),
        (
            r#"absent_after(action == "view", action == "cart", 10m)"#,
            tl_absent_after(view(), cart(), Duration::from_secs(600)),
        ),
        (r#"time_since(action == "view")"#, tl_time_since(view())),
        (
            r#"previous(latest_event_to_state(action))"#,
            tl_previous(tl_latest_event_to_state(col("action"))),
        ),
        (
            r#"true_within(has_existed(action == "view"), 5s)"#,
            tl_true_within(tl_has_existed(view()), Duration::from_secs(5)),
        ),
        (
            r#"duration_where(has_existed(action == "view"), tumbling(1m))"#,
            tl_duration_where_in(tl_has_existed(view()), tumbling(Duration::from_secs(60))),
        ),
        (
            r#"count_where(has_existed(action == "view"), sliding(5m))"#,
            tl_count_where_in(tl_has_existed(view()), sliding(Duration::from_secs(300))),
        ),
    ];
    for (text, built) in pairs {
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.id(), built.id(), "{text}");
        assert_eq!(parse(&parsed.canonical()).unwrap().id(), parsed.id(), "{text}");
    }
    assert_ne!(
        parse(r#"duration_where(has_existed(a == 1), tumbling(1m))"#)
            .unwrap()
            .id(),
        parse(r#"duration_where(has_existed(a == 1), sliding(1m))"#)
            .unwrap()
            .id()
    );
}

#[test]
fn temporal_operator_mistakes_are_pointed_at() {
    let e = err(r#"sequence(a == 1)"#);
    assert!(e.message.contains("`sequence` takes 2 to 32 predicates"), "{e}");
    let e = err(r#"sequence(a == 1, within(1h), b == 2)"#);
    assert!(e.message.contains("`within(d)` comes last"), "{e}");
    assert_eq!(e.column, 18, "{e}");
    let e = err(r#"sequence(a == 1, has_existed(b == 2))"#);
    assert!(
        e.message
            .contains("`sequence` takes a predicate on events, found a timeline"),
        "{e}"
    );
    let e = err(r#"duration_where(has_existed(a == 1), 5m)"#);
    assert!(
        e.message
            .contains("is tumbling(d) or sliding(d), found a bare duration"),
        "{e}"
    );
    assert_eq!(e.column, 37, "{e}");
    let e = err(r#"count_where(has_existed(a == 1), hopping(5m))"#);
    assert!(e.message.contains("found `hopping(...)`"), "{e}");
    let e = err(r#"duration_where(has_existed(a == 1), tumbling(0))"#);
    assert!(e.message.contains("must be a positive duration"), "{e}");
    let e = err(r#"true_within(a == 1, 5s)"#);
    assert!(
        e.message
            .contains("`true_within` takes a boolean timeline, found a predicate"),
        "{e}"
    );
    let e = err(r#"absent_after(a == 1, b == 2)"#);
    assert!(e.message.contains("`absent_after` takes 3 arguments, found 2"), "{e}");
    let e = err(r#"time_since(latest_event_to_state(a))"#);
    assert!(e.message.contains("`time_since` takes a predicate on events"), "{e}");
    let e = err(r#"duration_where(time_since(a == 1))"#);
    assert!(e.message.contains("found a duration timeline"), "{e}");
}

#[test]
fn conditions_are_predicates_over_any_columns_and_errors_say_where() {
    use crate::Value;
    use crate::dsl::parse_condition;
    let event = |cols: &[(&str, Value)]| crate::event::Event {
        key: "k".into(),
        time: 0,
        id: None,
        columns: cols
            .iter()
            .map(|(n, v)| (smol_str::SmolStr::new(n), v.clone()))
            .collect(),
    };
    let p = parse_condition("value == true && old != true").unwrap();
    assert!(p.matches(&event(&[("value", Value::Bool(true)), ("old", Value::Bool(false))])));
    assert!(!p.matches(&event(&[("value", Value::Bool(true)), ("old", Value::Bool(true))])));
    let p = parse_condition("from >= 1000 || key == \"card-1\"").unwrap();
    assert!(p.matches(&event(&[("from", Value::Int(1000))])));
    assert!(!p.matches(&event(&[("from", Value::Int(999))])));
    let e = parse_condition("value ==").unwrap_err();
    assert_eq!((e.line, e.column), (1, 9), "{e:?}");
    let e = parse_condition("value == true &&\n  old === true").unwrap_err();
    assert_eq!(e.line, 2, "{e:?}");
    let e = parse_condition("value == true && has_existed(x == 1)").unwrap_err();
    assert!(e.message.contains("timeline"), "{}", e.message);
    let e = parse_condition("value").unwrap_err();
    assert!(e.message.contains("the column `value`"), "{}", e.message);
    assert!(parse_condition("a = value == 1; a").is_err());
}
