//! Operating a server: `weft dlq`, `weft queue`, `weft nodes`, `weft workers` and
//! `weft openapi`.

use crate::args::{ClientOpts, DlqCmd, Format, NodesArgs, QueueCmd};
use crate::client::Client;
use crate::output::{self, Table, cell, list, time};
use serde_json::{Value, json};

/// Runs a `weft dlq` subcommand.
pub async fn dlq(cmd: DlqCmd) -> anyhow::Result<()> {
    match cmd {
        DlqCmd::List {
            flow,
            node,
            limit,
            client,
        } => {
            let c = Client::new(&client.url)?;
            let query = [
                ("flow", flow),
                ("node", node),
                ("limit", limit.map(|l| l.to_string())),
            ];
            let dead = c.get(&["v1", "dlq"], &query).await?;
            if client.output == Format::Json {
                output::print_json(&dead);
                return Ok(());
            }
            let mut table = Table::new(&["RUN", "FLOW", "NODE", "ATTEMPTS", "DEAD AT", "ERROR"]);
            for d in list(&dead, "dead") {
                table.row(vec![
                    cell(&d["run_id"]),
                    cell(&d["flow"]),
                    cell(&d["node"]),
                    list(d, "attempts").len().to_string(),
                    time(&d["dead_at"]),
                    cell(&d["error"]),
                ]);
            }
            table.print();
            Ok(())
        }
        DlqCmd::Replay {
            run_id: Some(run_id),
            node: Some(node),
            client,
            ..
        } => {
            let c = Client::new(&client.url)?;
            let answer = c
                .post(&["v1", "dlq", &run_id, &node, "replay"], &json!({}))
                .await?;
            if client.output == Format::Json && !answer.is_null() {
                output::print_json(&answer);
            }
            eprintln!("replayed node {node} of run {run_id}; the run resumes from it");
            Ok(())
        }
        DlqCmd::Replay {
            flow,
            by_node,
            limit,
            client,
            ..
        } => {
            let c = Client::new(&client.url)?;
            let body = json!({"flow": flow, "node": by_node, "limit": limit});
            let body = Value::Object(
                body.as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            let answer = c.post(&["v1", "dlq", "replay"], &body).await?;
            let items = list(&answer, "replayed");
            if client.output == Format::Json {
                output::print_json(&answer);
            } else {
                let mut table = Table::new(&["RUN", "NODE", "REPLAYED", "ERROR"]);
                for i in items {
                    table.row(vec![
                        cell(&i["run_id"]),
                        cell(&i["node"]),
                        cell(&i["replayed"]),
                        super::batch::item_error(i),
                    ]);
                }
                table.print();
            }
            super::batch::finish(items, "replayed")
        }
        DlqCmd::Show {
            run_id,
            node,
            client,
        } => {
            let c = Client::new(&client.url)?;
            let d = c.get(&["v1", "dlq", &run_id, &node], &[]).await?;
            if client.output == Format::Json {
                output::print_json(&d);
                return Ok(());
            }
            let mut text = format!(
                "run      {}\nflow     {}\nnode     {}\ndead at  {}\nerror    {}\n\n",
                cell(&d["run_id"]),
                cell(&d["flow"]),
                cell(&d["node"]),
                time(&d["dead_at"]),
                cell(&d["error"]),
            );
            let mut table = Table::new(&["ATTEMPT", "STARTED", "FINISHED", "ERROR"]).max_cell(200);
            for a in list(&d, "attempts") {
                table.row(vec![
                    cell(&a["attempt"]),
                    time(&a["started_at"]),
                    time(&a["finished_at"]),
                    cell(&a["error"]),
                ]);
            }
            text.push_str(&table.render());
            output::print_stdout(&text);
            Ok(())
        }
        DlqCmd::Discard {
            run_id,
            node,
            client,
        } => {
            let c = Client::new(&client.url)?;
            let answer = c.delete(&["v1", "dlq", &run_id, &node]).await?;
            if client.output == Format::Json {
                output::print_json(&answer);
            }
            eprintln!("discarded node {node} of run {run_id}; the run stays failed");
            Ok(())
        }
    }
}

/// Runs a `weft queue` subcommand.
pub async fn queue(cmd: QueueCmd) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::List { client } => {
            let c = Client::new(&client.url)?;
            let queues = c.get(&["v1", "queues"], &[]).await?;
            print_queues(&queues, list(&queues, "queues"), client.output);
            Ok(())
        }
        QueueCmd::Set {
            name,
            concurrency,
            pause,
            resume,
            client,
        } => {
            let mut change = json!({});
            if let Some(c) = concurrency {
                change["concurrency"] = c.into();
            }
            if pause || resume {
                change["paused"] = pause.into();
            }
            let c = Client::new(&client.url)?;
            let queue = c.put(&["v1", "queues", &name], &change).await?;
            print_queues(&queue, std::slice::from_ref(&queue), client.output);
            Ok(())
        }
        QueueCmd::Pause { name, client } => switch(&name, "pause", &client).await,
        QueueCmd::Resume { name, client } => switch(&name, "resume", &client).await,
    }
}

