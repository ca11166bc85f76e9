-- berth schema, version 10 (PostgreSQL): where each agent's tunnels are. As
-- migrations/sqlite/0010_agent_tunnels.sql, with BIGINT integers.

CREATE TABLE agent_tunnels (
    agent_id BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    holder   TEXT   NOT NULL,
    seen_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, holder)
);
CREATE INDEX agent_tunnels_holder ON agent_tunnels(holder);
