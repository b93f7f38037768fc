//! The real `weft` binary on PostgreSQL: `weft up` serving a run, `weft migrate`, `weft
//! bench`, and start-up errors. The database is `WEFT_TEST_DATABASE_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres; `.ci/run` provides one). Every test works in
//! a fresh schema and drops it afterwards. An unreachable database fails the tests; they
//! never skip.

mod common;

use common::{Server, free_port, ok, text, weft};
use serde_json::Value;
use std::str::FromStr;
use std::time::{Duration, Instant};
use weft_store_postgres::testing::{DEFAULT_URL, URL_VAR, url};

const HELLO: &str = r#"name: hello
nodes:
  greet:
    type: transform
    params:
      value: {msg: "hi {{ input.who }}"}
  after:
    type: noop
    needs: [greet]
"#;

/// The test server's URL with another login and database: `user` or `user:password`.
fn url_as(login: &str, database: &str) -> String {
    let cfg = tokio_postgres::Config::from_str(&url()).unwrap();
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("{URL_VAR} must name a TCP host, not {other:?}"),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{login}@{host}:{port}/{database}")
}

/// A connection to the test database, or a panic saying which one and how to change it.
async fn connect() -> tokio_postgres::Client {
    match tokio_postgres::connect(&url(), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => panic!(
            "cannot reach the test PostgreSQL ({e}); start one or point {URL_VAR} at one \
             (default {DEFAULT_URL}; .ci/run starts a throw-away server)"
        ),
    }
}

/// A fresh schema name, dropped (CASCADE) when the guard goes.
struct Schema(String);

impl Schema {
    fn new() -> Schema {
        Schema(format!("weft_cli_{}", uuid::Uuid::now_v7().simple()))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Drop is synchronous and may run on the test's runtime: use a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = connect().await;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {done:?}", self.0);
        }
    }
}

