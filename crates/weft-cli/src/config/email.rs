//! The `[email]` section: the SMTP server `email` nodes use when they do not name their
//! own, so a flow does not repeat (or contain) server settings and credentials.

use super::de_duration;
use anyhow::bail;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use weft_core::nodes::{SMTP_TLS_MODES, SmtpTls, check_mailbox, is_env_var_name};
use weft_engine::nodes::{DEFAULT_SMTP_COMMAND_TIMEOUT, DEFAULT_SMTP_POOL_SIZE, EmailConfig};

/// Most connections `email.pool_size` may keep per server.
pub const MAX_SMTP_POOL_SIZE: u32 = 1_000;

/// The `email` node's default SMTP server.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    /// Server host name. Default: none (each email node must then give `smtp.host`).
    pub host: Option<String>,
    /// Server port, 1 to 65535. Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u32>,
    /// `starttls`, `tls` or `none`. Default `starttls`.
    pub tls: SmtpTls,
    /// User name for SMTP AUTH. Default: none.
    pub username: Option<String>,
    /// The password. Prefer `password_env`, or `WEFT_EMAIL__PASSWORD`. Default: none.
    pub password: Option<String>,
    /// Name of the environment variable holding the password. Default: none.
    pub password_env: Option<String>,
    /// Sender of email nodes that give no `from`. Default: none.
    pub from: Option<String>,
    /// PEM file of extra CA certificates to trust (a relay with a private CA). Default: none.
    pub tls_ca_file: Option<PathBuf>,
    /// Connections kept open per server and account (1 to [`MAX_SMTP_POOL_SIZE`]).
    /// Default [`DEFAULT_SMTP_POOL_SIZE`].
    pub pool_size: u32,
    /// Longest one SMTP command may take, e.g. `60s`. Default [`DEFAULT_SMTP_COMMAND_TIMEOUT`].
    #[serde(deserialize_with = "de_duration")]
    pub command_timeout: Duration,
}

impl Default for EmailSettings {
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

impl fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The engine's own Debug hides the password.
        fmt::Debug::fmt(&self.engine(), f)
    }
}

impl EmailSettings {
    /// Applies one `WEFT_EMAIL__*` variable.
    pub(super) fn apply_env(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let text = || Some(value.trim().to_string()).filter(|v| !v.is_empty());
        match key.strip_prefix("WEFT_EMAIL__").unwrap_or_default() {
            "HOST" => self.host = text(),
            "PORT" => {
                self.port = Some(value.trim().parse().map_err(|_| {
                    anyhow::anyhow!("{key}={value:?}: expected a port number, 1 to 65535")
                })?)
            }
            "TLS" => {
                self.tls = SmtpTls::parse(value).ok_or_else(|| {
                    anyhow::anyhow!("{key}={value:?}: expected {}", SMTP_TLS_MODES.join(", "))
                })?
            }
            "USERNAME" => self.username = text(),
            // Not trimmed: a password may end in a space.
            "PASSWORD" => self.password = Some(value.to_string()).filter(|v| !v.is_empty()),
            "PASSWORD_ENV" => self.password_env = text(),
            "FROM" => self.from = text(),
            "TLS_CA_FILE" => self.tls_ca_file = text().map(PathBuf::from),
            "POOL_SIZE" => {
                self.pool_size = value
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{key}={value:?}: expected a whole number"))?
            }
            "COMMAND_TIMEOUT" => {
                self.command_timeout =
                    weft_core::duration::parse(value).map_err(|e| anyhow::anyhow!("{key}: {e}"))?
            }
            _ => bail!("{}", super::env::unknown_env(key)),
        }
        Ok(())
    }

