//! `weft flow versions|diff|delete`: a flow's history and its removal.

use crate::args::{ClientOpts, Format};
use crate::client::Client;
use crate::output::{self, Table, cell, list, one_line, time};
use serde_json::Value;

/// Lists every version of a flow, oldest first.
pub async fn versions(name: &str, opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let flows = client.get(&["v1", "flows", name, "versions"], &[]).await?;
    if opts.output == Format::Json {
        output::print_json(&flows);
        return Ok(());
    }
    let mut table = Table::new(&["VERSION", "NODES", "CREATED", "DESCRIPTION"]);
    for f in list(&flows, "flows") {
        let nodes = f["spec"]["nodes"].as_object().map_or(0, |n| n.len());
        table.row(vec![
            cell(&f["version"]),
            nodes.to_string(),
            time(&f["created_at"]),
            cell(&f["spec"]["description"]),
        ]);
    }
    table.print();
    Ok(())
}

/// Prints what changed between two versions.
pub async fn diff(name: &str, from: u32, to: Option<u32>, opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let query = [
        ("from", Some(from.to_string())),
        ("to", to.map(|t| t.to_string())),
    ];
    let d = client.get(&["v1", "flows", name, "diff"], &query).await?;
    if opts.output == Format::Json {
        output::print_json(&d);
        return Ok(());
    }
    output::print_stdout(&render_diff(&d));
    Ok(())
}

/// The diff as a table: one row per added or removed node and per changed field.
fn render_diff(d: &Value) -> String {
    let mut table = Table::new(&["CHANGE", "NODE", "FIELD", "FROM", "TO"]);
    let json = |v: &Value| one_line(&v.to_string(), 40);
    for c in list(d, "flow_changes") {
        table.row(vec![
            "flow".into(),
            String::new(),
            cell(&c["path"]),
            json(&c["before"]),
            json(&c["after"]),
        ]);
    }
    for n in list(d, "added") {
        table.row(vec![
            "added".into(),
            cell(n),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    for n in list(d, "removed") {
        table.row(vec![
            "removed".into(),
            cell(n),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    for n in list(d, "changed") {
        for f in list(n, "fields") {
            table.row(vec![
                "changed".into(),
                cell(&n["node"]),
                cell(&f["path"]),
                json(&f["before"]),
                json(&f["after"]),
            ]);
        }
    }
    format!(
        "flow {} version {} -> {}\n{}",
        cell(&d["name"]),
        cell(&d["from"]),
        cell(&d["to"]),
        table.render()
    )
}

/// Deletes a flow.
pub async fn delete(name: &str, opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let answer = client.delete(&["v1", "flows", name]).await?;
    if opts.output == Format::Json {
        output::print_json(&answer);
    }
    eprintln!(
        "flow {name} deleted ({} versions); its finished runs stay readable",
        cell(&answer["versions_deleted"])
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_render_one_row_per_change() {
        let d = json!({"name": "f", "from": 1, "to": 2, "flow_changes": [],
            "added": ["new"], "removed": [],
            "changed": [{"node": "a", "fields": [{"path": "params.url", "before": "x", "after": "y"}]}]});
        let text = render_diff(&d);
        assert!(text.starts_with("flow f version 1 -> 2\n"), "{text}");
        assert!(text.contains("added    new"), "{text}");
        assert!(
            text.contains("changed  a     params.url  \"x\"   \"y\""),
            "{text}"
        );
    }
}
