-- berth schema, version 14 (SQLite and PostgreSQL alike): whether the edges
-- record a shared port's requests for the request inspector (on unless the
-- owner turns it off; `inspector.enabled` turns it off for a deployment).

ALTER TABLE shares ADD COLUMN inspect INTEGER NOT NULL DEFAULT 1 CHECK (inspect IN (0, 1));
