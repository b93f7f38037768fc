//! The `email` node against a real SMTP server started by the test (see `email/smtp.rs`):
//! delivery with rendered templates, STARTTLS and implicit TLS with AUTH, connection
//! reuse, and how server errors and dropped connections become attempts, retries and dead
//! letters. Every run is on the real engine over SQLite in a temporary directory.

#[path = "email/smtp.rs"]
mod smtp;

use serde_json::{Value, json};
use smtp::{Security, SmtpServer};
use std::sync::atomic::Ordering;
use std::time::Duration;
use weft_core::{RunState, TaskState};
use weft_engine::nodes::EmailConfig;
use weft_engine::{Engine, EngineConfig, RunView, StartRun, TaskView};
use weft_store_sqlite::SqliteStore;

struct Env {
    engine: Engine,
    dir: tempfile::TempDir,
}

async fn env(email: EmailConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Default::default()).unwrap();
    let config = EngineConfig {
        email,
        ..EngineConfig::default()
    };
    let engine = Engine::start(store, config).await.unwrap();
    Env { engine, dir }
}

/// Process-wide settings pointing at `server` in plain text.
fn plain_defaults(server: &SmtpServer) -> EmailConfig {
    EmailConfig {
        host: Some("127.0.0.1".into()),
        port: Some(server.port()),
        tls: weft_core::nodes::SmtpTls::None,
        from: Some("Weft <noreply@example.com>".into()),
        ..Default::default()
    }
}

async fn run(e: &Engine, flow: &str, input: Value) -> RunView {
    let id = e
        .run_start(StartRun {
            flow: flow.into(),
            input,
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    tokio::time::timeout(Duration::from_secs(30), e.wait_run(&id))
        .await
        .expect("run finishes in time")
        .unwrap()
}

fn node<'a>(v: &'a RunView, name: &str) -> &'a TaskView {
    v.nodes
        .iter()
        .find(|n| n.task.node == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// A one-node flow named `name` sending a fixed email; `extra` is more YAML params.
fn simple_flow(name: &str, extra: &str) -> String {
    format!(
        "name: {name}\nnodes:\n  mail:\n    type: email\n    retry: {{max_attempts: 3, initial_delay: 20ms, jitter: 0}}\n    params:\n      to: ann@example.com\n      subject: 'Order {{{{ input.order }}}}'\n      body: 'Shipped.'\n{extra}"
    )
}

#[tokio::test]
async fn templated_email_reaches_the_server_with_rendered_subject_and_body() {
    let server = SmtpServer::start(Security::Plain).await;
    // No process-wide server: the node names its own.
    let e = env(EmailConfig::default()).await;
    e.engine
        .flow_apply(&format!(
            r#"name: welcome
nodes:
  mail:
    type: email
    params:
      to: '{{{{ input.email }}}}'
      cc: [ops@example.com]
      bcc: audit@example.com
      reply_to: 'Support <help@example.com>'
      from: 'Weft <noreply@example.com>'
      subject: 'Welcome, {{{{ input.name }}}}!'
      body: 'Hello {{{{ input.name }}}}, order {{{{ input.order }}}} has shipped.'
      smtp: {{host: 127.0.0.1, port: {port}, tls: none}}
"#,
            port = server.port()
        ))
        .await
        .unwrap();
    let v = run(
        &e.engine,
        "welcome",
        json!({"email": "Ann <ann@example.com>", "name": "Ann", "order": 42}),
    )
    .await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    let out = node(&v, "mail").task.output.clone().unwrap();
    let message_id = format!("<weft.{}.mail@example.com>", v.run.id);
    assert_eq!(out["message_id"], json!(message_id));
    assert_eq!(
        out["accepted"],
        json!(["ann@example.com", "ops@example.com", "audit@example.com"])
    );
    assert_eq!(out["response"]["code"], json!(250));
    assert_eq!(out["server"], json!(format!("127.0.0.1:{}", server.port())));

    let got = server.messages();
    assert_eq!(got.len(), 1, "exactly one message: {got:?}");
    let m = &got[0];
    assert_eq!(m.from, "noreply@example.com");
    assert_eq!(
        m.to,
        ["ann@example.com", "ops@example.com", "audit@example.com"]
    );
    assert!(!m.tls);
    for header in [
        "From: Weft <noreply@example.com>",
        "To: Ann <ann@example.com>",
        "Cc: ops@example.com",
        "Reply-To: Support <help@example.com>",
        "Subject: Welcome, Ann!",
        &format!("Message-ID: {message_id}"),
    ] {
        assert!(
            m.data.contains(header),
            "missing {header:?} in:\n{}",
            m.data
        );
    }
    assert!(
        !m.data.contains("audit@example.com"),
        "Bcc is in the envelope only:\n{}",
        m.data
    );
    assert!(
        m.data.contains("Hello Ann, order 42 has shipped."),
        "{}",
        m.data
    );
}

#[tokio::test]
async fn starttls_with_auth_delivers_only_when_the_ca_is_trusted() {
    let pki = smtp::pki();
    let server = SmtpServer::start(Security::Starttls(pki.server.clone())).await;
    *server.state.credentials.lock() = Some(("svc".into(), "s3cret".into()));
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pki.ca_pem).unwrap();
    let defaults = EmailConfig {
        tls: weft_core::nodes::SmtpTls::Starttls,
        username: Some("svc".into()),
        password: Some("s3cret".into()),
        tls_ca_file: Some(ca.path().to_path_buf()),
        ..plain_defaults(&server)
    };
    let e = env(defaults.clone()).await;
    let flow = simple_flow(
        "tls",
        "      html: '<p>Order {{ input.order }} <b>shipped</b></p>'\n",
    );
    e.engine.flow_apply(&flow).await.unwrap();
    let v = run(&e.engine, "tls", json!({"order": 7})).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    let got = server.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls, "the message came after STARTTLS");
    assert_eq!(got[0].user.as_deref(), Some("svc"), "AUTH happened");
    assert!(got[0].data.contains("Subject: Order 7"), "{}", got[0].data);
    assert!(
        got[0].data.contains("multipart/alternative"),
        "{}",
        got[0].data
    );
    assert!(got[0].data.contains("<b>shipped</b>"), "{}", got[0].data);

    // The same server is refused when its CA is not trusted: verification is real.
    let untrusting = env(EmailConfig {
        tls_ca_file: None,
        ..defaults
    })
    .await;
    untrusting.engine.flow_apply(&flow).await.unwrap();
    let v = run(&untrusting.engine, "tls", json!({"order": 8})).await;
    assert_eq!(v.run.state, RunState::Failed);
    let mail = node(&v, "mail");
    let err = mail.task.error.as_deref().unwrap_or_default();
    assert!(
        err.contains(&format!("127.0.0.1:{}", server.port())) && err.contains("certificate"),
        "{err}"
    );
    assert_eq!(server.messages().len(), 1, "nothing more was delivered");
}

