//! `weft bench schedules`: N schedules (default 10,000) firing every second (or, with
//! `--spread`, each once a minute at its own second) for D seconds (default 10) after a
//! warm-up (default 5 s, so that every measured tick was prepared ahead), and how
//! late each tick's run became startable: the fire lag, from the tick's due time to the
//! moment the fire pass that started it had committed AND handed its ready root tasks to
//! this process's queues (where a worker takes them). A run prepared ahead of its tick is
//! counted from its tick to its release, never from its preparation: preparing is not
//! firing. Every tick in the window is counted, whether it was released or created at the
//! tick (`expected_ticks` says how many there should be).
//!
//! The queue is paused so only firing is measured: the runs pile up, nothing executes them.

use super::{BenchArgs, round};
use anyhow::bail;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use weft_core::schedule::ScheduleSpec;
use weft_core::time::{Clock, SystemClock};
use weft_engine::Engine;

/// Runs the workload.
pub async fn schedules(engine: &Engine, args: &BenchArgs) -> anyhow::Result<Value> {
    engine
        .flow_apply("name: bench-noop\nnodes:\n  work: {type: noop}\n")
        .await?;
    engine.queue_set("default", None, Some(true)).await?;
    let n = args.schedules;
    let cron = if args.spread {
        "{s} * * * * *"
    } else {
        "* * * * * *"
    };
    let mut fired = engine.schedules_fired();
    let applied = futures::stream::iter(0..n)
        .map(|i| {
            let spec = ScheduleSpec {
                name: format!("bench-{i}"),
                description: None,
                flow: "bench-noop".into(),
                version: None,
                cron: cron.replace("{s}", &(i % 60).to_string()),
                timezone: "UTC".into(),
                input: Value::Null,
                misfire: Default::default(),
                paused: false,
            };
            async move { engine.schedule_apply_spec(spec).await }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    if let Some(e) = applied.into_iter().find_map(Result::err) {
        bail!("cannot apply the schedules: {e}");
    }
    // Measure ticks due from the next full second after the warm-up, for `duration` seconds.
    let from = (SystemClock.now_ms() / 1000 + 1 + args.warmup as i64) * 1000;
    let until = from + args.duration as i64 * 1000;
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut errors = 0u64;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(args.warmup + args.duration + 30);
    loop {
        let batch = match tokio::time::timeout_at(deadline, fired.recv()).await {
            Err(_) => bail!("ticks stopped arriving"),
            Ok(Ok(b)) => b,
            Ok(Err(RecvError::Lagged(k))) => bail!("the measurement lagged by {k} batches"),
            Ok(Err(RecvError::Closed)) => bail!("engine stopped"),
        };
        let mut past = false;
        for t in &batch.ticks {
            if t.fire_time >= until {
                past = true;
            }
            // A tick released ahead of the fire step is reported by both: the fire step's
            // report (`created: false`) is not a second firing.
            if t.fire_time < from || t.fire_time >= until || (!t.created && t.error.is_none()) {
                continue;
            }
            if t.error.is_some() {
                errors += 1;
            }
            h.record((batch.ready_at - t.fire_time).max(0) as u64)?;
        }
        if past {
            break;
        }
    }
    let expected = if args.spread {
        (0..args.duration as i64)
            .map(|k| {
                let sec = ((from / 1000 + k) % 60) as usize;
                (0..n).filter(|i| i % 60 == sec).count() as u64
            })
            .sum::<u64>()
    } else {
        n as u64 * args.duration
    };
    let ms = |q: f64| round(h.value_at_quantile(q) as f64);
    Ok(json!({
        "workload": "schedules", "schedules": n, "spread": args.spread,
        "warmup_s": args.warmup, "duration_s": args.duration, "ticks": h.len(), "expected_ticks": expected, "errors": errors,
        "p50_ms": ms(0.50), "p99_ms": ms(0.99), "max_ms": h.max(),
    }))
}
