//! `weft flow apply|list|get` (and, in `versions.rs`, `versions|diff|delete`).

use crate::Failed;
use crate::args::{ClientOpts, FlowCmd, Format};
use crate::client::{ApiError, Client};
use crate::output::{self, Table, cell, list, time};
use anyhow::{Context, bail};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use std::path::Path;

/// Runs a `weft flow` subcommand.
pub async fn run(cmd: FlowCmd) -> anyhow::Result<()> {
    match cmd {
        FlowCmd::Apply { files, client } => apply(&files, &client).await,
        FlowCmd::List { client } => flow_list(&client).await,
        FlowCmd::Get {
            name,
            version,
            client,
        } => flow_get(&name, version, &client).await,
        FlowCmd::Versions { name, client } => super::versions::versions(&name, &client).await,
        FlowCmd::Diff {
            name,
            from,
            to,
            client,
        } => super::versions::diff(&name, from, to, &client).await,
        FlowCmd::Delete { name, client } => super::versions::delete(&name, &client).await,
    }
}

/// The media type of a flow file, by extension.
fn media_type(path: &Path) -> anyhow::Result<&'static str> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("json") => Ok("application/json"),
        Some("yaml" | "yml") => Ok("application/yaml"),
        _ => bail!(
            "{}: cannot tell the format; name flow files *.yaml, *.yml or *.json",
            path.display()
        ),
    }
}

/// Applies every file, reporting each failure; fails (exit 1) if any file was not applied.
async fn apply(files: &[std::path::PathBuf], opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let mut table = Table::new(&["FILE", "FLOW", "VERSION", "CHANGE"]);
    let mut failed = 0;
    for file in files {
        match apply_one(&client, file).await {
            Ok(applied) => {
                if opts.output == Format::Json {
                    output::print_json(&applied);
                }
                let change = if applied["created"].as_bool() == Some(true) {
                    "created"
                } else {
                    "unchanged"
                };
                table.row(vec![
                    file.display().to_string(),
                    cell(&applied["name"]),
                    cell(&applied["version"]),
                    change.into(),
                ]);
            }
            Err(e) => {
                if e.is::<crate::client::Unreachable>() {
                    return Err(e);
                }
                failed += 1;
                report_failure(file, &e);
            }
        }
    }
    if opts.output == Format::Table && failed < files.len() {
        table.print();
    }
    if failed > 0 {
        return Err(Failed(1).into());
    }
    Ok(())
}

async fn apply_one(client: &Client, file: &Path) -> anyhow::Result<Value> {
    let media = media_type(file)?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    let req = client
        .request(Method::POST, &["v1", "flows"])
        .header(CONTENT_TYPE, media)
        .body(text);
    client.send(req).await
}

fn report_failure(file: &Path, e: &anyhow::Error) {
    match e.downcast_ref::<ApiError>() {
        Some(api) if api.code == "flow_invalid" => {
            eprintln!("error: {}: invalid flow", file.display());
            for line in api.detail_lines() {
                eprintln!("  {line}");
            }
        }
        Some(api) => eprintln!("{}: {api}", file.display()),
        None => eprintln!("error: {e:#}"),
    }
}

async fn flow_list(opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let flows = client.get(&["v1", "flows"], &[]).await?;
    if opts.output == Format::Json {
        output::print_json(&flows);
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "VERSION", "NODES", "CREATED", "DESCRIPTION"]);
    for f in list(&flows, "flows") {
        let nodes = f["spec"]["nodes"].as_object().map_or(0, |n| n.len());
        table.row(vec![
            cell(&f["name"]),
            cell(&f["version"]),
            nodes.to_string(),
            time(&f["created_at"]),
            cell(&f["spec"]["description"]),
        ]);
    }
    table.print();
    Ok(())
}

/// Prints a stored flow; as a table, its document in YAML, ready to edit and apply again.
async fn flow_get(name: &str, version: Option<u32>, opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let flow = client
        .get(
            &["v1", "flows", name],
            &[("version", version.map(|v| v.to_string()))],
        )
        .await?;
    if opts.output == Format::Json {
        output::print_json(&flow);
        return Ok(());
    }
    let yaml = serde_saphyr::to_string(&flow["spec"]).context("cannot print the flow as YAML")?;
    output::print_stdout(&format!(
        "# flow {} version {}, created {}\n{yaml}",
        cell(&flow["name"]),
        cell(&flow["version"]),
        time(&flow["created_at"]),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_follows_the_extension() {
        assert_eq!(media_type(Path::new("a.json")).unwrap(), "application/json");
        assert_eq!(media_type(Path::new("a.YAML")).unwrap(), "application/yaml");
        assert_eq!(media_type(Path::new("a.yml")).unwrap(), "application/yaml");
        let err = media_type(Path::new("flow.txt")).unwrap_err().to_string();
        assert!(err.contains("flow.txt") && err.contains("*.yaml"), "{err}");
    }
}
