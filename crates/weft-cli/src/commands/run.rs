//! `weft run start|get|explain|list|cancel|retry|tasks|start-batch`.

use super::read_input;
use crate::Failed;
use crate::args::{ClientOpts, Format, RunCmd};
use crate::client::Client;
use crate::output::{self, MAX_CELL, Table, cell, list, one_line, time};
use serde_json::{Value, json};
use std::time::Duration;
use weft_core::RunState;

/// First pause between polls of `run start --wait`; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(50);
/// Longest pause between polls of `run start --wait`.
const MAX_POLL: Duration = Duration::from_millis(500);

/// Runs a `weft run` subcommand.
pub async fn run(cmd: RunCmd) -> anyhow::Result<()> {
    match cmd {
        RunCmd::Start {
            flow,
            input,
            version,
            idempotency_key,
            at,
            delay,
            wait,
            client,
        } => {
            let mut body = json!({ "flow": flow, "input": read_input(&input)? });
            if let Some(v) = version {
                body["version"] = v.into();
            }
            if let Some(k) = idempotency_key {
                body["idempotency_key"] = k.into();
            }
            if let Some(at) = at {
                body["start_at"] = at.into();
            }
            if let Some(d) = delay {
                body["delay"] = d.into();
            }
            start(&body, wait, &client).await
        }
        RunCmd::Explain { id, client } => {
            let c = Client::new(&client.url)?;
            let answer = c.get(&["v1", "runs", &id, "explain"], &[]).await?;
            if client.output == Format::Json {
                output::print_json(&answer);
                return Ok(());
            }
            let mut text = format!(
                "run      {}\nflow     {}\nstate    {}\n{}\n",
                cell(&answer["run_id"]),
                cell(&answer["flow"]),
                cell(&answer["state"]),
                cell(&answer["summary"]),
            );
            let reasons = list(&answer, "reasons");
            if !reasons.is_empty() {
                let mut table = Table::new(&["NODE", "STATE", "WHY", "UNTIL"]).max_cell(200);
                for r in reasons {
                    table.row(vec![
                        cell(&r["node"]),
                        cell(&r["task_state"]),
                        cell(&r["message"]),
                        time(&r["until"]),
                    ]);
                }
                text.push('\n');
                text.push_str(&table.render());
            }
            output::print_stdout(&text);
            Ok(())
        }
        RunCmd::Get { id, client } => {
            let c = Client::new(&client.url)?;
            let run = c.get(&["v1", "runs", &id], &[]).await?;
            print_run(&run, client.output);
            Ok(())
        }
        RunCmd::List {
            flow,
            state,
            limit,
            before,
            created_after,
            created_before,
            client,
        } => {
            let query = [
                ("flow", flow),
                ("state", state),
                ("limit", limit.map(|l| l.to_string())),
                ("before", before),
                ("created_after", created_after),
                ("created_before", created_before),
            ];
            run_list(&query, &client).await
        }
        RunCmd::Cancel { ids, client } => super::batch::cancel(&ids, &client).await,
        RunCmd::StartBatch { file, client } => super::batch::start_batch(&file, &client).await,
        RunCmd::Retry { id, client } => {
            let c = Client::new(&client.url)?;
            let answer = c.post(&["v1", "runs", &id, "retry"], &json!({})).await?;
            if client.output == Format::Json {
                output::print_json(&answer);
            }
            let nodes: Vec<String> = list(&answer, "replayed").iter().map(cell).collect();
            eprintln!("run {id} retried from {}", nodes.join(", "));
            Ok(())
        }
        RunCmd::Tasks { id, client } => {
            let c = Client::new(&client.url)?;
            let tasks = c.get(&["v1", "runs", &id, "tasks"], &[]).await?;
            print_tasks(&tasks, client.output);
            Ok(())
        }
    }
}

/// Prints every attempt of every node: one row per finished attempt, then one for the
/// node's current attempt when the history does not end with it.
fn print_tasks(tasks: &Value, format: Format) {
    if format == Format::Json {
        output::print_json(tasks);
        return;
    }
    let mut table = Table::new(&["NODE", "STATE", "ATTEMPT", "STARTED", "FINISHED", "ERROR"]);
    for t in list(tasks, "tasks") {
        let attempts = list(t, "attempts");
        for a in attempts {
            table.row(vec![
                cell(&t["node"]),
                "failed".into(),
                cell(&a["attempt"]),
                time(&a["started_at"]),
                time(&a["finished_at"]),
                cell(&a["error"]),
            ]);
        }
        let last = attempts.last().map(|a| &a["attempt"]);
        if last != Some(&t["attempt"]) {
            table.row(vec![
                cell(&t["node"]),
                cell(&t["state"]),
                cell(&t["attempt"]),
                time(&t["started_at"]),
                time(&t["finished_at"]),
                String::new(),
            ]);
        }
    }
    table.print();
}

