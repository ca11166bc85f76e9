-- berth schema, version 9: regions, each served by one or more `berth edge`
-- processes that present the region's token (only its hash is stored) and
-- report a heartbeat.

CREATE TABLE regions (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    url            TEXT    NOT NULL,
    wildcard       TEXT    NOT NULL,
    token_hash     TEXT    NOT NULL UNIQUE,
    created_at     TEXT    NOT NULL,
    last_heartbeat INTEGER,
    version        TEXT,
    agents         INTEGER NOT NULL DEFAULT 0
);
