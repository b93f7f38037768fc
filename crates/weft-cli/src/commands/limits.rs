//! `weft limit`: per-key concurrency limits of the answering server process.

use crate::args::{Format, LimitCmd};
use crate::client::Client;
use crate::output::{self, Table, cell, list};
use serde_json::{Value, json};

/// Runs a `weft limit` subcommand.
pub async fn limit(cmd: LimitCmd) -> anyhow::Result<()> {
    match cmd {
        LimitCmd::List { client } => {
            let c = Client::new(&client.url)?;
            let answer = c.get(&["v1", "limits"], &[]).await?;
            print(&answer, list(&answer, "limits"), client.output);
        }
        LimitCmd::Set {
            key,
            concurrency,
            client,
        } => {
            let c = Client::new(&client.url)?;
            let answer = c
                .put(
                    &["v1", "limits", &key],
                    &json!({ "concurrency": concurrency }),
                )
                .await?;
            print(&answer, std::slice::from_ref(&answer), client.output);
        }
        LimitCmd::Clear { key, client } => {
            let c = Client::new(&client.url)?;
            c.delete(&["v1", "limits", &key]).await?;
            if client.output == Format::Json {
                output::print_json(&json!({ "key": key, "cleared": true }));
            } else {
                eprintln!("cleared the run-time limit of {key}");
            }
        }
    }
    Ok(())
}

fn print(answer: &Value, keys: &[Value], format: Format) {
    if format == Format::Json {
        output::print_json(answer);
        return;
    }
    let mut table = Table::new(&["KEY", "LIMIT", "OVERRIDE", "RUNNING", "WAITING"]);
    for k in keys {
        table.row(vec![
            cell(&k["key"]),
            cell(&k["limit"]),
            cell(&k["override_limit"]),
            list(k, "running").len().to_string(),
            cell(&k["waiting"]),
        ]);
    }
    table.print();
}