#[tokio::test]
async fn a_node_smtp_override_authenticates_with_a_password_from_the_environment() {
    // Tests may not set variables (no unsafe code), so use one cargo sets for every test.
    let password = std::env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME");
    let pki = smtp::pki();
    let server = SmtpServer::start(Security::Starttls(pki.server.clone())).await;
    *server.state.credentials.lock() = Some(("node-user".into(), password));
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pki.ca_pem).unwrap();
    // The process-wide server is elsewhere and its credentials must not be used here.
    let e = env(EmailConfig {
        host: Some("unused.invalid".into()),
        username: Some("global".into()),
        password: Some("global-secret".into()),
        from: Some("noreply@example.com".into()),
        tls_ca_file: Some(ca.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    let smtp = |var: &str| {
        format!(
            "      smtp: {{host: 127.0.0.1, port: {}, tls: starttls, username: node-user, password_env: {var}}}\n",
            server.port()
        )
    };
    e.engine
        .flow_apply(&simple_flow("own", &smtp("CARGO_PKG_NAME")))
        .await
        .unwrap();
    let v = run(&e.engine, "own", json!({"order": 9})).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    let got = server.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].user.as_deref(), Some("node-user"));
    assert!(got[0].tls);

    // An unset variable fails the node for good, naming the variable.
    e.engine
        .flow_apply(&simple_flow(
            "unset",
            &smtp("WEFT_TEST_NO_SUCH_SMTP_PASSWORD"),
        ))
        .await
        .unwrap();
    let v = run(&e.engine, "unset", json!({"order": 10})).await;
    let mail = node(&v, "mail");
    assert_eq!(mail.task.state, TaskState::Dead);
    assert_eq!(mail.task.attempts.len(), 1);
    let err = mail.task.error.as_deref().unwrap();
    assert!(
        err.contains("WEFT_TEST_NO_SUCH_SMTP_PASSWORD is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let pki = smtp::pki();
    let server = SmtpServer::start(Security::Implicit(pki.server.clone())).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pki.ca_pem).unwrap();
    let e = env(EmailConfig {
        tls: weft_core::nodes::SmtpTls::Tls,
        tls_ca_file: Some(ca.path().to_path_buf()),
        ..plain_defaults(&server)
    })
    .await;
    e.engine
        .flow_apply(&simple_flow("smtps", ""))
        .await
        .unwrap();
    let v = run(&e.engine, "smtps", json!({"order": 1})).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    let got = server.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls);
    assert!(got[0].data.contains("Subject: Order 1"));
}

