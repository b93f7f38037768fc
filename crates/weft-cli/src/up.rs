//! `weft up`: the server process (and, with roles, each process of `weft serve`). It owns the order of start-up (config, flow files, store,
//! engine, flows, HTTP) and of shutdown (stop accepting HTTP, then let the engine finish
//! in-flight attempts), and reloads queue limits on SIGHUP.

use crate::args::UpArgs;
use crate::config::{self, Config, Overrides, Roles};
use crate::store;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{Signal, SignalKind, signal};
use weft_core::FlowSpec;
use weft_engine::Engine;

/// How the config was given, kept to read it again on SIGHUP.
struct Sources {
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    flags: Overrides,
}

impl Sources {
    fn load(&self) -> anyhow::Result<Config> {
        Config::load(self.file.as_deref(), &self.env, &self.flags)
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let flags = Overrides {
        listen: args.listen,
        flows_dir: args.flows,
        durability: args.durability.map(Into::into),
        ..args.config.overrides()
    };
    run_server(args.config.config.as_deref(), flags, None).await
}

/// The server of `weft up` (`roles` is `None`: one process owning its store) and of
/// `weft serve` (the roles of one process of a cluster).
pub(crate) async fn run_server(
    config_file: Option<&Path>,
    flags: Overrides,
    roles: Option<Roles>,
) -> anyhow::Result<()> {
    // Installed first, so a signal during start-up is acted on rather than killing us.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    let env = config::process_env();
    let sources = Sources {
        file: config::config_path(config_file, &env),
        env,
        flags,
    };
    let config = sources.load()?;
    if roles.is_some() {
        crate::serve::check(&config)?;
    }
    let gateway = roles.is_none_or(|r| r.gateway);
    let flows = match &config.flows_dir {
        Some(dir) if gateway => read_flows(dir)?,
        Some(dir) => {
            tracing::warn!(flows = %dir.display(), "flow files are applied by gateway processes; ignoring them here");
            Vec::new()
        }
        None => Vec::new(),
    };
    let addr = config.listen_addr()?;

    // Opening may wait for an unreachable PostgreSQL: a signal meanwhile stops the wait.
    let store = tokio::select! {
        store = store::open(&config) => store?,
        _ = term.recv() => return stopped_while_opening("SIGTERM"),
        _ = int.recv() => return stopped_while_opening("SIGINT"),
    };
    let engine_config = match roles {
        None => config.engine_config(),
        Some(r) => config.cluster_engine_config(r),
    };
    let engine = Engine::start(store, engine_config)
        .await
        .context("cannot start the engine")?;
    match &config.database_url {
        None => {
            tracing::info!(data_dir = %config.data_dir.display(), durability = ?config.durability, "store open")
        }
        Some(_) => tracing::info!(
            pool_size = config.postgres.pool_size,
            "store open: {}",
            store::describe(&config)
        ),
    }
    if let Some(r) = roles {
        crate::serve::log_start(&engine, &config, r);
    }
    for (path, spec) in flows {
        let applied = engine
            .flow_apply_spec(spec)
            .await
            .with_context(|| format!("cannot apply {}", path.display()))?;
        tracing::info!(
            flow = %applied.name,
            version = applied.version,
            created = applied.created,
            file = %path.display(),
            "flow applied"
        );
    }

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().context("no local address")?;
    let app = weft_api::router(engine.clone(), config.api_options());
    let app = match roles {
        Some(r) => crate::serve::cluster_router(app, r),
        None => app,
    };
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .into_future(),
    );
    tracing::info!("weft listening on http://{local}");
    if gateway {
        log_auth_state(&engine, &config).await;
    }

    let sources = Arc::new(sources);
    let reloader = tokio::spawn(reload_on_hangup(hup, engine.clone(), sources));

    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{which}: no longer accepting requests; finishing running work");
    reloader.abort();
    let _ = stop_http.send(());
    // One grace period covers both: draining HTTP, then running attempts.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!("HTTP server failed: {e}"),
        Ok(Err(e)) => tracing::error!("HTTP server task failed: {e}"),
        Err(_) => {
            tracing::warn!("HTTP connections still open after the grace period; closing them")
        }
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    // In a cluster this also gives up the leader lease, so another orchestrator takes
    // over at once.
    engine.shutdown(left).await;
    tracing::info!("weft stopped");
    Ok(())
}

fn stopped_while_opening(which: &str) -> anyhow::Result<()> {
    tracing::info!("{which} while opening the store; stopping");
    Ok(())
}

/// Says whether the API asks for keys, and how to create the first one when it does not.
async fn log_auth_state(engine: &Engine, config: &Config) {
    match engine.apikey_list().await {
        Ok(keys) if keys.iter().any(|k| k.revoked_at.is_none()) => {
            tracing::info!("API keys exist: requests need `Authorization: Bearer <key>`")
        }
        Ok(_) => {
            let store = match &config.database_url {
                None => format!("--data-dir {}", config.data_dir.display()),
                // Not the URL itself: it may hold a password.
                Some(_) => "--database-url URL".to_string(),
            };
            tracing::warn!(
                "no API keys: the API is open to anyone who can reach it. Create the first key \
                 with `weft apikey create --role admin {store}`; auth is on from then on"
            )
        }
        Err(e) => tracing::error!("cannot read API keys: {e}"),
    }
}

