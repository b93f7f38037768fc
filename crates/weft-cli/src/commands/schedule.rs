//! `weft schedule apply|list|get|delete|pause|resume|trigger`.

use crate::Failed;
use crate::args::{ClientOpts, Format, ScheduleCmd};
use crate::client::{ApiError, Client};
use crate::output::{self, Table, cell, list, time};
use anyhow::{Context, bail};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use std::path::Path;

/// Runs a `weft schedule` subcommand.
pub async fn schedule(cmd: ScheduleCmd) -> anyhow::Result<()> {
    match cmd {
        ScheduleCmd::Apply { files, client } => apply(&files, &client).await,
        ScheduleCmd::List { client } => schedule_list(&client).await,
        ScheduleCmd::Get { name, next, client } => schedule_get(&name, next, &client).await,
        ScheduleCmd::Delete { name, client } => {
            Client::new(&client.url)?
                .delete(&["v1", "schedules", &name])
                .await?;
            done(&client, json!({"deleted": name}), "deleted");
            Ok(())
        }
        ScheduleCmd::Pause { name, client } => action(&name, "pause", &client).await,
        ScheduleCmd::Resume { name, client } => action(&name, "resume", &client).await,
        ScheduleCmd::Trigger { name, client } => action(&name, "trigger", &client).await,
    }
}

fn done(opts: &ClientOpts, v: Value, word: &str) {
    if opts.output == Format::Json {
        output::print_json(&v);
    } else {
        eprintln!("{word}");
    }
}

fn media_type(path: &Path) -> anyhow::Result<&'static str> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("json") => Ok("application/json"),
        Some("yaml" | "yml") => Ok("application/yaml"),
        _ => bail!(
            "{}: cannot tell the format; name schedule files *.yaml, *.yml or *.json",
            path.display()
        ),
    }
}

/// Applies every file, reporting each failure; fails (exit 1) if any file was not applied.
async fn apply(files: &[std::path::PathBuf], opts: &ClientOpts) -> anyhow::Result<()> {
    let client = Client::new(&opts.url)?;
    let mut table = Table::new(&["FILE", "SCHEDULE", "CRON", "NEXT FIRE"]);
    let mut failed = 0;
    for file in files {
        let result = async {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            let req = client
                .request(Method::POST, &["v1", "schedules"])
                .header(CONTENT_TYPE, media_type(file)?)
                .body(text);
            client.send(req).await
        }
        .await;
        match result {
            Ok(s) => {
                if opts.output == Format::Json {
                    output::print_json(&s);
                }
                table.row(vec![
                    file.display().to_string(),
                    cell(&s["spec"]["name"]),
                    cell(&s["spec"]["cron"]),
                    time(&s["next_fire_at"]),
                ]);
            }
            Err(e) if e.is::<crate::client::Unreachable>() => return Err(e),
            Err(e) => {
                failed += 1;
                match e.downcast_ref::<ApiError>() {
                    Some(api) if api.code == "schedule_invalid" => {
                        eprintln!("error: {}: invalid schedule", file.display());
                        for line in api.detail_lines() {
                            eprintln!("  {line}");
                        }
                    }
                    Some(api) => eprintln!("{}: {api}", file.display()),
                    None => eprintln!("error: {e:#}"),
                }
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

fn state(s: &Value) -> &'static str {
    if s["spec"]["paused"].as_bool() == Some(true) {
        "paused"
    } else {
        "active"
    }
}

async fn schedule_list(opts: &ClientOpts) -> anyhow::Result<()> {
    let all = Client::new(&opts.url)?
        .get(&["v1", "schedules"], &[])
        .await?;
    if opts.output == Format::Json {
        output::print_json(&all);
        return Ok(());
    }
    let mut table = Table::new(&[
        "NAME",
        "FLOW",
        "CRON",
        "TIMEZONE",
        "STATE",
        "NEXT FIRE",
        "LAST FIRE",
    ]);
    for s in list(&all, "schedules") {
        table.row(vec![
            cell(&s["spec"]["name"]),
            cell(&s["spec"]["flow"]),
            cell(&s["spec"]["cron"]),
            cell(&s["spec"]["timezone"]),
            state(s).into(),
            time(&s["next_fire_at"]),
            time(&s["last_fire_at"]),
        ]);
    }
    table.print();
    Ok(())
}

async fn schedule_get(name: &str, next: usize, opts: &ClientOpts) -> anyhow::Result<()> {
    let s = Client::new(&opts.url)?
        .get(
            &["v1", "schedules", name],
            &[("next", Some(next.to_string()))],
        )
        .await?;
    if opts.output == Format::Json {
        output::print_json(&s);
        return Ok(());
    }
    let mut table = Table::new(&["FIELD", "VALUE"]);
    for key in ["name", "flow", "cron", "timezone"] {
        table.row(vec![key.into(), cell(&s["spec"][key])]);
    }
    table.row(vec!["misfire".into(), s["spec"]["misfire"].to_string()]);
    table.row(vec!["state".into(), state(&s).into()]);
    table.row(vec!["last fire".into(), time(&s["last_fire_at"])]);
    for t in list(&s, "upcoming") {
        table.row(vec!["next fire".into(), time(t)]);
    }
    table.print();
    Ok(())
}

async fn action(name: &str, what: &str, opts: &ClientOpts) -> anyhow::Result<()> {
    let v = Client::new(&opts.url)?
        .post(&["v1", "schedules", name, what], &json!({}))
        .await?;
    if opts.output == Format::Json {
        output::print_json(&v);
        return Ok(());
    }
    let mut table = Table::new(&["SCHEDULE", "STATE", "NEXT FIRE", "RUN"]);
    if what == "trigger" {
        table.row(vec![
            cell(&v["schedule"]),
            "triggered".into(),
            String::new(),
            cell(&v["run_id"]),
        ]);
    } else {
        table.row(vec![
            cell(&v["spec"]["name"]),
            state(&v).into(),
            time(&v["next_fire_at"]),
            String::new(),
        ]);
    }
    table.print();
    Ok(())
}
