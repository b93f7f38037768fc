use super::*;
use crate::spec::parse_flow;

fn issues(doc: &str) -> Vec<Issue> {
    let spec = parse_flow(doc).expect("parses");
    compile(&spec).expect_err("must be invalid").issues
}

fn has(issues: &[Issue], path: &str, needle: &str) -> bool {
    issues
        .iter()
        .any(|i| i.path == path && i.message.contains(needle))
}

#[test]
fn a_valid_flow_compiles_with_edges_and_defaults() {
    let spec = parse_flow(
        "name: order\ndefaults: {queue: orders, retry: {max_attempts: 3}}\nnodes:\n  a: {type: noop}\n  b: {type: noop, needs: [a], queue: heavy, priority: 5}\n  c: {type: transform, needs: [a, b], params: {value: '{{ nodes.a }}'}}\n",
    )
    .unwrap();
    let flow = compile(&spec).unwrap();
    assert_eq!(flow.roots, vec![0]);
    assert_eq!(flow.nodes[0].successors, vec![1, 2]);
    assert_eq!(flow.nodes[1].queue, "heavy");
    assert_eq!(flow.nodes[0].queue, "orders");
    assert_eq!(flow.nodes[2].retry.max_attempts, 3);
    assert_eq!(flow.nodes[2].reads_nodes, vec!["a".to_string()]);
    assert!(flow.nodes[2].templated);
}

#[test]
fn unknown_type_suggests_the_closest() {
    let i = issues("name: f\nnodes:\n  a: {type: htp}\n");
    assert!(has(&i, "nodes.a.type", "did you mean `http`"), "{i:?}");
    let i = issues("name: f\nnodes:\n  a: {type: htttp, params: {url: 'http://x'}}\n");
    assert_eq!(
        i.len(),
        1,
        "only the type is reported, not params checked as another type: {i:?}"
    );
}

#[test]
fn misspelled_needs_suggest_the_closest_name() {
    let i =
        issues("name: f\nnodes:\n  charge: {type: noop}\n  ship: {type: noop, needs: [chrage]}\n");
    assert!(
        has(&i, "nodes.ship.needs[0]", "did you mean `charge`"),
        "{i:?}"
    );
}

#[test]
fn cycles_are_named() {
    let i = issues(
        "name: f\nnodes:\n  a: {type: noop, needs: [c]}\n  b: {type: noop, needs: [a]}\n  c: {type: noop, needs: [b]}\n",
    );
    assert!(
        i.iter()
            .any(|x| x.message.contains("cycle: ") && x.message.contains("a -> b -> c -> a")),
        "{i:?}"
    );
}

#[test]
fn bad_durations_name_the_field() {
    let i = issues(
        "name: f\nnodes:\n  a: {type: delay, params: {duration: soon}}\n  b: {type: noop, timeout: 5 sex}\n",
    );
    assert!(
        has(&i, "nodes.a.params.duration", "invalid duration"),
        "{i:?}"
    );
    assert!(has(&i, "nodes.b.timeout", "ms, s, m, h, d"), "{i:?}");
}

#[test]
fn templates_may_only_read_upstream_nodes() {
    let i = issues(
        "name: f\nnodes:\n  a: {type: noop}\n  b: {type: noop}\n  c: {type: log, needs: [a], params: {message: '{{ nodes.b }} {{ nodes.zz }} {{ inptu.x }}'}}\n",
    );
    assert!(
        has(&i, "nodes.c.params.message", "not upstream of `c`"),
        "{i:?}"
    );
    assert!(
        has(&i, "nodes.c.params.message", "unknown node `zz`"),
        "{i:?}"
    );
    assert!(
        has(&i, "nodes.c.params.message", "did you mean `input`"),
        "{i:?}"
    );
}

#[test]
fn params_are_checked_per_type() {
    let i = issues(
        "name: f\nnodes:\n  h: {type: http, params: {url: 'ftp://x', method: FETCH, fail_on: [7xx], bogus: 1}}\n",
    );
    assert!(
        has(&i, "nodes.h.params.bogus", "unknown field `bogus`"),
        "{i:?}"
    );
    let i = issues(
        "name: f\nnodes:\n  h: {type: http, params: {url: 'ftp://x', method: FETCH, fail_on: [7xx]}}\n",
    );
    assert!(has(&i, "nodes.h.params.url", "absolute"), "{i:?}");
    assert!(has(&i, "nodes.h.params.method", "allowed: GET"), "{i:?}");
    assert!(has(&i, "nodes.h.params.fail_on[0]", "class (5xx)"), "{i:?}");
}

#[test]
fn branch_paths_must_be_direct_successors() {
    let i = issues(
        "name: f\nnodes:\n  b: {type: branch, params: {condition: '{{ input.x }}', then: [yes_path], else: [other]}}\n  yes_path: {type: noop, needs: [b]}\n  other: {type: noop}\n",
    );
    assert!(
        has(&i, "nodes.b.params.else[0]", "must list `b` in its needs"),
        "{i:?}"
    );
}

