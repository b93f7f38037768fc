//! API keys: who may call the HTTP API, and with which role. Only a hash of each key's
//! secret is stored; the secret itself is shown once, when the key is created.

use serde::{Deserialize, Serialize};
use weft_core::time::Millis;

/// What an API key may do. Each role includes everything the roles before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    /// Read only.
    Viewer,
    /// Reads, and starts, cancels, retries and replays runs.
    Operator,
    /// Everything: flows, queues, keys.
    Admin,
}

impl ApiRole {
    /// Every role, lowest first.
    pub const ALL: [ApiRole; 3] = [ApiRole::Viewer, ApiRole::Operator, ApiRole::Admin];

    /// The role's name (`viewer`, `operator`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Viewer => "viewer",
            ApiRole::Operator => "operator",
            ApiRole::Admin => "admin",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<ApiRole> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for ApiRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key to store. The caller generates the id and hashes the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// Public id, unique; part of the key the client sends.
    pub id: String,
    /// A label for people; optional.
    pub name: Option<String>,
    /// What the key may do.
    pub role: ApiRole,
    /// Hash of the secret part of the key (hex).
    pub hash: String,
    /// Creation time.
    pub created_at: Millis,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// Public id.
    pub id: String,
    /// A label for people.
    pub name: Option<String>,
    /// What the key may do.
    pub role: ApiRole,
    /// Hash of the secret (hex); never shown to clients.
    #[serde(skip)]
    pub hash: String,
    /// Creation time.
    pub created_at: Millis,
    /// When the key was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<Millis>,
}
