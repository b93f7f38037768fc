//! The `email` node: SMTP through one pooled transport per server and account, so a burst
//! of emails to the same relay reuses a few open connections instead of paying a TCP, TLS
//! and AUTH handshake for each message.
//!
//! Which server a node talks to comes from the process-wide [`EmailConfig`] unless the node
//! names its own (`params.smtp`). Failures are classified for the retry policy: a 4xx reply
//! or a lost connection may clear up, so the attempt is retried; a 5xx reply or an address
//! that does not parse will not, so the task goes straight to the dead-letter queue.

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use weft_core::nodes::{Addresses, EmailParams, SmtpTls};
use weft_store::Outcome;

mod settings;

pub use settings::{
    DEFAULT_SMTP_COMMAND_TIMEOUT, DEFAULT_SMTP_POOL_SIZE, EmailConfig, SMTP_IDLE_TIMEOUT,
    email_target,
};
use settings::{PasswordSource, Target, resolve};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Sends `email` nodes' messages, keeping one connection pool per server and account.
#[derive(Clone)]
pub struct EmailClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    config: EmailConfig,
    transports: Mutex<Pools>,
}

/// Pools by server and account, each with the use count at its last use.
#[derive(Default)]
struct Pools {
    by_target: HashMap<Target, (Transport, u64)>,
    uses: u64,
}

/// Most pools kept at once. Nodes may template their server, so the servers seen are not
/// bounded; past this many the least recently used pool is dropped (its idle connections
/// close; a send still using it finishes, as it holds its own handle).
const MAX_POOLS: usize = 64;

impl Pools {
    /// `target`'s pool, marked as used now.
    fn get(&mut self, target: &Target) -> Option<Transport> {
        self.uses += 1;
        let (t, used) = self.by_target.get_mut(target)?;
        *used = self.uses;
        Some(t.clone())
    }

    /// Keeps `built` as `target`'s pool unless one is kept already, dropping the least
    /// recently used pool when [`MAX_POOLS`] are kept; returns the pool kept.
    fn insert(&mut self, target: &Target, built: Transport) -> Transport {
        if let Some(t) = self.get(target) {
            return t;
        }
        if self.by_target.len() >= MAX_POOLS {
            let oldest = self
                .by_target
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.by_target.remove(&oldest);
            }
        }
        self.uses += 1;
        self.by_target
            .insert(target.clone(), (built.clone(), self.uses));
        built
    }
}

fn fail(error: String, retryable: bool) -> Outcome {
    Outcome::Failed { error, retryable }
}

impl EmailClient {
    /// A client with no connections yet; pools open on first use.
    pub fn new(config: EmailConfig) -> Self {
        Self {
            inner: Arc::new(ClientInner {
                config,
                transports: Mutex::new(Pools::default()),
            }),
        }
    }

    /// The process-wide settings.
    pub fn config(&self) -> &EmailConfig {
        &self.inner.config
    }

    /// Sends the message `p` describes (templates already rendered). `run_id` and `node`
    /// make its Message-ID, so every attempt of one task sends the same id and a receiver
    /// can drop a duplicate from an attempt whose reply was lost.
    pub async fn send(&self, p: &EmailParams, run_id: &str, node: &str) -> Outcome {
        match self.try_send(p, run_id, node).await {
            Ok(o) | Err(o) => o,
        }
    }

    async fn try_send(
        &self,
        p: &EmailParams,
        run_id: &str,
        node: &str,
    ) -> Result<Outcome, Outcome> {
        let target = resolve(p, &self.inner.config).map_err(|e| fail(e, false))?;
        let (message, message_id, accepted) = build(p, &self.inner.config, run_id, node)?;
        let transport = self.transport(&target)?;
        let server = target.address();
        // The send runs as its own task: if the attempt is dropped (node timeout, run
        // cancelled, shutdown) the SMTP dialogue still finishes, bounded by the command
        // timeout, instead of leaving a pooled connection mid-command for the next email.
        let reply = tokio::spawn(async move { transport.send(message).await })
            .await
            .map_err(|e| fail(format!("SMTP server {server}: the send stopped: {e}"), true))?
            .map_err(|e| classify(&e, &server))?;
        Ok(Outcome::Succeeded(json!({
            "message_id": message_id,
            "accepted": accepted,
            "server": server,
            "response": {
                "code": reply.code().to_string().parse::<u16>().unwrap_or(0),
                "message": reply.message().collect::<Vec<_>>().join("\n"),
            },
        })))
    }

    /// The pooled transport for `target`, created on first use.
    fn transport(&self, target: &Target) -> Result<Transport, Outcome> {
        if let Some(t) = self.inner.transports.lock().get(target) {
            return Ok(t);
        }
        let built = self.build_transport(target)?;
        // Two first sends may race; keep whichever got in first so there is one pool.
        Ok(self.inner.transports.lock().insert(target, built))
    }

    fn build_transport(&self, target: &Target) -> Result<Transport, Outcome> {
        let c = &self.inner.config;
        let tls = match target.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(self.tls_parameters(&target.host)?),
            SmtpTls::Tls => Tls::Wrapper(self.tls_parameters(&target.host)?),
        };
        let mut builder = Transport::builder_dangerous(target.host.clone())
            .port(target.port)
            .tls(tls)
            .timeout(Some(c.command_timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(c.pool_size.max(1))
                    .idle_timeout(SMTP_IDLE_TIMEOUT),
            );
        if let Some(user) = &target.username {
            let password = match &target.password {
                Some(PasswordSource::Config) => c.password.clone().unwrap_or_default(),
                Some(PasswordSource::Env(var)) => std::env::var(var).map_err(|_| {
                    fail(
                        format!("the SMTP password variable {var} is not set on this worker"),
                        false,
                    )
                })?,
                None => {
                    return Err(fail(
                        format!("SMTP user {user:?} has no password: set `password_env`"),
                        false,
                    ));
                }
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(builder.build())
    }

    fn tls_parameters(&self, host: &str) -> Result<TlsParameters, Outcome> {
        let mut b = TlsParameters::builder(host.to_string());
        if let Some(path) = &self.inner.config.tls_ca_file {
            let shown = path.display();
            let pem = std::fs::read(path)
                .map_err(|e| fail(format!("email tls_ca_file {shown}: {e}"), false))?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(fail(
                    format!("email tls_ca_file {shown}: no PEM certificate in it"),
                    false,
                ));
            }
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| fail(format!("email tls_ca_file {shown}: {e}"), false))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|e| fail(format!("TLS settings for {host}: {e}"), false))
    }
}

