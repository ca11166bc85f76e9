-- berth schema, version 10: where each agent's tunnels are. A holder is the
-- URL of the server (a regional edge, or a control replica) that holds a
-- tunnel; other servers relay to it. `seen_at` is refreshed by the holder's
-- heartbeat, so rows of a holder that died expire.

CREATE TABLE agent_tunnels (
    agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    holder   TEXT    NOT NULL,
    seen_at  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, holder)
);
CREATE INDEX agent_tunnels_holder ON agent_tunnels(holder);
