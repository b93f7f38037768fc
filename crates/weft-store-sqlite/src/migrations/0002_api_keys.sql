-- API keys. Only a SHA-256 of each key's secret is kept (see docs/decisions/0004).
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    hash        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