/// `POST /v1/queues/{name}/pause` or `/resume`.
async fn switch(name: &str, action: &str, client: &ClientOpts) -> anyhow::Result<()> {
    let c = Client::new(&client.url)?;
    let queue = c.post(&["v1", "queues", name, action], &json!({})).await?;
    print_queues(&queue, std::slice::from_ref(&queue), client.output);
    Ok(())
}

fn print_queues(answer: &Value, queues: &[Value], format: Format) {
    if format == Format::Json {
        output::print_json(answer);
        return;
    }
    let mut table = Table::new(&[
        "NAME",
        "CONCURRENCY",
        "PAUSED",
        "READY",
        "RUNNING",
        "OLDEST READY (MS)",
    ]);
    for q in queues {
        table.row(vec![
            cell(&q["name"]),
            cell(&q["concurrency"]),
            cell(&q["paused"]),
            cell(&q["ready"]),
            cell(&q["running"]),
            cell(&q["oldest_ready_age_ms"]),
        ]);
    }
    table.print();
}

/// Lists the node catalog.
pub async fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    let NodesArgs { client } = args;
    let c = Client::new(&client.url)?;
    let catalog = c.get(&["v1", "nodes"], &[]).await?;
    if client.output == Format::Json {
        output::print_json(&catalog);
        return Ok(());
    }
    let mut table = Table::new(&["TYPE", "DESCRIPTION"]).max_cell(200);
    for n in list(&catalog, "nodes") {
        table.row(vec![cell(&n["type"]), cell(&n["description"])]);
    }
    table.print();
    Ok(())
}

/// Lists the worker processes.
pub async fn workers(args: NodesArgs) -> anyhow::Result<()> {
    let NodesArgs { client } = args;
    let c = Client::new(&client.url)?;
    let answer = c.get(&["v1", "workers"], &[]).await?;
    if client.output == Format::Json {
        output::print_json(&answer);
        return Ok(());
    }
    let mut table = Table::new(&[
        "ID",
        "HOST",
        "PID",
        "STARTED",
        "HEARTBEAT AGE (MS)",
        "LOAD",
        "QUEUES",
    ])
    .max_cell(200);
    for w in list(&answer, "workers") {
        let queues: Vec<String> = list(w, "queues")
            .iter()
            .map(|q| {
                format!(
                    "{} {}/{}",
                    cell(&q["name"]),
                    cell(&q["running"]),
                    cell(&q["concurrency"])
                )
            })
            .collect();
        table.row(vec![
            cell(&w["id"]),
            cell(&w["hostname"]),
            cell(&w["pid"]),
            time(&w["started_at"]),
            cell(&w["heartbeat_age_ms"]),
            cell(&w["load"]),
            queues.join(", "),
        ]);
    }
    table.print();
    Ok(())
}

/// Prints the server's OpenAPI document. It is JSON whatever `--output` says: the spec has
/// no table form.
pub async fn openapi(args: NodesArgs) -> anyhow::Result<()> {
    let NodesArgs { client } = args;
    let c = Client::new(&client.url)?;
    let spec = c.get(&["v1", "openapi.json"], &[]).await?;
    output::print_json(&spec);
    Ok(())
}
