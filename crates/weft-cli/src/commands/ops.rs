//! Operating a server: `weft dlq`, `weft queue`, `weft nodes`, `weft workers` and
//! `weft openapi`.

use crate::args::{ClientOpts, DlqCmd, DlqSelection, Format, NodesArgs, QueueCmd};
use crate::client::Client;
use crate::output::{self, Table, cell, list, time};
use serde_json::{Value, json};

/// Runs a `weft dlq` subcommand.
pub async fn dlq(cmd: DlqCmd) -> anyhow::Result<()> {
    match cmd {
        DlqCmd::List {
            select,
            limit,
            before,
            client,
        } => {
            let c = Client::new(&client.url)?;
            let mut query = selection_query(&select)?;
            query.push(("limit", limit.map(|l| l.to_string())));
            query.push(("before", before));
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
            if let Some(next) = dead["next"].as_str() {
                eprintln!("more: add --before {next}");
            }
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
            select,
            limit,
            client,
            ..
        } => bulk(&client, &select, limit, Bulk::Replay).await,
        DlqCmd::Discard {
            run_id: Some(run_id),
            node: Some(node),
            client,
            ..
        } => {
            let c = Client::new(&client.url)?;
            let answer = c.delete(&["v1", "dlq", &run_id, &node]).await?;
            if client.output == Format::Json {
                output::print_json(&answer);
            }
            eprintln!("discarded node {node} of run {run_id}; the run stays failed");
            Ok(())
        }
        DlqCmd::Discard {
            select,
            limit,
            client,
            ..
        } => bulk(&client, &select, limit, Bulk::Discard).await,
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
    }
}

/// A bulk action on the dead-letter queue.
#[derive(Clone, Copy)]
enum Bulk {
    Replay,
    Discard,
}

impl Bulk {
    fn path(self) -> &'static str {
        match self {
            Bulk::Replay => "replay",
            Bulk::Discard => "discard",
        }
    }
    fn done(self) -> &'static str {
        match self {
            Bulk::Replay => "replayed",
            Bulk::Discard => "discarded",
        }
    }
}

/// Acts on every dead task the selection matches (at most `limit`), a page of up to 1,000
/// per request, following the server's cursor, with a progress line per page on stderr.
/// Prints the items that failed (or, as JSON, a summary); exit 1 if any did.
async fn bulk(
    client: &ClientOpts,
    select: &DlqSelection,
    limit: Option<u64>,
    action: Bulk,
) -> anyhow::Result<()> {
    let c = Client::new(&client.url)?;
    let mut body = serde_json::Map::new();
    for (key, value) in selection_query(select)? {
        if let Some(v) = value {
            body.insert(key.into(), Value::String(v));
        }
    }
    let (mut done, mut failed, mut matched) = (0u64, Vec::new(), None);
    loop {
        let want = limit.map_or(1000, |l| (l - done).min(1000));
        if want == 0 {
            break;
        }
        body.insert("limit".into(), json!(want));
        let answer = c
            .post(&["v1", "dlq", action.path()], &Value::Object(body.clone()))
            .await?;
        let items = list(&answer, action.done());
        let total = *matched.get_or_insert(answer["matched"].as_u64().unwrap_or(0));
        done += items.len() as u64;
        failed.extend(items.iter().filter(|i| !i["error"].is_null()).cloned());
        eprintln!(
            "{} {} of {total} matched, {} failed",
            action.done(),
            done - failed.len() as u64,
            failed.len()
        );
        match answer["next"].as_str() {
            Some(next) if !items.is_empty() => {
                body.insert("before".into(), Value::String(next.into()));
            }
            _ => break,
        }
    }
    if client.output == Format::Json {
        output::print_json(&json!({
            "matched": matched.unwrap_or(0),
            action.done(): done - failed.len() as u64,
            "failed": failed,
        }));
    } else if !failed.is_empty() {
        let mut table = Table::new(&["RUN", "NODE", "ERROR"]);
        for i in &failed {
            table.row(vec![
                cell(&i["run_id"]),
                cell(&i["node"]),
                super::batch::item_error(i),
            ]);
        }
        table.print();
    }
    if !failed.is_empty() {
        return Err(crate::Failed(1).into());
    }
    Ok(())
}

/// The selection as query fields of the API (`--since`/`--until` ages become times).
fn selection_query(s: &DlqSelection) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
    Ok(vec![
        ("flow", s.flow.clone()),
        ("node", s.by_node.clone()),
        ("error", s.error.clone()),
        (
            "dead_after",
            s.since.as_deref().map(point_in_time).transpose()?,
        ),
        (
            "dead_before",
            s.until.as_deref().map(point_in_time).transpose()?,
        ),
    ])
}

/// An RFC 3339 time as given, or an age (`2h`, `30m`) as the time that long ago.
fn point_in_time(t: &str) -> anyhow::Result<String> {
    if chrono::DateTime::parse_from_rfc3339(t).is_ok() {
        return Ok(t.to_string());
    }
    let age = weft_core::duration::parse(t).map_err(|e| {
        anyhow::anyhow!(
            "{t:?} is neither an RFC 3339 time (2026-11-22T15:00:00Z) nor an age (2h): {e}"
        )
    })?;
    let at = chrono::Utc::now() - chrono::Duration::from_std(age)?;
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
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
            rate,
            no_rate,
            pause,
            resume,
            client,
        } => {
            let mut change = json!({});
            if let Some(c) = concurrency {
                change["concurrency"] = c.into();
            }
            if let Some(r) = rate {
                change["rate"] = json!({"limit": r.limit, "per": r.per});
            } else if no_rate {
                change["rate"] = Value::Null;
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
        "RATE",
    ]);
    for q in queues {
        let rate = match (&q["rate"]["limit"], q["rate"]["per"].as_str()) {
            (Value::Number(limit), Some(per)) => format!("{limit}/{per}"),
            _ => "-".into(),
        };
        table.row(vec![
            cell(&q["name"]),
            cell(&q["concurrency"]),
            cell(&q["paused"]),
            cell(&q["ready"]),
            cell(&q["running"]),
            cell(&q["oldest_ready_age_ms"]),
            rate,
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