#[test]
fn retry_bounds_are_enforced() {
    let i = issues(
        "name: f\nnodes:\n  a: {type: noop, retry: {max_attempts: 0, multiplier: 50, jitter: 2}}\n",
    );
    assert!(
        has(&i, "nodes.a.retry.max_attempts", "between 1 and 100"),
        "{i:?}"
    );
    assert!(
        has(&i, "nodes.a.retry.multiplier", "between 1.0 and 10.0"),
        "{i:?}"
    );
    assert!(
        has(&i, "nodes.a.retry.jitter", "between 0.0 and 1.0"),
        "{i:?}"
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let i = issues("name: 'bad name!'\nnodes:\n  a: {type: nope}\n  b: {type: noop, needs: [x]}\n");
    assert!(i.len() >= 3, "{i:?}");
}

#[test]
fn a_lone_node_needing_something_says_there_is_nothing_to_need() {
    let i = issues("name: f\nnodes:\n  a: {type: noop, needs: [zz]}\n");
    assert!(
        has(&i, "nodes.a.needs[0]", "no other node to need"),
        "{i:?}"
    );
}

#[test]
fn concurrency_and_rate_limits_compile_with_node_overriding_the_default() {
    let spec = parse_flow(
        "name: f\ndefaults:\n  concurrency: {key: 'c:{{ input.c }}', limit: 5}\nnodes:\n  a: {type: noop}\n  b:\n    type: noop\n    concurrency: {key: 'api', limit: 2}\n    rate_limit: {limit: 10, per: 1s, key: '{{ run.flow }}'}\n",
    )
    .unwrap();
    let flow = compile(&spec).unwrap();
    let a = flow.nodes[0].concurrency.as_ref().unwrap();
    assert_eq!((a.key.as_str(), a.limit), ("c:{{ input.c }}", 5));
    let b = &flow.nodes[1];
    assert_eq!(b.concurrency.as_ref().unwrap().limit, 2);
    let r = b.rate_limit.as_ref().unwrap();
    assert_eq!((r.limit, r.per), (10, Duration::from_secs(1)));
    assert!(flow.nodes[0].rate_limit.is_none());
}

#[test]
fn zero_and_negative_limits_and_intervals_name_the_field() {
    let i = issues(
        "name: f\nnodes:\n  charge:\n    type: noop\n    concurrency: {key: k, limit: 0}\n    rate_limit: {limit: -3, per: 0s}\n",
    );
    assert!(
        has(
            &i,
            "nodes.charge.concurrency.limit",
            "must be at least 1, got 0"
        ),
        "{i:?}"
    );
    assert!(
        has(
            &i,
            "nodes.charge.rate_limit.limit",
            "must be at least 1, got -3"
        ),
        "{i:?}"
    );
    assert!(
        has(
            &i,
            "nodes.charge.rate_limit.per",
            "must be longer than zero"
        ),
        "{i:?}"
    );
    let i = issues("name: f\nnodes:\n  a: {type: noop, rate_limit: {limit: 1, per: -1s}}\n");
    assert!(
        has(&i, "nodes.a.rate_limit.per", "invalid duration"),
        "{i:?}"
    );
    let i = issues(
        "name: f\ndefaults: {concurrency: {key: k, limit: -1}}\nnodes:\n  a: {type: noop}\n",
    );
    assert!(
        has(&i, "defaults.concurrency.limit", "must be at least 1"),
        "{i:?}"
    );
    assert_eq!(i.len(), 1, "a default's problem is reported once: {i:?}");
}

#[test]
fn bad_key_templates_name_the_field() {
    let i = issues(
        "name: f\nnodes:\n  u: {type: noop}\n  a:\n    type: noop\n    needs: [u]\n    concurrency: {key: '{{ nodes.u.id }}', limit: 1}\n    rate_limit: {limit: 1, per: 1s, key: '{{ input.x '}\n",
    );
    assert!(
        has(
            &i,
            "nodes.a.concurrency.key",
            "may read only `input` and `run`"
        ),
        "{i:?}"
    );
    assert!(
        has(&i, "nodes.a.rate_limit.key", "template syntax error"),
        "{i:?}"
    );
    let i = issues("name: f\nnodes:\n  a: {type: noop, concurrency: {key: '', limit: 1}}\n");
    assert!(
        has(&i, "nodes.a.concurrency.key", "must not be empty"),
        "{i:?}"
    );
    let err = parse_flow("name: f\nnodes:\n  a: {type: noop, concurrency: {key: k, limt: 1}}\n")
        .unwrap_err();
    assert_eq!(err.issues[0].path, "nodes.a.concurrency.limt");
}
