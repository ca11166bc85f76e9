-- berth schema, version 2 (PostgreSQL): how ports are shared, and names given to ports.
-- A port without a row in shares is shared at level 'owner' over HTTP.
-- As migrations/sqlite/0002_shares.sql, with BIGINT integers (see 0001).

CREATE TABLE shares (
    agent_id   BIGINT  NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    port       BIGINT  NOT NULL CHECK (port BETWEEN 1 AND 65535),
    level      TEXT    NOT NULL CHECK (level IN ('owner', 'organization', 'authenticated', 'public')),
    protocol   TEXT    NOT NULL CHECK (protocol IN ('http', 'https')),
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (agent_id, port)
);

CREATE TABLE apps (
    agent_id   BIGINT  NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    name       TEXT    COLLATE "C" NOT NULL,
    port       BIGINT  NOT NULL CHECK (port BETWEEN 1 AND 65535),
    protocol   TEXT    NOT NULL CHECK (protocol IN ('http', 'https')),
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (agent_id, name)
);