/// Reads and checks every flow file in `dir`, so that one bad file stops start-up before
/// anything is applied. Every problem of every file is reported.
fn read_flows(dir: &Path) -> anyhow::Result<Vec<(PathBuf, FlowSpec)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read flows directory {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read flows directory {}", dir.display()))?
            .path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_file() && matches!(ext, "yaml" | "yml" | "json") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut flows = Vec::new();
    let mut problems = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let checked =
            weft_core::parse_flow(&text).and_then(|spec| weft_core::compile(&spec).map(|_| spec));
        match checked {
            Ok(spec) => {
                if let Some(first) = names.insert(spec.name.clone(), path.clone()) {
                    problems.push(format!(
                        "{}: flow {:?} is also defined in {}",
                        path.display(),
                        spec.name,
                        first.display()
                    ));
                }
                flows.push((path, spec));
            }
            Err(e) => {
                problems.push(format!("{}: invalid flow", path.display()));
                problems.extend(e.issues.iter().map(|i| format!("  {i}")));
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "flows in {} are not valid; nothing was applied:\n  {}",
            dir.display(),
            problems.join("\n  ")
        );
    }
    Ok(flows)
}

async fn reload_on_hangup(mut hup: Signal, engine: Engine, sources: Arc<Sources>) {
    while hup.recv().await.is_some() {
        reload_queues(&engine, &sources).await;
    }
}

/// Applies the config's `[queues]` and `[queue_rates]` (with `WEFT_QUEUES__*` and
/// `WEFT_QUEUE_RATES__*` on top) to the running engine.
async fn reload_queues(engine: &Engine, sources: &Sources) {
    let Some(file) = &sources.file else {
        tracing::warn!("SIGHUP: no config file to reload (give --config or WEFT_CONFIG)");
        return;
    };
    let config = match sources.load() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SIGHUP: keeping the current settings: {e:#}");
            return;
        }
    };
    let current: HashMap<String, u32> = engine
        .queue_list()
        .into_iter()
        .map(|q| (q.name, q.concurrency))
        .collect();
    let mut changed = 0;
    for (name, &limit) in &config.queues {
        let before = current.get(name).copied();
        if before == Some(limit) {
            continue;
        }
        match engine.queue_set(name, Some(limit), None).await {
            Ok(_) => {
                changed += 1;
                tracing::info!(queue = %name, from = ?before, to = limit, "SIGHUP: queue concurrency changed");
            }
            Err(e) => tracing::error!(queue = %name, "SIGHUP: cannot change queue: {e}"),
        }
    }
    for (name, rate) in &config.queue_rates {
        let spec = weft_core::limits::RateLimitSpec {
            limit: rate.limit,
            per: rate.per.clone(),
            key: None,
        };
        let wanted = weft_engine::queue_rate(&spec)
            .ok()
            .map(weft_engine::RateView::from);
        let before = engine
            .queue_list()
            .into_iter()
            .find(|q| q.name == *name)
            .and_then(|q| q.rate);
        if before == wanted {
            continue;
        }
        let change = weft_engine::QueueChange {
            rate: Some(Some(spec)),
            ..Default::default()
        };
        match engine.queue_change(name, change).await {
            Ok(_) => {
                changed += 1;
                tracing::info!(queue = %name, from = ?before, to = ?wanted, "SIGHUP: queue rate changed");
            }
            Err(e) => tracing::error!(queue = %name, "SIGHUP: cannot change queue: {e}"),
        }
    }
    tracing::info!(file = %file.display(), changed, "SIGHUP: config reloaded");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_files_are_checked_before_any_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "name: a\nnodes:\n  x:\n    type: noop\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.json"),
            r#"{"name":"b","nodes":{"y":{"type":"noop"}}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let flows = read_flows(dir.path()).unwrap();
        let names: Vec<&str> = flows.iter().map(|(_, f)| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);

        std::fs::write(
            dir.path().join("c.yml"),
            "name: c\nnodes:\n  z:\n    type: nope\n    needs: [ghost]\n",
        )
        .unwrap();
        let err = format!("{:#}", read_flows(dir.path()).unwrap_err());
        assert!(err.contains("c.yml: invalid flow"), "{err}");
        assert!(err.contains("nodes.z"), "{err}");
        assert!(err.contains("nothing was applied"), "{err}");
    }

    #[test]
    fn a_flow_defined_twice_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let doc = "name: a\nnodes:\n  x:\n    type: noop\n";
        std::fs::write(dir.path().join("a.yaml"), doc).unwrap();
        std::fs::write(dir.path().join("copy.yaml"), doc).unwrap();
        let err = format!("{:#}", read_flows(dir.path()).unwrap_err());
        assert!(err.contains("also defined in"), "{err}");
    }
}
