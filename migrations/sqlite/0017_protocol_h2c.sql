-- berth schema, version 17: a port's protocol may be 'h2c' (HTTP/2 without
-- TLS, what gRPC servers speak) besides 'http' and 'https'.
--
-- SQLite cannot change a CHECK, so shares and apps are rebuilt. Migrations
-- run in a transaction with foreign keys on, where dropping shares would
-- cascade to share_users and share_groups: their rows are kept aside and put
-- back once the new shares table has the old one's name.

CREATE TEMP TABLE keep_share_users AS SELECT agent_id, port, user_id FROM share_users;
CREATE TEMP TABLE keep_share_groups AS SELECT agent_id, port, group_id FROM share_groups;

CREATE TABLE shares_h2c (
    agent_id   INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    port       INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    level      TEXT    NOT NULL CHECK (level IN ('owner', 'organization', 'authenticated', 'public')),
    protocol   TEXT    NOT NULL CHECK (protocol IN ('http', 'https', 'h2c')),
    updated_at TEXT    NOT NULL,
    cors       TEXT    NOT NULL DEFAULT 'berth' CHECK (cors IN ('berth', 'passthru')),
    expires_at INTEGER,
    inspect    INTEGER NOT NULL DEFAULT 1 CHECK (inspect IN (0, 1)),
    PRIMARY KEY (agent_id, port)
);
INSERT INTO shares_h2c (agent_id, port, level, protocol, updated_at, cors, expires_at, inspect)
    SELECT agent_id, port, level, protocol, updated_at, cors, expires_at, inspect FROM shares;
DROP TABLE shares;
ALTER TABLE shares_h2c RENAME TO shares;

INSERT INTO share_users (agent_id, port, user_id) SELECT agent_id, port, user_id FROM keep_share_users;
INSERT INTO share_groups (agent_id, port, group_id) SELECT agent_id, port, group_id FROM keep_share_groups;
DROP TABLE keep_share_users;
DROP TABLE keep_share_groups;

CREATE TABLE apps_h2c (
    agent_id   INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    port       INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    protocol   TEXT    NOT NULL CHECK (protocol IN ('http', 'https', 'h2c')),
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (agent_id, name)
);
INSERT INTO apps_h2c (agent_id, name, port, protocol, updated_at)
    SELECT agent_id, name, port, protocol, updated_at FROM apps;
DROP TABLE apps;
ALTER TABLE apps_h2c RENAME TO apps;
