//! `weft run start-batch FILE` and `weft run cancel ID...`: many runs in one request, each
//! with its own result. The command fails (exit 1) if any item failed, after printing all.

use crate::Failed;
use crate::args::{ClientOpts, Format};
use crate::client::Client;
use crate::output::{self, Table, cell, list};
use anyhow::Context;
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;

/// Reads the starts of a batch: a JSON array, or JSON Lines (one object per line).
pub fn read_batch(text: &str) -> anyhow::Result<Vec<Value>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).context("the batch file is not a JSON array");
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("line {} of the batch file is not JSON", i + 1))?;
        out.push(v);
    }
    Ok(out)
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Starts every run in `file` with one request.
pub async fn start_batch(file: &Path, opts: &ClientOpts) -> anyhow::Result<()> {
    let runs = read_batch(&read_file(file)?)?;
    let client = Client::new(&opts.url)?;
    let answer = client
        .post(&["v1", "runs", "batch"], &json!({ "runs": runs }))
        .await?;
    let items = list(&answer, "runs");
    if opts.output == Format::Json {
        output::print_json(&answer);
    } else {
        let mut table = Table::new(&["#", "ID", "CREATED", "ERROR"]);
        for (i, item) in items.iter().enumerate() {
            table.row(vec![
                i.to_string(),
                cell(&item["id"]),
                cell(&item["created"]),
                item_error(item),
            ]);
        }
        table.print();
    }
    finish(items, "started")
}

/// Cancels one run (its own endpoint) or many (the batch endpoint).
pub async fn cancel(ids: &[String], opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    if let [id] = ids {
        let answer = client
            .post(&["v1", "runs", id, "cancel"], &json!({}))
            .await?;
        if opts.output == Format::Json && !answer.is_null() {
            output::print_json(&answer);
        }
        eprintln!("run {id} cancelled");
        return Ok(());
    }
    let answer = client
        .post(&["v1", "runs", "batch", "cancel"], &json!({ "ids": ids }))
        .await?;
    let items = list(&answer, "runs");
    if opts.output == Format::Json {
        output::print_json(&answer);
    } else {
        let mut table = Table::new(&["ID", "CANCELLED", "ERROR"]);
        for item in items {
            table.row(vec![
                cell(&item["id"]),
                cell(&item["cancelled"]),
                item_error(item),
            ]);
        }
        table.print();
    }
    finish(items, "cancelled")
}

/// `code: message` of an item's error; empty when it succeeded.
pub fn item_error(item: &Value) -> String {
    let e = &item["error"];
    if e.is_null() {
        return String::new();
    }
    format!("{}: {}", cell(&e["code"]), cell(&e["message"]))
}

/// Reports the count on stderr; exit 1 if any item failed.
pub fn finish(items: &[Value], done: &str) -> anyhow::Result<()> {
    let failed = items.iter().filter(|i| !i["error"].is_null()).count();
    eprintln!("{} {done}, {failed} failed", items.len() - failed);
    if failed > 0 {
        return Err(Failed(1).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_json_arrays_or_json_lines() {
        let a = read_batch(r#" [{"flow": "a"}, {"flow": "b"}]"#).unwrap();
        assert_eq!(a.len(), 2);
        let l = read_batch("{\"flow\": \"a\"}\n\n{\"flow\": \"b\", \"input\": {}}\n").unwrap();
        assert_eq!(
            l,
            vec![json!({"flow": "a"}), json!({"flow": "b", "input": {}})]
        );
        let e = read_batch("{\"flow\": \"a\"}\nnope\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }
}