async fn schema_exists(name: &str) -> bool {
    connect()
        .await
        .query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn up_on_postgres_serves_a_run_end_to_end() {
    connect().await;
    let schema = Schema::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start_with_env(
        &data,
        &["--database-url", &url()],
        &[("WEFT_POSTGRES__SCHEMA", &schema.0)],
    )
    .await;
    let flow = tmp.path().join("hello.yaml");
    std::fs::write(&flow, HELLO).unwrap();
    ok(&weft(&[
        "flow",
        "apply",
        flow.to_str().unwrap(),
        "--url",
        &server.url,
    ])
    .await);
    let out = ok(&weft(&[
        "run",
        "start",
        "hello",
        "--input",
        r#"{"who": "pg"}"#,
        "--wait",
        "-o",
        "json",
        "--url",
        &server.url,
    ])
    .await);
    let run: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(run["state"], "succeeded", "{out}");

    // The run is in PostgreSQL, in the schema given; the data directory was never used.
    let rows: i64 = connect()
        .await
        .query_one(&format!("SELECT count(*) FROM {}.runs", schema.0), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    assert!(!data.exists(), "weft up on PostgreSQL created {data:?}");
    let log = server.log_text();
    assert!(log.contains("PostgreSQL at"), "{log}");

    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", server.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_is_idempotent_and_safe_to_run_concurrently() {
    connect().await;
    let version = weft_store_postgres::SCHEMA_VERSION.to_string();
    let migrate = |schema: String| async move {
        let mut cmd = tokio::process::Command::from(common::weft_command());
        cmd.args(["migrate", "--database-url", &url()])
            .env("WEFT_POSTGRES__SCHEMA", schema);
        cmd.output().await.unwrap()
    };

    let once = Schema::new();
    for _ in 0..2 {
        let o = migrate(once.0.clone()).await;
        assert_eq!(ok(&o).trim(), version);
        assert!(text(&o).1.contains(&once.0), "{}", text(&o).1);
    }

    let together = Schema::new();
    let outputs = futures::future::join_all((0..4).map(|_| migrate(together.0.clone()))).await;
    for o in &outputs {
        assert_eq!(ok(o).trim(), version);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_from_a_newer_weft_is_refused() {
    connect().await;
    let schema = Schema::new();
    let env_migrate = || {
        let mut cmd = tokio::process::Command::from(common::weft_command());
        cmd.args(["migrate", "--database-url", &url()])
            .env("WEFT_POSTGRES__SCHEMA", &schema.0);
        cmd.output()
    };
    ok(&env_migrate().await.unwrap());
    connect()
        .await
        .execute(
            &format!(
                "INSERT INTO {}.weft_schema_migrations (version, name) VALUES (999, 'future')",
                schema.0
            ),
            &[],
        )
        .await
        .unwrap();
    let o = env_migrate().await.unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("newer than this build"), "{err}");
}

/// Runs `weft ARGS`, asserting it fails within `limit` with a one-line `error:` that
/// contains `expect` and not `secret`; returns stderr.
async fn fails_fast(args: &[&str], limit: Duration, expect: &str, secret: &str) -> String {
    let start = Instant::now();
    let o = tokio::time::timeout(limit, weft(args))
        .await
        .unwrap_or_else(|_| panic!("weft {args:?} still running after {limit:?}"));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(start.elapsed() < limit);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(expect),
        "{err}"
    );
    assert!(!err.contains(secret), "the password leaked:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_is_retried_briefly_then_reported() {
    let port = free_port();
    let url = format!("postgres://weft:hunter2@127.0.0.1:{port}/weft");
    let listen = format!("127.0.0.1:{}", free_port());
    let expect = format!("cannot connect to PostgreSQL at 127.0.0.1:{port}");
    let limit = Duration::from_secs(15);
    let args = [
        "up",
        "--database-url",
        &url,
        "--connect-wait",
        "1s",
        "--listen",
        &listen,
    ];
    let err = fails_fast(&args, limit, &expect, "hunter2").await;
    assert!(err.contains("retrying in"), "each retry is logged:\n{err}");
    assert!(err.contains("gave up after"), "{err}");
    let args = ["migrate", "--database-url", &url, "--connect-wait", "0s"];
    fails_fast(&args, limit, &expect, "hunter2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_urls_and_refusals_fail_at_once() {
    let limit = Duration::from_secs(10);
    let args = [
        "migrate",
        "--database-url",
        "postgres://u:hunter2@h:notaport/d",
    ];
    fails_fast(&args, limit, "not a valid PostgreSQL URL", "hunter2").await;
    let args = ["migrate", "--database-url", "mysql://u:hunter2@h/d"];
    fails_fast(&args, limit, "postgres://", "hunter2").await;

    // The server answers and refuses (no such database): no point in retrying for 30 s.
    connect().await;
    let cfg = tokio_postgres::Config::from_str(&url()).unwrap();
    let url = url_as(
        cfg.get_user().unwrap_or("postgres"),
        "weft_no_such_database",
    );
    let args = ["migrate", "--database-url", &url, "--connect-wait", "30s"];
    fails_fast(&args, limit, "weft_no_such_database", "\u{0}").await;
}

/// A login role without privileges, dropped (with what it owns) when the guard goes.
struct Role(String);

impl Role {
    async fn new(client: &tokio_postgres::Client) -> Role {
        let name = format!("weft_limited_{}", uuid::Uuid::now_v7().simple());
        client
            .batch_execute(&format!("CREATE ROLE {name} LOGIN PASSWORD 'hunter2'"))
            .await
            .unwrap();
        Role(name)
    }

    /// The test database's URL with this role as the user.
    fn url(&self) -> String {
        let cfg = tokio_postgres::Config::from_str(&url()).unwrap();
        url_as(
            &format!("{}:hunter2", self.0),
            cfg.get_dbname().unwrap_or("postgres"),
        )
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let role = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let c = connect().await;
                let _ = c
                    .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
                    .await;
            });
        });
        let _ = done.join();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_permissions_are_reported_and_change_nothing() {
    let admin = connect().await;
    let role = Role::new(&admin).await;
    let url = role.url();
    let migrate = |schema: String| {
        let url = url.clone();
        async move {
            let mut cmd = tokio::process::Command::from(common::weft_command());
            cmd.args(["migrate", "--database-url", &url, "--connect-wait", "0s"])
                .env("WEFT_POSTGRES__SCHEMA", schema);
            cmd.output().await.unwrap()
        }
    };
    let expect_refusal = |o: &std::process::Output, schema: &str, why: &str| {
        let (_, err) = text(o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ")
                && last.contains(&format!("schema {schema}"))
                && last.contains("permission denied")
                && last.contains(why)
                && last.contains("nothing was changed"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "the password leaked:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    };

    // No CREATE on the database: the schema cannot be made, and is not.
    let fresh = Schema::new();
    let why = "needs the CREATE privilege on the database";
    expect_refusal(&migrate(fresh.0.clone()).await, &fresh.0, why);
    assert!(!schema_exists(&fresh.0).await, "nothing was created");

    // A schema migrated by someone else that the role may not use: refused, untouched.
    let theirs = Schema::new();
    let mut cmd = tokio::process::Command::from(common::weft_command());
    cmd.args(["migrate", "--database-url", &self::url()])
        .env("WEFT_POSTGRES__SCHEMA", &theirs.0);
    let version = ok(&cmd.output().await.unwrap()).trim().to_string();
    let why = format!("user {} lacks USAGE and CREATE on it", role.0);
    expect_refusal(&migrate(theirs.0.clone()).await, &theirs.0, &why);
    let recorded: i64 = admin
        .query_one(
            &format!(
                "SELECT max(version)::int8 FROM {}.weft_schema_migrations",
                theirs.0
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded.to_string(), version, "the schema is as it was");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_on_postgres_uses_a_schema_of_its_own_and_drops_it() {
    connect().await;
    let out = ok(&weft(&[
        "bench",
        "chain",
        "--steps",
        "20",
        "--store",
        "postgres",
        "--database-url",
        &url(),
    ])
    .await);
    let line: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(line["store"], "postgres", "{out}");
    assert_eq!(line["state"], "succeeded", "{out}");
    let schema = line["schema"].as_str().expect("the schema is reported");
    assert!(schema.starts_with("weft_bench_"), "{out}");
    assert!(!schema_exists(schema).await, "{schema} was left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_stops_the_wait_for_an_unreachable_database() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("up.log");
    let url = format!("postgres://weft@127.0.0.1:{}/weft", free_port());
    let mut child = common::weft_command()
        .args(["up", "--database-url", &url, "--connect-wait", "60s"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    common::eventually(Duration::from_secs(20), "a logged retry", || async {
        read().contains("retrying in").then_some(())
    })
    .await;
    let start = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!(
                "still waiting for PostgreSQL 10 s after SIGTERM:\n{}",
                read()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}\n{}", read());
}
