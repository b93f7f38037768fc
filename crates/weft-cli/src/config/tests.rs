use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write_toml(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn load_err(file: Option<&Path>, env: &[(String, String)]) -> String {
    format!(
        "{:#}",
        Config::load(file, env, &Overrides::default()).unwrap_err()
    )
}

#[test]
fn defaults_come_from_the_named_constants() {
    let c = Config::load(None, &[], &Overrides::default()).unwrap();
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.listen, DEFAULT_LISTEN);
    assert_eq!(c.flows_dir, None);
    assert_eq!(c.durability, Durability::Full);
    assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(c.shutdown_grace, weft_engine::DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(c.default_concurrency, weft_engine::DEFAULT_CONCURRENCY);
    assert!(c.queues.is_empty());
    let engine = EngineConfig::default();
    assert_eq!(c.http.connect_timeout, engine.http_connect_timeout);
    assert_eq!(c.http.pool_idle_per_host, engine.http_pool_idle_per_host);
}

#[test]
fn file_then_env_then_flags() {
    let (_dir, path) = write_toml(
        r#"
data_dir = "/from/file"
listen = "127.0.0.1:9000"
durability = "normal"
shutdown_grace = "5s"
default_concurrency = 4
max_body_bytes = 1000

[queues]
email = 20
heavy = 2

[http]
connect_timeout = "3s"
pool_idle_per_host = 8
"#,
    );
    // The file alone.
    let c = Config::load(Some(&path), &[], &Overrides::default()).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/from/file"));
    assert_eq!(c.listen, "127.0.0.1:9000");
    assert_eq!(c.durability, Durability::Normal);
    assert_eq!(c.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.default_concurrency, 4);
    assert_eq!(c.max_body_bytes, 1000);
    assert_eq!(c.queues.get("email"), Some(&20));
    assert_eq!(c.queues.get("heavy"), Some(&2));
    assert_eq!(c.http.connect_timeout, Duration::from_secs(3));
    assert_eq!(c.http.pool_idle_per_host, 8);

    // The environment beats the file; queues merge, with names lowercased.
    let vars = env(&[
        ("WEFT_DATA_DIR", "/from/env"),
        ("WEFT_LISTEN", "127.0.0.1:9001"),
        ("WEFT_DURABILITY", "full"),
        ("WEFT_SHUTDOWN_GRACE", "1m"),
        ("WEFT_DEFAULT_CONCURRENCY", "7"),
        ("WEFT_MAX_BODY_BYTES", "2000"),
        ("WEFT_QUEUES__EMAIL", "30"),
        ("WEFT_QUEUES__BULK", "3"),
        ("WEFT_HTTP__CONNECT_TIMEOUT", "250ms"),
        ("WEFT_HTTP__POOL_IDLE_PER_HOST", "9"),
        ("WEFT_FLOWS_DIR", "/flows/env"),
        ("WEFT_LOG", "debug"),
        ("WEFT_URL", "http://x"),
        ("PATH", "/bin"),
    ]);
    let c = Config::load(Some(&path), &vars, &Overrides::default()).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/from/env"));
    assert_eq!(c.listen, "127.0.0.1:9001");
    assert_eq!(c.durability, Durability::Full);
    assert_eq!(c.shutdown_grace, Duration::from_secs(60));
    assert_eq!(c.default_concurrency, 7);
    assert_eq!(c.max_body_bytes, 2000);
    assert_eq!(
        c.queues,
        BTreeMap::from([
            ("bulk".to_string(), 3),
            ("email".to_string(), 30),
            ("heavy".to_string(), 2)
        ])
    );
    assert_eq!(c.http.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.http.pool_idle_per_host, 9);
    assert_eq!(c.flows_dir, Some(PathBuf::from("/flows/env")));

    // Flags beat both.
    let flags = Overrides {
        data_dir: Some("/from/flag".into()),
        listen: Some("0.0.0.0:1".into()),
        flows_dir: Some("/flows/flag".into()),
        durability: Some(Durability::Normal),
        ..Overrides::default()
    };
    let c = Config::load(Some(&path), &vars, &flags).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(c.listen, "0.0.0.0:1");
    assert_eq!(c.flows_dir, Some(PathBuf::from("/flows/flag")));
    assert_eq!(c.durability, Durability::Normal);
    // What no flag sets keeps the environment's value.
    assert_eq!(c.default_concurrency, 7);
}

#[test]
fn config_path_prefers_the_flag_over_weft_config() {
    let vars = env(&[("WEFT_CONFIG", "/env.toml")]);
    assert_eq!(
        config_path(Some(Path::new("/flag.toml")), &vars),
        Some(PathBuf::from("/flag.toml"))
    );
    assert_eq!(config_path(None, &vars), Some(PathBuf::from("/env.toml")));
    assert_eq!(config_path(None, &[]), None);
}

#[test]
fn unknown_toml_key_names_the_key_and_the_file() {
    let (_dir, path) = write_toml("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n");
    let err = load_err(Some(&path), &[]);
    assert!(err.contains("listen_addr"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");

    let (_dir, path) = write_toml("[http]\ntimeout = \"1s\"\n");
    let err = load_err(Some(&path), &[]);
    assert!(
        err.contains("timeout") && err.contains("connect_timeout"),
        "{err}"
    );
}

#[test]
fn bad_file_values_name_the_field() {
    let (_dir, path) = write_toml("shutdown_grace = \"soon\"\n");
    let err = load_err(Some(&path), &[]);
    assert!(
        err.contains("shutdown_grace") && err.contains("ms, s, m, h, d"),
        "{err}"
    );

    let (_dir, path) = write_toml("durability = \"fast\"\n");
    let err = load_err(Some(&path), &[]);
    assert!(
        err.contains("durability") && err.contains("normal"),
        "{err}"
    );
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let err = load_err(Some(Path::new("/no/such/weft.toml")), &[]);
    assert!(err.contains("/no/such/weft.toml"), "{err}");
}

#[test]
fn unknown_weft_variable_is_rejected_listing_the_allowed_ones() {
    let err = load_err(None, &env(&[("WEFT_BOGUS", "1")]));
    assert!(err.contains("WEFT_BOGUS"), "{err}");
    for allowed in [
        "WEFT_DATA_DIR",
        "WEFT_LISTEN",
        "WEFT_CONFIG",
        "WEFT_QUEUES__<NAME>",
    ] {
        assert!(err.contains(allowed), "{err}");
    }
    let err = load_err(None, &env(&[("WEFT_LISTN", "x")]));
    assert!(err.contains("did you mean WEFT_LISTEN"), "{err}");
    let err = load_err(None, &env(&[("WEFT_QUEUES__", "3")]));
    assert!(err.contains("WEFT_QUEUES__"), "{err}");
}

#[test]
fn bad_env_values_name_the_variable() {
    let cases = [
        ("WEFT_MAX_BODY_BYTES", "lots", "whole number"),
        ("WEFT_DEFAULT_CONCURRENCY", "-1", "whole number"),
        ("WEFT_QUEUES__EMAIL", "x", "whole number"),
        ("WEFT_DURABILITY", "fast", "`full` or `normal`"),
        ("WEFT_SHUTDOWN_GRACE", "later", "ms, s, m, h, d"),
        (
            "WEFT_HTTP__CONNECT_TIMEOUT",
            "1 fortnight",
            "ms, s, m, h, d",
        ),
    ];
    for (key, value, allowed) in cases {
        let err = load_err(None, &env(&[(key, value)]));
        assert!(err.contains(key) && err.contains(allowed), "{key}: {err}");
    }
}

#[test]
fn concurrency_must_be_in_range() {
    for bad in ["0", "10001"] {
        let err = load_err(None, &env(&[("WEFT_DEFAULT_CONCURRENCY", bad)]));
        assert!(
            err.contains("default_concurrency") && err.contains("between 1 and 10000"),
            "{err}"
        );
    }
    let (_dir, path) = write_toml("[queues]\nemail = 0\n");
    let err = load_err(Some(&path), &[]);
    assert!(
        err.contains("queues.email") && err.contains("between 1 and 10000"),
        "{err}"
    );
    let ok = Config::load(
        None,
        &env(&[("WEFT_QUEUES__MAX", "10000")]),
        &Overrides::default(),
    );
    assert!(ok.is_ok());
}

#[test]
fn queue_names_must_be_valid() {
    let (_dir, path) = write_toml("[queues]\n\"bad name!\" = 2\n");
    let err = load_err(Some(&path), &[]);
    assert!(
        err.contains("bad name!") && err.contains("letters, digits"),
        "{err}"
    );
}

#[test]
fn listen_must_be_a_socket_address() {
    let flags = Overrides {
        listen: Some("localhost".into()),
        ..Overrides::default()
    };
    let err = format!("{:#}", Config::load(None, &[], &flags).unwrap_err());
    assert!(err.contains("listen") && err.contains("IP:PORT"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let (_dir, path) =
        write_toml("listen = \"nope\"\ndefault_concurrency = 0\nmax_body_bytes = 0\n");
    let err = load_err(Some(&path), &[]);
    for field in ["listen", "default_concurrency", "max_body_bytes"] {
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn engine_config_carries_the_settings() {
    let vars = env(&[
        ("WEFT_QUEUES__HEAVY", "2"),
        ("WEFT_DEFAULT_CONCURRENCY", "5"),
    ]);
    let e = Config::load(None, &vars, &Overrides::default())
        .unwrap()
        .engine_config();
    assert_eq!(e.default_concurrency, 5);
    assert_eq!(e.queues.get("heavy"), Some(&2));
    assert!(e.run_workers);
}

#[test]
fn api_protections_come_from_file_and_env() {
    let c = Config::load(None, &[], &Overrides::default()).unwrap();
    assert_eq!(c.request_timeout, weft_api::DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(
        c.max_inflight_requests,
        weft_api::DEFAULT_MAX_INFLIGHT_REQUESTS
    );
    assert!(!c.trust_proxy);
    assert_eq!(c.limits.per_ip, Some(weft_api::limits::DEFAULT_PER_IP));
    assert_eq!(c.api_options().limits, weft_api::limits::Limits::default());

    let (_dir, path) = write_toml(
        "request_timeout = \"5s\"\nmax_inflight_requests = 64\ntrust_proxy = true\n\
         [limits]\nper_ip = \"100/s burst 200\"\nbatch = \"off\"\n",
    );
    let e = env(&[
        ("WEFT_LIMITS__WRITE", "60/m"),
        ("WEFT_TRUST_PROXY", "false"),
    ]);
    let c = Config::load(Some(&path), &e, &Overrides::default()).unwrap();
    assert_eq!(c.request_timeout, Duration::from_secs(5));
    assert_eq!(c.max_inflight_requests, 64);
    assert!(!c.trust_proxy, "env wins over the file");
    let per_ip = c.limits.per_ip.unwrap();
    assert_eq!((per_ip.per_second, per_ip.burst), (100.0, 200));
    assert_eq!(c.limits.batch, None);
    assert_eq!(c.limits.write.unwrap().burst, 60);

    let (_dir, path) = write_toml("[limits]\nper_ip = \"lots\"\n");
    assert!(load_err(Some(&path), &[]).contains("not a rate"));
    let (_dir, path) = write_toml("[limits]\nper_host = \"1/s\"\n");
    assert!(load_err(Some(&path), &[]).contains("per_host"));
    let err = load_err(None, &env(&[("WEFT_LIMITS__PER_IPP", "1/s")]));
    assert!(err.contains("WEFT_LIMITS__PER_IPP"), "{err}");
    let err = load_err(None, &env(&[("WEFT_MAX_INFLIGHT_REQUESTS", "0")]));
    assert!(err.contains("max_inflight_requests"), "{err}");
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/weft.toml");
    let c = Config::from_file(&path).unwrap();
    c.validate().unwrap();
    assert_eq!(c.limits, LimitsConfig::default());
}

#[test]
fn event_settings_come_from_file_and_env_and_reach_the_engine() {
    let (_dir, path) = write_toml("[events]\nbuffer = 500\n");
    let vars = env(&[("WEFT_EVENTS__SUBSCRIBER_LAG", "64")]);
    let c = Config::load(Some(&path), &vars, &Overrides::default()).unwrap();
    let engine = c.engine_config();
    assert_eq!(
        (engine.event_buffer, engine.event_subscriber_lag),
        (500, 64)
    );
    let err = load_err(None, &env(&[("WEFT_EVENTS__BUFFER", "0")]));
    assert!(err.contains("events.buffer"), "{err}");
}

#[test]
fn retention_comes_from_file_and_env_and_reaches_the_engine() {
    let c = Config::load(None, &[], &Overrides::default()).unwrap();
    assert_eq!(
        c.engine_config().retention,
        None,
        "history is kept for ever by default"
    );

    let (_dir, path) = write_toml("[retention]\ndays = 30\n");
    let vars = env(&[("WEFT_RETENTION__EVERY", "10m")]);
    let c = Config::load(Some(&path), &vars, &Overrides::default()).unwrap();
    let r = c.engine_config().retention.expect("retention set");
    assert_eq!(r.keep, Duration::from_secs(30 * 86_400));
    assert_eq!(r.every, Duration::from_secs(600));
    let orchestrator = crate::config::Roles {
        gateway: false,
        orchestrator: true,
        worker: false,
    };
    let cluster = c.cluster_engine_config(orchestrator);
    assert_eq!(cluster.retention, Some(r), "weft serve keeps the setting");

    let err = load_err(None, &env(&[("WEFT_RETENTION__DAYS", "-1")]));
    assert!(err.contains("WEFT_RETENTION__DAYS"), "{err}");
    let err = load_err(None, &env(&[("WEFT_RETENTION__DAYS", "99999")]));
    assert!(err.contains("retention.days = 99999"), "{err}");
    let (_dir, path) = write_toml("[retention]\ndays = 7\nevery = \"0s\"\n");
    let err = load_err(Some(&path), &[]);
    assert!(err.contains("retention.every"), "{err}");
    let (_dir, path) = write_toml("[retention]\nkeep = 7\n");
    let err = load_err(Some(&path), &[]);
    assert!(err.contains("keep") && err.contains("days"), "{err}");
}

#[test]
fn postgres_store_comes_from_file_env_and_flags() {
    let c = Config::load(None, &[], &Overrides::default()).unwrap();
    assert_eq!(c.database_url, None);
    assert_eq!(c.postgres.schema, "public");
    assert_eq!(c.postgres.pool_size, 16);
    assert_eq!(c.postgres.connect_wait, Duration::from_secs(30));

    let (_dir, path) = write_toml(
        r#"
database_url = "postgres://weft:secret@db:5432/weft"

[postgres]
schema = "weft_prod"
pool_size = 8
connect_wait = "1m"
"#,
    );
    let c = Config::load(Some(&path), &[], &Overrides::default()).unwrap();
    let url = c.database_url.as_ref().unwrap();
    assert_eq!(url.as_str(), "postgres://weft:secret@db:5432/weft");
    assert_eq!(c.postgres.schema, "weft_prod");
    assert_eq!(c.postgres.pool_size, 8);
    assert_eq!(c.postgres.connect_wait, Duration::from_secs(60));
    // A printed config never shows the password.
    assert!(!format!("{c:?}").contains("secret"));

    let vars = env(&[
        ("WEFT_DATABASE_URL", "postgresql://other@db2/weft"),
        ("WEFT_POSTGRES__SCHEMA", "weft_env"),
        ("WEFT_POSTGRES__POOL_SIZE", "4"),
        ("WEFT_POSTGRES__CONNECT_WAIT", "5s"),
    ]);
    let c = Config::load(Some(&path), &vars, &Overrides::default()).unwrap();
    assert_eq!(
        c.database_url.as_ref().unwrap().as_str(),
        "postgresql://other@db2/weft"
    );
    assert_eq!(
        (c.postgres.schema.as_str(), c.postgres.pool_size),
        ("weft_env", 4)
    );
    assert_eq!(c.postgres.connect_wait, Duration::from_secs(5));

    let flags = Overrides {
        database_url: Some("postgres://flag@db3/weft".into()),
        connect_wait: Some(Duration::ZERO),
        ..Overrides::default()
    };
    let c = Config::load(Some(&path), &vars, &flags).unwrap();
    assert_eq!(
        c.database_url.as_ref().unwrap().as_str(),
        "postgres://flag@db3/weft"
    );
    assert_eq!(c.postgres.connect_wait, Duration::ZERO);
    // An empty flag or variable means SQLite.
    let flags = Overrides {
        database_url: Some(String::new()),
        ..Overrides::default()
    };
    assert_eq!(
        Config::load(Some(&path), &vars, &flags)
            .unwrap()
            .database_url,
        None
    );
}

#[test]
fn bad_postgres_settings_are_reported_without_the_password() {
    let vars = env(&[
        ("WEFT_DATABASE_URL", "mysql://root:hunter2@db/weft"),
        ("WEFT_POSTGRES__SCHEMA", "Weft-Prod"),
        ("WEFT_POSTGRES__POOL_SIZE", "0"),
    ]);
    let err = load_err(None, &vars);
    assert!(err.contains("database_url"), "{err}");
    assert!(err.contains("postgres://"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("postgres.schema"), "{err}");
    assert!(err.contains("postgres.pool_size = 0"), "{err}");
    let err = load_err(None, &env(&[("WEFT_POSTGRES__POOL", "3")]));
    assert!(
        err.contains("did you mean WEFT_POSTGRES__POOL_SIZE"),
        "{err}"
    );
    let err = load_err(
        None,
        &env(&[("WEFT_DATABASE_URL", "postgres://u:hunter2@h:99999/d")]),
    );
    assert!(err.contains("not a valid PostgreSQL URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // The tests' own variable is not a config key, but not an error either.
    Config::load(
        None,
        &env(&[("WEFT_TEST_DATABASE_URL", "postgres://x@y/z")]),
        &Overrides::default(),
    )
    .unwrap();
}
