-- berth schema, version 15: when each port of an agent last served a request
-- or held an open WebSocket (as edges report it, unix seconds), and per
-- workspace which idle webhook call was made (for the activity it followed)
-- and when the wake webhook was last called, so that several control
-- replicas call each webhook once.

CREATE TABLE port_activity (
    agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    port     INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, port)
);

CREATE TABLE workspace_hooks (
    workspace_id      INTEGER PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    idle_notified_for INTEGER NOT NULL DEFAULT 0,
    wake_called_at    INTEGER NOT NULL DEFAULT 0
);
