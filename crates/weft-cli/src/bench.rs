//! `weft bench`: the workloads of DESIGN.md, each run in-process against a fresh store (a
//! temporary SQLite directory, or a throw-away PostgreSQL schema), printing one JSON line on
//! stdout. The workloads see only the engine, so both stores run the same code.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use weft_engine::{Engine, Event, StartRun};

mod book;
mod schedules;
mod setup;

pub use setup::BenchArgs;

/// Which workload to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Enqueue N one-node runs, then time workers draining them.
    Drain,
    /// Open-loop arrivals at a fixed rate; create-to-finish latency percentiles.
    Latency,
    /// One run of 400 sequential nodes.
    Chain,
    /// One node fanning out to 1000 children, then a join.
    Fanout,
    /// N runs parked on a 1-hour delay: memory, and read latency while they wait.
    Inflight,
    /// N schedules (default 10000) firing every second: fire-lag percentiles.
    Schedules,
}

/// Runs the chosen workload and prints its JSON line; the store is removed afterwards,
/// whether the workload succeeded or not.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let bench = setup::setup(&args).await?;
    let result = match args.workload {
        Workload::Drain => drain(&bench.engine, &args).await,
        Workload::Latency => latency(&bench.engine, &args).await,
        Workload::Chain => chain(&bench.engine, &args).await,
        Workload::Fanout => fanout(&bench.engine, &args).await,
        Workload::Inflight => inflight(&bench.engine, &args).await,
        Workload::Schedules => schedules::schedules(&bench.engine, &args).await,
    };
    let labels = bench.labels();
    let cleaned = bench.finish().await;
    let mut line = result?;
    for (k, v) in labels {
        line[k] = v;
    }
    line["peak_rss_mb"] = json!(peak_rss_mb());
    println!("{line}");
    cleaned
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (kb / 1024.0 * 10.0).round() / 10.0
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn enqueue(engine: &Engine, flow: &str, n: usize) -> anyhow::Result<Vec<String>> {
    enqueue_keyed(engine, flow, n, 0).await
}

/// Enqueues `n` runs; with `keys` > 0 run `i` gets input `{"k": i % keys}`.
async fn enqueue_keyed(
    engine: &Engine,
    flow: &str,
    n: usize,
    keys: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let chunk = left.min(5000);
        let first = n - left;
        let reqs = (first..first + chunk)
            .map(|i| StartRun {
                flow: flow.into(),
                input: if keys > 0 {
                    json!({ "k": i % keys })
                } else {
                    Value::Null
                },
                ..Default::default()
            })
            .collect();
        for r in engine.run_start_many(reqs).await? {
            ids.push(r?.id);
        }
        left -= chunk;
    }
    Ok(ids)
}

/// Waits for `n` runs to finish, counting events (a lagging receiver counts what it missed:
/// every event in these workloads is a finished run of the workload).
async fn wait_finished(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    n: usize,
) -> anyhow::Result<usize> {
    let mut done = 0usize;
    let mut failed = 0usize;
    while done < n {
        match events.recv().await {
            Ok(Event::RunFinished { state, .. }) => {
                done += 1;
                if state != weft_core::RunState::Succeeded {
                    failed += 1;
                }
            }
            Err(RecvError::Lagged(k)) => done += k as usize,
            Err(RecvError::Closed) => bail!("engine stopped"),
        }
    }
    Ok(failed)
}

async fn drain(engine: &Engine, args: &BenchArgs) -> anyhow::Result<Value> {
    engine.flow_apply(&drain_flow(args)?).await?;
    engine
        .queue_set("default", Some(args.concurrency), Some(true))
        .await?;
    let t0 = Instant::now();
    enqueue_keyed(engine, "bench-noop", args.n, args.keys).await?;
    let enqueue_s = t0.elapsed().as_secs_f64();
    let mut events = engine.subscribe();
    let t1 = Instant::now();
    engine.queue_set("default", None, Some(false)).await?;
    let failed = wait_finished(&mut events, args.n).await?;
    let drain_s = t1.elapsed().as_secs_f64();
    let mut line = json!({
        "workload": "drain", "n": args.n, "concurrency": args.concurrency,
        "tasks_per_s": round(args.n as f64 / drain_s), "drain_s": round(drain_s),
        "enqueue_per_s": round(args.n as f64 / enqueue_s), "failed": failed,
    });
    if args.keys > 0 {
        line["keys"] = json!(args.keys);
        line["key_limit"] = json!(args.key_limit);
        line["key_rate"] = json!(args.key_rate);
    }
    Ok(line)
}

/// The drain workload's one-node flow: with `--keys`, its node has a per-key concurrency
/// limit (and, with `--key-rate`, a per-key rate limit).
fn drain_flow(args: &BenchArgs) -> anyhow::Result<String> {
    let mut flow = "name: bench-noop\nnodes:\n  work:\n    type: noop\n".to_string();
    if args.keys > 0 {
        flow += &format!(
            "    concurrency: {{key: 'k:{{{{ input.k }}}}', limit: {}}}\n",
            args.key_limit
        );
    }
    if let Some(rate) = &args.key_rate {
        let (limit, per) = rate
            .split_once('/')
            .context("--key-rate must look like LIMIT/INTERVAL, e.g. 1000/1s")?;
        flow += &format!(
            "    rate_limit: {{limit: {limit}, per: {per}, key: 'k:{{{{ input.k }}}}'}}\n"
        );
    }
    Ok(flow)
}

