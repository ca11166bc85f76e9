-- berth schema, version 6 (SQLite and PostgreSQL alike): who answers CORS for a shared port.
-- 'berth': the edge answers preflights and allows the owner's other app
-- hosts; 'passthru': preflights go to the app, which answers CORS itself.

ALTER TABLE shares ADD COLUMN cors TEXT NOT NULL DEFAULT 'berth' CHECK (cors IN ('berth', 'passthru'));
