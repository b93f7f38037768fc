//! Which store `weft up` uses: SQLite in `data_dir` (the default), or PostgreSQL when
//! `database_url` is set. The URL may carry a password, so it is only ever shown masked.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Schema used when `[postgres] schema` is not given.
pub const DEFAULT_PG_SCHEMA: &str = weft_store_postgres::DEFAULT_SCHEMA;
/// Pooled connections when `[postgres] pool_size` is not given.
pub const DEFAULT_PG_POOL_SIZE: usize = weft_store_postgres::DEFAULT_POOL_SIZE;
/// How long start-up keeps retrying an unreachable database when nothing says otherwise.
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(30);
/// URL schemes that select the PostgreSQL store.
pub const PG_SCHEMES: &[&str] = &["postgres://", "postgresql://"];

/// A database URL. Its `Debug` and [`DatabaseUrl::shown`] mask the password, so a config
/// printed for a person never reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as given, password included: for connecting only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with any password (user info or `password=` parameter) replaced by `***`.
    pub fn shown(&self) -> String {
        mask_password(&self.0)
    }

    /// `host:port` of the first server, for messages; `None` when the URL does not parse.
    pub fn endpoint(&self) -> Option<String> {
        let cfg = tokio_postgres::Config::from_str(&self.0).ok()?;
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        Some(format!("{host}:{port}"))
    }

    /// Why this URL cannot select the PostgreSQL store, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !PG_SCHEMES.iter().any(|s| self.0.starts_with(s)) {
            return Some(
                "expected a postgres:// or postgresql:// URL (leave database_url unset to use \
                 SQLite in data_dir)"
                    .into(),
            );
        }
        // tokio-postgres names what is wrong without repeating the URL.
        tokio_postgres::Config::from_str(&self.0)
            .err()
            .map(|e| format!("not a valid PostgreSQL URL: {e}"))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.trim().to_string()))
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(String::deserialize(d)?.trim().to_string()))
    }
}

/// `s`, or `None` when it is empty (an empty variable or flag means "not set").
pub fn non_empty(s: &str) -> Option<DatabaseUrl> {
    (!s.trim().is_empty()).then(|| DatabaseUrl(s.trim().to_string()))
}

/// Replaces the password of a `scheme://user:password@host` URL, and the value of any
/// `password=` query parameter, with `***`.
pub fn mask_password(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let authority_end = out[start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@').map(|i| start + i)
            && let Some(colon) = out[start..at].find(':').map(|i| start + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    out
}

/// `[postgres]`: settings of the PostgreSQL store (used only when `database_url` is set).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Schema holding weft's tables, created by the first migration. Default `public`.
    pub schema: String,
    /// Most connections open at once. Default [`DEFAULT_PG_POOL_SIZE`].
    pub pool_size: usize,
    /// How long start-up retries while the database cannot be reached, e.g. `30s`; `0s`
    /// tries once. Default [`DEFAULT_CONNECT_WAIT`].
    #[serde(deserialize_with = "super::de_duration")]
    pub connect_wait: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            schema: DEFAULT_PG_SCHEMA.to_string(),
            pool_size: DEFAULT_PG_POOL_SIZE,
            connect_wait: DEFAULT_CONNECT_WAIT,
        }
    }
}

impl PostgresConfig {
    /// Every problem with these settings, as `key = value: why` lines.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let s = &self.schema;
        let plain = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            problems.push(format!(
                "postgres.schema = {s:?}: use lowercase letters, digits and `_`, not starting \
                 with a digit, at most 63 characters"
            ));
        }
        if self.pool_size == 0 {
            problems.push("postgres.pool_size = 0: must be at least 1".to_string());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        let m = mask_password;
        assert_eq!(
            m("postgres://weft:s3cr%40t@db:5432/weft"),
            "postgres://weft:***@db:5432/weft"
        );
        assert_eq!(m("postgres://weft@db/weft"), "postgres://weft@db/weft");
        assert_eq!(
            m("postgresql://db/weft?user=u&password=hunter2&sslmode=disable"),
            "postgresql://db/weft?user=u&password=***&sslmode=disable"
        );
        let url: DatabaseUrl = "postgres://u:pw@h/d".parse().unwrap();
        assert!(!format!("{url:?}").contains("pw"));
        assert_eq!(url.endpoint().as_deref(), Some("h:5432"));
    }

    #[test]
    fn only_postgres_urls_select_postgres() {
        let p = |s: &str| s.parse::<DatabaseUrl>().unwrap().problem();
        assert_eq!(p("postgres://u@localhost:5432/db"), None);
        assert_eq!(p("postgresql://u@localhost/db"), None);
        assert!(p("sqlite:///tmp/x").unwrap().contains("postgres://"));
        assert!(
            p("postgres://u@h:notaport/db")
                .unwrap()
                .contains("not a valid")
        );
    }
}
