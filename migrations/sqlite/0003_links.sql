-- berth schema, version 3: share links and server secrets.

CREATE TABLE share_links (
    id         TEXT    PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    agent_id   INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    port       INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    created_by INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,          -- unix seconds
    max_uses   BIGINT,                    -- NULL: unlimited
    uses       BIGINT  NOT NULL DEFAULT 0,
    revoked_at TEXT
);
CREATE INDEX share_links_agent_id ON share_links (agent_id);

-- Keys the servers share (e.g. the cookie-signing key), made on first use.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