#[tokio::test]
async fn successive_emails_reuse_one_pooled_connection() {
    let server = SmtpServer::start(Security::Plain).await;
    let e = env(plain_defaults(&server)).await;
    e.engine
        .flow_apply(&simple_flow("pooled", ""))
        .await
        .unwrap();
    for order in 0..5 {
        let v = run(&e.engine, "pooled", json!({"order": order})).await;
        assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    }
    assert_eq!(server.messages().len(), 5);
    assert_eq!(
        server.state.connections.load(Ordering::SeqCst),
        1,
        "five emails, one connection"
    );
}

#[tokio::test]
async fn a_550_reply_dead_letters_the_task_without_retrying() {
    let server = SmtpServer::start(Security::Plain).await;
    *server.state.reject_rcpt.lock() = Some((
        550,
        "5.1.1 <ann@example.com>: Recipient address rejected".into(),
    ));
    let e = env(plain_defaults(&server)).await;
    e.engine
        .flow_apply(&simple_flow("bounce", ""))
        .await
        .unwrap();
    let v = run(&e.engine, "bounce", json!({"order": 1})).await;
    assert_eq!(v.run.state, RunState::Failed);
    let mail = node(&v, "mail");
    assert_eq!(mail.task.state, TaskState::Dead);
    assert_eq!(
        mail.task.attempts.len(),
        1,
        "a permanent reply is not retried"
    );
    let err = mail.task.attempts[0].error.as_deref().unwrap();
    assert!(
        err.contains("550")
            && err.contains("Recipient address rejected")
            && err.contains(&format!("127.0.0.1:{}", server.port())),
        "{err}"
    );
    let dead = e.engine.dlq_list(&Default::default()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].node, "mail");
}

#[tokio::test]
async fn a_451_reply_is_a_failed_attempt_then_a_retry_delivers() {
    let server = SmtpServer::start(Security::Plain).await;
    server.state.temp_fail_rcpt.store(1, Ordering::SeqCst);
    let e = env(plain_defaults(&server)).await;
    e.engine
        .flow_apply(&simple_flow("greylist", ""))
        .await
        .unwrap();
    let v = run(&e.engine, "greylist", json!({"order": 3})).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    let task = &node(&v, "mail").task;
    assert_eq!(task.attempt, 2, "the second attempt delivered");
    assert_eq!(task.attempts.len(), 1, "one failed attempt recorded");
    let err = task.attempts[0].error.as_deref().unwrap();
    assert!(
        err.contains("451") && err.contains("Greylisted") && err.contains("temporary"),
        "{err}"
    );
    assert_eq!(server.messages().len(), 1, "delivered once, by the retry");
}

