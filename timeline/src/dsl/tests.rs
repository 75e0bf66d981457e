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
    assert_eq!(q.result.canonical(), "(!has_existed(x == 1) || has_existed(x == 1))");
}

#[test]
fn canonical_form_reparses_to_the_same_node() {
    let op = parse(CIRR).unwrap();
    for node in op.post_order() {
        let again = parse(node.canonical()).unwrap();
        assert_eq!(again.id(), node.id(), "{}", node.canonical());
    }
    let odd = parse(r#"latest_event_to_state(col("a b")) != -1.5"#).unwrap();
    assert_eq!(parse(odd.canonical()).unwrap().id(), odd.id());
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
