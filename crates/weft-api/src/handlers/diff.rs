//! A structured diff of two flow versions: which nodes were added, removed or changed, and
//! for a changed node which of its fields differ (`params.url`, `needs`, `retry`...).
//!
//! Computed from the stored [`FlowSpec`]s rather than from document text, so formatting and
//! key order never show up as changes.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use weft_core::FlowSpec;

/// What changed between two versions of a flow.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FlowDiff {
    /// Flow name.
    pub name: String,
    /// The older version compared.
    pub from: u32,
    /// The newer version compared.
    pub to: u32,
    /// Flow-level fields that differ (`description`, `defaults.retry`...).
    pub flow_changes: Vec<FieldChange>,
    /// Nodes only in `to`.
    pub added: Vec<String>,
    /// Nodes only in `from`.
    pub removed: Vec<String>,
    /// Nodes in both whose definition differs.
    pub changed: Vec<NodeChange>,
}

/// One node present in both versions with a different definition.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeChange {
    /// Node name.
    pub node: String,
    /// Its fields that differ.
    pub fields: Vec<FieldChange>,
}

/// One field that differs: its dotted path and both values (`null` when absent).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FieldChange {
    /// Dotted path inside the node or flow, e.g. `params.url`.
    pub path: String,
    /// Value in `from`.
    #[schema(value_type = Object)]
    pub before: Value,
    /// Value in `to`.
    #[schema(value_type = Object)]
    pub after: Value,
}

/// Diffs version `from` (`a`) against version `to` (`b`).
pub(crate) fn diff(a: &FlowSpec, from: u32, b: &FlowSpec, to: u32) -> FlowDiff {
    let mut flow_changes = Vec::new();
    let (mut fa, mut fb) = (to_json(a), to_json(b));
    if let (Some(fa), Some(fb)) = (fa.as_object_mut(), fb.as_object_mut()) {
        fa.remove("nodes");
        fb.remove("nodes");
    }
    fields("", &fa, &fb, &mut flow_changes);
    let added = b
        .nodes
        .keys()
        .filter(|k| !a.nodes.contains_key(*k))
        .cloned()
        .collect();
    let removed = a
        .nodes
        .keys()
        .filter(|k| !b.nodes.contains_key(*k))
        .cloned()
        .collect();
    let mut changed = Vec::new();
    for (name, na) in &a.nodes {
        let Some(nb) = b.nodes.get(name) else {
            continue;
        };
        let mut f = Vec::new();
        fields("", &to_json(na), &to_json(nb), &mut f);
        if !f.is_empty() {
            changed.push(NodeChange {
                node: name.clone(),
                fields: f,
            });
        }
    }
    FlowDiff {
        name: b.name.clone(),
        from,
        to,
        flow_changes,
        added,
        removed,
        changed,
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Recurses into objects so a change names the deepest differing key; arrays and scalars
/// are compared whole.
fn fields(prefix: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(oa), Value::Object(ob)) => {
            let mut keys: Vec<&String> = oa.keys().collect();
            keys.extend(ob.keys().filter(|k| !oa.contains_key(*k)));
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let null = Value::Null;
                fields(
                    &path,
                    oa.get(k).unwrap_or(&null),
                    ob.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ => out.push(FieldChange {
            path: prefix.to_string(),
            before: a.clone(),
            after: b.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FlowSpec {
        weft_core::parse_flow(yaml).unwrap()
    }

    #[test]
    fn added_removed_and_changed_fields_are_named() {
        let a = spec(
            "name: f\nnodes:\n  a: {type: log, params: {message: hi}}\n  gone: {type: noop}\n",
        );
        let b = spec(
            "name: f\ndescription: new\nnodes:\n  a: {type: log, params: {message: ho}}\n  new: {type: noop, needs: [a]}\n",
        );
        let d = diff(&a, 1, &b, 2);
        assert_eq!(d.added, vec!["new"]);
        assert_eq!(d.removed, vec!["gone"]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].node, "a");
        assert_eq!(d.changed[0].fields[0].path, "params.message");
        assert_eq!(d.changed[0].fields[0].before, "hi");
        assert_eq!(d.changed[0].fields[0].after, "ho");
        assert_eq!(d.flow_changes[0].path, "description");
    }

    #[test]
    fn identical_specs_have_no_changes() {
        let a = spec("name: f\nnodes:\n  a: {type: noop}\n");
        let d = diff(&a, 1, &a, 1);
        assert!(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty());
        assert!(d.flow_changes.is_empty());
    }
}