#[tokio::test]
async fn a_dropped_or_refused_connection_is_retried_and_the_engine_keeps_going() {
    let server = SmtpServer::start(Security::Plain).await;
    server.state.drop_at_mail.store(1, Ordering::SeqCst);
    let e = env(plain_defaults(&server)).await;
    e.engine
        .flow_apply(&simple_flow("flaky", ""))
        .await
        .unwrap();
    let v = run(&e.engine, "flaky", json!({"order": 5})).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    let task = &node(&v, "mail").task;
    assert_eq!(task.attempt, 2, "the second attempt delivered");
    assert_eq!(task.attempts.len(), 1, "one failed attempt recorded");
    let err = task.attempts[0].error.as_deref().unwrap();
    assert!(
        err.contains(&format!("SMTP server 127.0.0.1:{}", server.port())),
        "{err}"
    );
    assert_eq!(server.messages().len(), 1);

    // Nothing listens on this port: every attempt is refused, then the task is dead.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    e.engine
        .flow_apply(&simple_flow(
            "nowhere",
            &format!("      smtp: {{host: 127.0.0.1, port: {closed}, tls: none}}\n"),
        ))
        .await
        .unwrap();
    let v = run(&e.engine, "nowhere", json!({"order": 6})).await;
    assert_eq!(v.run.state, RunState::Failed);
    let mail = node(&v, "mail");
    assert_eq!(mail.task.state, TaskState::Dead);
    assert_eq!(
        mail.task.attempts.len(),
        3,
        "refused connections are retried"
    );
    let err = mail.task.error.as_deref().unwrap();
    assert!(err.contains(&format!("127.0.0.1:{closed}")), "{err}");

    // The engine still delivers afterwards.
    let v = run(&e.engine, "flaky", json!({"order": 7})).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn a_server_that_stops_answering_times_the_attempt_out_and_the_retry_delivers() {
    let server = SmtpServer::start(Security::Plain).await;
    server.state.stall_at_mail.store(1, Ordering::SeqCst);
    let e = env(plain_defaults(&server)).await;
    let flow = simple_flow("stall", "").replace("    retry:", "    timeout: 300ms\n    retry:");
    e.engine.flow_apply(&flow).await.unwrap();
    let v = run(&e.engine, "stall", json!({"order": 11})).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    let task = &node(&v, "mail").task;
    assert_eq!(task.attempt, 2);
    let err = task.attempts[0].error.as_deref().unwrap();
    assert!(err.contains("timed out after 300ms"), "{err}");
    assert_eq!(server.messages().len(), 1);
    assert_eq!(
        server.state.connections.load(Ordering::SeqCst),
        2,
        "the stalled connection was not reused"
    );
}

#[tokio::test]
async fn a_rendered_address_that_does_not_parse_fails_without_retry() {
    let server = SmtpServer::start(Security::Plain).await;
    let e = env(plain_defaults(&server)).await;
    e.engine
        .flow_apply(
            "name: badto\nnodes:\n  mail:\n    type: email\n    retry: {max_attempts: 3, initial_delay: 20ms}\n    params: {to: '{{ input.to }}', subject: s, body: b}\n",
        )
        .await
        .unwrap();
    let v = run(&e.engine, "badto", json!({"to": "not an address"})).await;
    let mail = node(&v, "mail");
    assert_eq!(mail.task.state, TaskState::Dead);
    assert_eq!(mail.task.attempts.len(), 1);
    let err = mail.task.error.as_deref().unwrap();
    assert!(
        err.contains("params.to") && err.contains("not an address"),
        "{err}"
    );
    assert_eq!(server.state.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn apply_rejects_bad_email_params_naming_the_field() {
    let e = env(EmailConfig::default()).await;
    let cases = [
        (
            "to: [ok@example.com, 'bob@'], subject: s, body: b",
            "nodes.mail.params.to[1]",
            "not a valid email address",
        ),
        (
            "to: a@example.com, from: 'no at sign', subject: s, body: b",
            "nodes.mail.params.from",
            "not a valid email address",
        ),
        (
            "to: a@example.com, subject: s, body: b, smtp: {host: h, tls: ssl}",
            "nodes.mail.params.smtp.tls",
            "starttls",
        ),
        (
            "to: a@example.com, subject: s, body: b, smtp: {host: h, port: 70000}",
            "nodes.mail.params.smtp.port",
            "1 to 65535",
        ),
        (
            "to: a@example.com, subject: s",
            "nodes.mail.params.body",
            "`html`",
        ),
        (
            "to: a@example.com, subject: s, body: b, smtp: {username: u}",
            "nodes.mail.params.smtp.password_env",
            "needs `password_env`",
        ),
    ];
    for (params, path, needle) in cases {
        let doc = format!("name: bad\nnodes:\n  mail: {{type: email, params: {{{params}}}}}\n");
        let err = e.engine.flow_apply(&doc).await.unwrap_err().to_string();
        assert!(
            err.contains(path) && err.contains(needle),
            "{params}: expected {path} / {needle}, got: {err}"
        );
    }
    let _ = &e.dir;
}

#[test]
fn the_catalog_lists_the_email_node_with_its_schema() {
    let entry = Engine::catalog()
        .into_iter()
        .find(|c| c.kind == "email")
        .expect("email in the catalog");
    let props = &entry.params["properties"];
    for field in ["to", "cc", "bcc", "from", "subject", "body", "html", "smtp"] {
        assert!(props.get(field).is_some(), "schema lacks {field}: {props}");
    }
}
