//! Which SMTP server and account an `email` node uses: the process-wide [`EmailConfig`],
//! overridden by the node's `smtp` params. Kept apart from the sending so the rules about
//! what a node inherits (and what it must not) can be read and tested on their own.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use weft_core::nodes::{EmailParams, SmtpTls};

/// Open connections kept per SMTP server and account, by default.
pub const DEFAULT_SMTP_POOL_SIZE: u32 = 8;
/// Longest one SMTP command may take, by default (the node's timeout bounds the whole send).
pub const DEFAULT_SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an idle pooled connection is kept open.
pub const SMTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Process-wide SMTP settings: the server `email` nodes use unless they name their own.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// Server host name. Default: none (then every email node must give `smtp.host`).
    pub host: Option<String>,
    /// Server port. Default: 587, 465 or 25 by `tls` (see [`SmtpTls::default_port`]).
    pub port: Option<u16>,
    /// Connection security. Default `starttls`.
    pub tls: SmtpTls,
    /// User name for SMTP AUTH. Default: none (no AUTH).
    pub username: Option<String>,
    /// The password itself (from the config file or `WEFT_EMAIL__PASSWORD`). Default: none.
    pub password: Option<String>,
    /// Or the environment variable holding it, read when a connection pool is created.
    pub password_env: Option<String>,
    /// Sender of nodes that give no `from`. Default: none.
    pub from: Option<String>,
    /// A PEM file of extra CA certificates to trust, for relays with a private CA. The
    /// system's roots stay trusted. Default: none.
    pub tls_ca_file: Option<PathBuf>,
    /// Connections kept open per server and account. Default [`DEFAULT_SMTP_POOL_SIZE`].
    pub pool_size: u32,
    /// Longest one SMTP command may take. Default [`DEFAULT_SMTP_COMMAND_TIMEOUT`].
    pub command_timeout: Duration,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: SmtpTls::default(),
            username: None,
            password: None,
            password_env: None,
            from: None,
            tls_ca_file: None,
            pool_size: DEFAULT_SMTP_POOL_SIZE,
            command_timeout: DEFAULT_SMTP_COMMAND_TIMEOUT,
        }
    }
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("from", &self.from)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("pool_size", &self.pool_size)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// Where a password comes from; never the password itself, so it can be part of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum PasswordSource {
    /// The process-wide `[email] password`.
    Config,
    /// An environment variable.
    Env(String),
}

/// The server and account one email goes through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: SmtpTls,
    pub(super) username: Option<String>,
    pub(super) password: Option<PasswordSource>,
}

impl Target {
    pub(super) fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The `host:port` an email node with `params` sends to under `defaults` (a circuit
/// breaker's key). A node with no host anywhere gives `:<port>`; it fails before
/// connecting.
pub fn email_target(params: &EmailParams, defaults: &EmailConfig) -> String {
    match resolve(params, defaults) {
        Ok(t) => t.address(),
        Err(_) => format!(":{}", defaults.tls.default_port()),
    }
}

/// A node's own `smtp.host` makes it a different server: nothing else is inherited, so
/// the process-wide credentials are never sent to a host they were not meant for.
pub(super) fn resolve(params: &EmailParams, d: &EmailConfig) -> Result<Target, String> {
    let node = params.smtp.clone().unwrap_or_default();
    // Validation keeps node ports in 1..=65535; a bad one falls back to the default.
    let node_port = node
        .port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p > 0);
    let node_account = node
        .username
        .clone()
        .map(|u| (u, node.password_env.clone().map(PasswordSource::Env)));
    if let Some(host) = node.host {
        let tls = node.tls.unwrap_or_default();
        let (username, password) = node_account.unzip();
        return Ok(Target {
            host: host.trim().to_string(),
            port: node_port.unwrap_or(tls.default_port()),
            tls,
            username,
            password: password.flatten(),
        });
    }
    let host = d.host.clone().ok_or(
        "no SMTP server: set `params.smtp.host` on the node or `host` in the `[email]` settings",
    )?;
    let tls = node.tls.unwrap_or(d.tls);
    let (username, password) = match node_account {
        Some((u, p)) => (Some(u), p),
        None => {
            let source = if d.password.is_some() {
                Some(PasswordSource::Config)
            } else {
                d.password_env.clone().map(PasswordSource::Env)
            };
            (d.username.clone(), d.username.as_ref().and(source))
        }
    };
    Ok(Target {
        host,
        port: node_port.or(d.port).unwrap_or(tls.default_port()),
        tls,
        username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_core::nodes::SmtpParams;

    fn params(smtp: Option<SmtpParams>) -> EmailParams {
        serde_json::from_value(json!({"to": "a@example.com", "subject": "s", "body": "b"}))
            .map(|p: EmailParams| EmailParams { smtp, ..p })
            .unwrap()
    }

    #[test]
    fn node_host_inherits_no_credentials_and_defaults_its_port() {
        let d = EmailConfig {
            host: Some("relay.internal".into()),
            port: Some(2525),
            username: Some("svc".into()),
            password: Some("secret".into()),
            ..Default::default()
        };
        let own = resolve(
            &params(Some(SmtpParams {
                host: Some("smtp.other.com".into()),
                tls: Some(SmtpTls::Tls),
                ..Default::default()
            })),
            &d,
        )
        .unwrap();
        assert_eq!(own.address(), "smtp.other.com:465");
        assert_eq!(own.username, None);
        assert_eq!(own.password, None);

        let inherited = resolve(&params(None), &d).unwrap();
        assert_eq!(inherited.address(), "relay.internal:2525");
        assert_eq!(inherited.username.as_deref(), Some("svc"));
        assert_eq!(inherited.password, Some(PasswordSource::Config));
        assert_eq!(email_target(&params(None), &d), "relay.internal:2525");
    }

    #[test]
    fn no_host_anywhere_is_a_permanent_failure_naming_both_places() {
        let e = resolve(&params(None), &EmailConfig::default()).unwrap_err();
        assert!(
            e.contains("params.smtp.host") && e.contains("[email]"),
            "{e}"
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let c = EmailConfig {
            password: Some("hunter2".into()),
            ..Default::default()
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
