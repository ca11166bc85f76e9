-- berth schema, version 15 (PostgreSQL): port activity and webhook calls.
-- As migrations/sqlite/0015_activity.sql, with BIGINT integers.

CREATE TABLE port_activity (
    agent_id BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    port     BIGINT NOT NULL,
    last_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, port)
);

CREATE TABLE workspace_hooks (
    workspace_id      BIGINT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    idle_notified_for BIGINT NOT NULL DEFAULT 0,
    wake_called_at    BIGINT NOT NULL DEFAULT 0
);
