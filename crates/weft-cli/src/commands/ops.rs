//! Operating a server: `weft dlq`, `weft queue` and `weft nodes`.

use crate::args::{DlqCmd, Format, NodesArgs, QueueCmd};
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
            run_id,
            node,
            client,
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
    }
}

fn print_queues(answer: &Value, queues: &[Value], format: Format) {
    if format == Format::Json {
        output::print_json(answer);
        return;
    }
    let mut table = Table::new(&["NAME", "CONCURRENCY", "PAUSED", "READY", "RUNNING"]);
    for q in queues {
        table.row(vec![
            cell(&q["name"]),
            cell(&q["concurrency"]),
            cell(&q["paused"]),
            cell(&q["ready"]),
            cell(&q["running"]),
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
