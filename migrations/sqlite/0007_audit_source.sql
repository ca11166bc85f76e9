-- berth schema, version 7 (SQLite and PostgreSQL alike): where each audited action came from (the
-- client's IP address as the server saw it; '' for events from before).

ALTER TABLE audit_events ADD COLUMN source TEXT NOT NULL DEFAULT '';