    /// Every problem with these values.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(h) = &self.host
            && (h.trim().is_empty() || h.contains(char::is_whitespace))
        {
            out.push(format!("email.host = {h:?}: not a host name"));
        }
        if let Some(p) = self.port
            && !(1..=65535).contains(&p)
        {
            out.push(format!("email.port = {p}: use 1 to 65535"));
        }
        if let Some(f) = &self.from
            && let Err(e) = check_mailbox(f)
        {
            out.push(format!("email.from: {e}"));
        }
        if let Some(v) = &self.password_env
            && !is_env_var_name(v)
        {
            out.push(format!(
                "email.password_env = {v:?}: not an environment variable name; use letters, digits and `_`"
            ));
        }
        if self.password.is_some() && self.password_env.is_some() {
            out.push("email.password and email.password_env: set one, not both".to_string());
        }
        let has_password = self.password.is_some() || self.password_env.is_some();
        match (&self.username, has_password) {
            (Some(_), false) => {
                out.push("email.username needs email.password_env (or email.password)".to_string())
            }
            (None, true) => out.push("email.password needs email.username".to_string()),
            _ => {}
        }
        if let Some(path) = &self.tls_ca_file {
            match std::fs::read_to_string(path) {
                Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => out.push(format!(
                    "email.tls_ca_file = {}: no PEM certificate in it",
                    path.display()
                )),
                Err(e) => out.push(format!("email.tls_ca_file = {}: {e}", path.display())),
            }
        }
        if !(1..=MAX_SMTP_POOL_SIZE).contains(&self.pool_size) {
            out.push(format!(
                "email.pool_size = {}: use 1 to {MAX_SMTP_POOL_SIZE}",
                self.pool_size
            ));
        }
        if self.command_timeout.is_zero() {
            out.push("email.command_timeout = 0s: must be longer than zero".to_string());
        }
        out
    }

    /// The engine's email settings (checked by [`EmailSettings::problems`]).
    pub fn engine(&self) -> EmailConfig {
        EmailConfig {
            host: self.host.as_ref().map(|h| h.trim().to_string()),
            port: self.port.and_then(|p| u16::try_from(p).ok()),
            tls: self.tls,
            username: self.username.clone(),
            password: self.password.clone(),
            password_env: self.password_env.clone(),
            from: self.from.clone(),
            tls_ca_file: self.tls_ca_file.clone(),
            pool_size: self.pool_size,
            command_timeout: self.command_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};
    use std::path::Path;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Config> {
        Config::load(file, env, &Overrides::default())
    }

    #[test]
    fn email_settings_come_from_the_file_and_env_and_reach_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weft.toml");
        std::fs::write(
            &file,
            "[email]\nhost = \"smtp.example.com\"\ntls = \"tls\"\nusername = \"svc\"\npassword_env = \"SMTP_PASSWORD\"\nfrom = \"Shop <shop@example.com>\"\n",
        )
        .unwrap();
        let c = load(Some(&file), &env(&[("WEFT_EMAIL__PORT", "2465")])).unwrap();
        let e = c.engine_config().email;
        assert_eq!(e.host.as_deref(), Some("smtp.example.com"));
        assert_eq!(e.port, Some(2465));
        assert_eq!(e.tls, weft_core::nodes::SmtpTls::Tls);
        assert_eq!(e.password_env.as_deref(), Some("SMTP_PASSWORD"));
        assert_eq!(e.from.as_deref(), Some("Shop <shop@example.com>"));

        let c = load(
            None,
            &env(&[
                ("WEFT_EMAIL__HOST", "relay"),
                ("WEFT_EMAIL__USERNAME", "u"),
                ("WEFT_EMAIL__PASSWORD", "hunter2"),
            ]),
        )
        .unwrap();
        assert_eq!(c.engine_config().email.password.as_deref(), Some("hunter2"));
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "Debug output hides the password"
        );
    }

    #[test]
    fn bad_email_settings_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weft.toml");
        let err = |toml: &str| {
            std::fs::write(&file, toml).unwrap();
            format!("{:#}", load(Some(&file), &[]).unwrap_err())
        };
        let e = err("[email]\ntls = \"ssl\"\n");
        assert!(e.contains("tls") && e.contains("starttls"), "{e}");
        let e = err("[email]\nhots = \"x\"\n");
        assert!(e.contains("hots"), "{e}");
        let e = err("[email]\nport = 70000\nfrom = \"nobody\"\nusername = \"u\"\n");
        assert!(e.contains("email.port = 70000: use 1 to 65535"), "{e}");
        assert!(e.contains("email.from"), "{e}");
        assert!(e.contains("email.username needs"), "{e}");
        let e = err("[email]\ntls_ca_file = \"/nonexistent/ca.pem\"\n");
        assert!(e.contains("email.tls_ca_file = /nonexistent/ca.pem"), "{e}");

        let e = format!(
            "{:#}",
            load(None, &env(&[("WEFT_EMAIL__TLS", "ssl")])).unwrap_err()
        );
        assert!(
            e.contains("WEFT_EMAIL__TLS") && e.contains("starttls"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            load(None, &env(&[("WEFT_EMAIL__HOTS", "x")])).unwrap_err()
        );
        assert!(e.contains("WEFT_EMAIL__HOST"), "suggests the closest: {e}");
    }
}