/// The message, its Message-ID, and every envelope recipient.
fn build(
    p: &EmailParams,
    c: &EmailConfig,
    run_id: &str,
    node: &str,
) -> Result<(Message, String, Vec<String>), Outcome> {
    let parse = |field: String, text: &str| -> Result<Mailbox, Outcome> {
        text.parse::<Mailbox>().map_err(|e| {
            fail(
                format!("params.{field}: {text:?} is not a valid email address ({e})"),
                false,
            )
        })
    };
    let list = |field: &str, a: Option<&Addresses>| -> Result<Vec<Mailbox>, Outcome> {
        let Some(a) = a else { return Ok(Vec::new()) };
        let one = matches!(a, Addresses::One(_));
        a.as_slice()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                parse(
                    if one {
                        field.into()
                    } else {
                        format!("{field}[{i}]")
                    },
                    t,
                )
            })
            .collect()
    };
    let from = match p.from.as_deref().or(c.from.as_deref()) {
        Some(f) => parse("from".into(), f)?,
        None => {
            return Err(fail(
                "no sender: set `params.from` or `from` in the `[email]` settings".into(),
                false,
            ));
        }
    };
    let to = list("to", Some(&p.to))?;
    let cc = list("cc", p.cc.as_ref())?;
    let bcc = list("bcc", p.bcc.as_ref())?;
    let reply_to = list("reply_to", p.reply_to.as_ref())?;
    if to.is_empty() {
        return Err(fail(
            "params.to: needs at least one recipient".into(),
            false,
        ));
    }
    let message_id = format!("<weft.{run_id}.{node}@{}>", from.email.domain());
    let accepted: Vec<String> = to
        .iter()
        .chain(&cc)
        .chain(&bcc)
        .map(|m| m.email.to_string())
        .collect();
    let mut b = Message::builder()
        .from(from)
        .subject(p.subject.clone())
        .message_id(Some(message_id.clone()))
        .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")).to_string());
    for m in to {
        b = b.to(m);
    }
    for m in cc {
        b = b.cc(m);
    }
    for m in bcc {
        b = b.bcc(m);
    }
    for m in reply_to {
        b = b.reply_to(m);
    }
    let built = match (&p.body, &p.html) {
        (Some(text), Some(html)) => b.multipart(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (Some(text), None) => b.header(ContentType::TEXT_PLAIN).body(text.clone()),
        (None, Some(html)) => b.header(ContentType::TEXT_HTML).body(html.clone()),
        (None, None) => {
            return Err(fail(
                "params: an email needs `body`, `html`, or both".into(),
                false,
            ));
        }
    };
    let message = built.map_err(|e| fail(format!("building the message: {e}"), false))?;
    Ok((message, message_id, accepted))
}

/// A 5xx reply will be the same next time; anything else (4xx, a refused or dropped
/// connection, a timeout, a TLS handshake that failed) may not be.
fn classify(e: &SmtpError, server: &str) -> Outcome {
    if let Some(code) = e.status() {
        let text = std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let permanent = e.is_permanent();
        let kind = if permanent { "permanent" } else { "temporary" };
        return fail(
            format!("SMTP server {server} replied {code} {text} ({kind} failure)"),
            !permanent,
        );
    }
    let what = if e.is_timeout() {
        "timed out".to_string()
    } else {
        chain(e)
    };
    // A client error is lettre refusing the message itself (e.g. non-ASCII without
    // SMTPUTF8 on the server), which no retry changes.
    fail(format!("SMTP server {server}: {what}"), !e.is_client())
}

/// The error and its causes, each once: lettre's text and some causes' already include
/// the next cause.
fn chain(e: &SmtpError) -> String {
    use std::error::Error;
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}

/// Parameters as the handler receives them, for the dispatcher.
pub(crate) fn parse_params(params: &Value) -> Result<EmailParams, Outcome> {
    serde_json::from_value(params.clone()).map_err(|e| fail(format!("invalid params: {e}"), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(i: usize) -> Target {
        Target {
            host: format!("smtp{i}.example.com"),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
        }
    }

    // A pool's drop closes its connections on the runtime, as in a send.
    #[tokio::test]
    async fn at_most_max_pools_are_kept_and_the_least_recently_used_goes() {
        let c = EmailClient::new(EmailConfig::default());
        c.transport(&target(0)).expect("pool");
        for i in 1..MAX_POOLS {
            c.transport(&target(i)).expect("pool");
        }
        // Used again: now the most recent; the least recent is target 1.
        c.transport(&target(0)).expect("pool");
        c.transport(&target(MAX_POOLS)).expect("pool");
        let pools = c.inner.transports.lock();
        assert_eq!(pools.by_target.len(), MAX_POOLS);
        assert!(
            !pools.by_target.contains_key(&target(1)),
            "least recently used"
        );
        assert!(pools.by_target.contains_key(&target(MAX_POOLS)));
        assert!(pools.by_target.contains_key(&target(2)));
    }
}
