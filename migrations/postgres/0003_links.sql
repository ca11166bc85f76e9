-- berth schema, version 3 (PostgreSQL): share links and server secrets.
-- As migrations/sqlite/0003_links.sql, with BIGINT integers (see 0001).

CREATE TABLE share_links (
    id         TEXT    COLLATE "C" PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    agent_id   BIGINT  NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    port       BIGINT  NOT NULL CHECK (port BETWEEN 1 AND 65535),
    created_by BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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