async fn latency(engine: &Engine, args: &BenchArgs) -> anyhow::Result<Value> {
    engine
        .flow_apply("name: bench-noop\nnodes:\n  work: {type: noop}\n")
        .await?;
    let total = (args.rate as u64 * args.duration) as usize;
    // Accepted and finished instants by run id; whichever arrives second computes the sample.
    let book: Arc<book::Book> = Arc::new(Default::default());
    let mut events = engine.subscribe();
    let collector = {
        let book = book.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while seen < total {
                match events.recv().await {
                    Ok(Event::RunFinished { run_id, .. }) => {
                        book.finished(run_id, Instant::now());
                        seen += 1;
                    }
                    Err(RecvError::Lagged(k)) => seen += k as usize,
                    Err(RecvError::Closed) => break,
                }
            }
        })
    };
    let period = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut errors = 0usize;
    let mut handles = Vec::with_capacity(total);
    for _ in 0..total {
        ticker.tick().await;
        let engine = engine.clone();
        let book = book.clone();
        handles.push(tokio::spawn(async move {
            let r = engine
                .run_start(StartRun {
                    flow: "bench-noop".into(),
                    ..Default::default()
                })
                .await;
            match r {
                Ok(c) => {
                    book.accepted(c.id, Instant::now());
                    true
                }
                Err(_) => false,
            }
        }));
    }
    for h in handles {
        if !h.await.unwrap_or(false) {
            errors += 1;
        }
    }
    let offered_s = started.elapsed().as_secs_f64();
    tokio::time::timeout(Duration::from_secs(60), collector)
        .await
        .context("runs did not finish within 60 s")??;
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    for us in book.samples() {
        h.record(us)?;
    }
    let ms = |q: f64| round(h.value_at_quantile(q) as f64 / 1000.0);
    Ok(json!({
        "workload": "latency", "rate": args.rate, "duration_s": args.duration, "runs": total,
        "achieved_rate": round(total as f64 / offered_s), "errors": errors, "samples": h.len(),
        "p50_ms": ms(0.50), "p95_ms": ms(0.95), "p99_ms": ms(0.99), "max_ms": round(h.max() as f64 / 1000.0),
    }))
}

async fn one_run(engine: &Engine, flow: &str) -> anyhow::Result<(f64, String)> {
    let t = Instant::now();
    let id = engine
        .run_start(StartRun {
            flow: flow.into(),
            ..Default::default()
        })
        .await?
        .id;
    let view = tokio::time::timeout(Duration::from_secs(120), engine.wait_run(&id))
        .await
        .context("run did not finish")??;
    Ok((t.elapsed().as_secs_f64(), view.run.state.to_string()))
}

async fn chain(engine: &Engine, args: &BenchArgs) -> anyhow::Result<Value> {
    let mut doc = String::from("name: bench-chain\nnodes:\n  s0: {type: noop}\n");
    for i in 1..args.steps {
        doc.push_str(&format!("  s{i}: {{type: noop, needs: [s{}]}}\n", i - 1));
    }
    engine.flow_apply(&doc).await?;
    let (secs, state) = one_run(engine, "bench-chain").await?;
    Ok(json!({
        "workload": "chain", "steps": args.steps, "state": state,
        "wall_s": round3(secs), "ms_per_step": round(secs * 1000.0 / args.steps as f64),
    }))
}

async fn fanout(engine: &Engine, args: &BenchArgs) -> anyhow::Result<Value> {
    let mut doc = String::from("name: bench-fanout\nnodes:\n  source: {type: noop}\n");
    let mut children = Vec::with_capacity(args.width);
    for i in 0..args.width {
        doc.push_str(&format!("  c{i}: {{type: noop, needs: [source]}}\n"));
        children.push(format!("c{i}"));
    }
    doc.push_str(&format!(
        "  join: {{type: noop, needs: [{}]}}\n",
        children.join(", ")
    ));
    engine.flow_apply(&doc).await?;
    let (secs, state) = one_run(engine, "bench-fanout").await?;
    Ok(json!({ "workload": "fanout", "width": args.width, "state": state, "wall_s": round3(secs) }))
}

async fn inflight(engine: &Engine, args: &BenchArgs) -> anyhow::Result<Value> {
    engine.flow_apply("name: bench-park\nnodes:\n  wait: {type: delay, params: {duration: 1h}}\n  after: {type: noop, needs: [wait]}\n").await?;
    let t0 = Instant::now();
    let ids = enqueue(engine, "bench-park", args.n).await?;
    let enqueue_s = t0.elapsed().as_secs_f64();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = weft_api::router(engine.clone(), Default::default());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let ids = Arc::new(ids);
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    let workers = 8;
    let per = args.reads / workers;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, ids) = (client.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per);
            let mut statuses: HashMap<u16, usize> = HashMap::new();
            for i in 0..per {
                let id = &ids[(i * 7919 + w * 104_729) % ids.len()];
                let t = Instant::now();
                let status = match client
                    .get(format!("http://{addr}/v1/runs/{id}"))
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                samples.push(t.elapsed().as_micros() as u64);
                *statuses.entry(status).or_default() += 1;
            }
            (samples, statuses)
        }));
    }
    let mut non_200 = 0usize;
    for t in tasks {
        let (samples, statuses) = t.await?;
        for s in samples {
            h.record(s)?;
        }
        non_200 += statuses
            .iter()
            .filter(|(k, _)| **k != 200)
            .map(|(_, v)| v)
            .sum::<usize>();
    }
    server.abort();
    let parked = engine
        .queue_list()
        .iter()
        .map(|q| q.running as usize)
        .sum::<usize>();
    let ms = |q: f64| round(h.value_at_quantile(q) as f64 / 1000.0);
    Ok(json!({
        "workload": "inflight", "n": args.n, "enqueue_per_s": round(args.n as f64 / enqueue_s),
        "reads": h.len(), "non_200": non_200, "worker_slots_used": parked,
        "get_p50_ms": ms(0.5), "get_p99_ms": ms(0.99), "get_max_ms": round(h.max() as f64 / 1000.0),
    }))
}