/// True if `state` names a state a run does not leave by itself.
fn is_terminal(state: &Value) -> bool {
    state
        .as_str()
        .and_then(RunState::parse)
        .is_some_and(RunState::is_terminal)
}

async fn start(body: &Value, wait: bool, opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let created = client.post(&["v1", "runs"], body).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    if created["created"].as_bool() == Some(false) {
        eprintln!("run {id} already exists for this idempotency key; not started again");
    }
    if !wait {
        match opts.output {
            Format::Json => output::print_json(&created),
            Format::Table => output::print_stdout(&format!("{id}\n")),
        }
        return Ok(());
    }
    let mut pause = FIRST_POLL;
    let run = loop {
        let run = client.get(&["v1", "runs", &id], &[]).await?;
        if is_terminal(&run["state"]) {
            break run;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    };
    print_run(&run, opts.output);
    if run["state"] != "succeeded" {
        eprintln!("run {id} {}", cell(&run["state"]));
        return Err(Failed(1).into());
    }
    Ok(())
}

/// Prints a run view: as a table, a summary and then one row per node.
pub fn print_run(run: &Value, format: Format) {
    if format == Format::Json {
        output::print_json(run);
        return;
    }
    let mut text = String::new();
    let mut line = |k: &str, v: String| {
        if !v.is_empty() {
            text.push_str(&format!("{k:<9}{v}\n"));
        }
    };
    line("run", cell(&run["id"]));
    line(
        "flow",
        format!("{} (version {})", cell(&run["flow"]), cell(&run["version"])),
    );
    line("state", cell(&run["state"]));
    line("created", time(&run["created_at"]));
    line("finished", time(&run["finished_at"]));
    line("error", one_line(&cell(&run["error"]), 200));
    text.push('\n');
    let mut table = Table::new(&["NODE", "STATE", "ATTEMPT", "OUTPUT / ERROR"]);
    for node in list(run, "nodes") {
        table.row(vec![
            cell(&node["node"]),
            cell(&node["state"]),
            cell(&node["attempt"]),
            node_result(node),
        ]);
    }
    text.push_str(&table.render());
    output::print_stdout(&text);
}

/// A node's output, or its error while it has no output.
fn node_result(node: &Value) -> String {
    match (&node["output"], &node["error"]) {
        (Value::Null, Value::Null) => String::new(),
        (Value::Null, err) => format!("error: {}", cell(err)),
        (out, _) => one_line(&cell(out), MAX_CELL),
    }
}

async fn run_list(query: &[(&str, Option<String>)], opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let page = client.get(&["v1", "runs"], query).await?;
    if opts.output == Format::Json {
        output::print_json(&page);
        return Ok(());
    }
    let mut table = Table::new(&["ID", "FLOW", "VERSION", "STATE", "CREATED", "FINISHED"]);
    for r in list(&page, "runs") {
        table.row(vec![
            cell(&r["id"]),
            cell(&r["flow"]),
            cell(&r["version"]),
            cell(&r["state"]),
            time(&r["created_at"]),
            time(&r["finished_at"]),
        ]);
    }
    table.print();
    if let Some(next) = page["next"].as_str() {
        eprintln!("more runs: add --before {next}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states() {
        for s in ["succeeded", "failed", "cancelled"] {
            assert!(is_terminal(&json!(s)), "{s}");
        }
        for s in ["queued", "running"] {
            assert!(!is_terminal(&json!(s)), "{s}");
        }
        assert!(!is_terminal(&json!(null)));
    }

    #[test]
    fn node_results_prefer_output_then_error() {
        assert_eq!(
            node_result(&json!({"output": {"a": 1}, "error": "old"})),
            r#"{"a":1}"#
        );
        assert_eq!(
            node_result(&json!({"output": null, "error": "boom"})),
            "error: boom"
        );
        assert_eq!(node_result(&json!({"output": null, "error": null})), "");
    }
}
