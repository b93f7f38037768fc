//! Templated parameters. Every string in a node's `params` may use Jinja syntax over three
//! variables: `input` (the run input), `nodes.<name>` (an upstream node's output) and `run`
//! (`id`, `flow`). A string that is exactly one `{{ expression }}` yields the expression's JSON
//! value (a number stays a number); any other template renders to a string.

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use serde_json::Value;
use std::sync::LazyLock;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
});

/// Variables a template may read.
pub const TOP_LEVEL_VARS: &[&str] = &["input", "nodes", "run"];

/// True if `s` contains template syntax.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// If `s` is exactly one `{{ expr }}`, returns `expr`.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then(|| inner.trim())
}

/// Checks a template's syntax and returns the variable paths it reads (e.g. `nodes.charge.id`).
pub fn references(s: &str) -> Result<Vec<String>, String> {
    let tmpl = ENV
        .template_from_str(s)
        .map_err(|e| format!("template syntax error: {}", describe(&e)))?;
    let mut vars: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    vars.sort();
    Ok(vars)
}

/// Renders one string.
pub fn render_str(s: &str, ctx: &Value) -> Result<Value, String> {
    if !is_template(s) {
        return Ok(Value::String(s.to_string()));
    }
    if let Some(expr) = single_expression(s) {
        let v = eval_expression(s, expr, ctx)?;
        return serde_json::to_value(&v).map_err(|e| format!("in {s:?}: result is not JSON: {e}"));
    }
    ENV.render_str(s, JValue::from(Serde(ctx)))
        .map(Value::String)
        .map_err(|e| format!("in {s:?}: {}", describe(&e)))
}

/// Evaluates one expression. An undefined result is an error, as it is inside a longer
/// template: a typo or a missing input field must fail the attempt, not become `null`.
/// Use `| default(...)` or `is defined` for values that may be absent.
fn eval_expression(s: &str, expr: &str, ctx: &Value) -> Result<JValue, String> {
    let compiled = ENV
        .compile_expression(expr)
        .map_err(|e| format!("in {s:?}: {}", describe(&e)))?;
    let v = compiled
        .eval(JValue::from(Serde(ctx)))
        .map_err(|e| format!("in {s:?}: {}", describe(&e)))?;
    if v.is_undefined() {
        return Err(format!(
            "in {s:?}: `{expr}` is undefined; use `| default(...)` if it may be absent"
        ));
    }
    Ok(v)
}

/// Renders every string inside `v`, keeping the structure.
pub fn render_value(v: &Value, ctx: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => render_str(s, ctx)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_value(i, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, val) in map {
                out.insert(k.clone(), render_value(val, ctx)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Evaluates a branch condition: an expression's truthiness, or a rendered string that is
/// not empty, `false`, `0`, `no` or `none`.
pub fn eval_condition(s: &str, ctx: &Value) -> Result<bool, String> {
    if let Some(expr) = single_expression(s) {
        return eval_expression(s, expr, ctx).map(|v| v.is_true());
    }
    let rendered = ENV
        .render_str(s, JValue::from(Serde(ctx)))
        .map_err(|e| format!("in {s:?}: {}", describe(&e)))?;
    let t = rendered.trim().to_ascii_lowercase();
    Ok(!matches!(
        t.as_str(),
        "" | "false" | "0" | "no" | "none" | "null"
    ))
}

/// Calls `f(path, text)` for every string in `v`; `path` is extended with keys and indexes.
pub fn walk_strings(v: &Value, path: &str, f: &mut dyn FnMut(&str, &str)) {
    match v {
        Value::String(s) => f(path, s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_strings(item, &format!("{path}[{i}]"), f);
            }
        }
        Value::Object(map) => {
            for (k, val) in map {
                walk_strings(val, &format!("{path}.{k}"), f);
            }
        }
        _ => {}
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"input": {"amount": 120, "name": "Ada"}, "nodes": {"charge": {"id": "ch_1"}}, "run": {"id": "r1"}})
    }

    #[test]
    fn single_expressions_keep_their_type() {
        assert_eq!(
            render_str("{{ input.amount }}", &ctx()).unwrap(),
            json!(120)
        );
        assert_eq!(
            render_str("{{ nodes.charge }}", &ctx()).unwrap(),
            json!({"id": "ch_1"})
        );
    }

    #[test]
    fn mixed_templates_render_to_strings() {
        assert_eq!(
            render_str("Hi {{ input.name }}!", &ctx()).unwrap(),
            json!("Hi Ada!")
        );
        assert_eq!(render_str("plain", &ctx()).unwrap(), json!("plain"));
    }

    #[test]
    fn undefined_values_are_errors() {
        let err = render_str("{{ input.missing.deeper }}", &ctx()).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn a_missing_value_is_an_error_even_alone() {
        let err = render_str("{{ input.missing }}", &ctx()).unwrap_err();
        assert!(err.contains("`input.missing` is undefined"), "{err}");
        assert!(eval_condition("{{ input.vip }}", &ctx()).is_err());
        assert_eq!(
            render_str("{{ input.missing | default(7) }}", &ctx()).unwrap(),
            json!(7)
        );
        assert!(!eval_condition("{{ input.vip is defined and input.vip }}", &ctx()).unwrap());
    }

    #[test]
    fn conditions() {
        assert!(eval_condition("{{ input.amount > 100 }}", &ctx()).unwrap());
        assert!(!eval_condition("{{ input.amount > 500 }}", &ctx()).unwrap());
        assert!(!eval_condition("{% if false %}yes{% endif %}", &ctx()).unwrap());
    }

    #[test]
    fn references_list_nested_paths() {
        let refs = references("{{ nodes.charge.id }} {{ input.x }}").unwrap();
        assert!(
            refs.iter().any(|r| r.starts_with("nodes.charge")),
            "{refs:?}"
        );
        assert!(refs.iter().any(|r| r.starts_with("input")), "{refs:?}");
        assert!(references("{{ unclosed").unwrap_err().contains("syntax"));
    }
}
