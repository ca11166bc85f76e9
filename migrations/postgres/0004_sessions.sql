-- berth schema, version 4 (PostgreSQL): browser sessions (signed cookies carry the id).
-- As migrations/sqlite/0004_sessions.sql, with BIGINT integers (see 0001).

CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL          -- unix seconds
);
CREATE INDEX sessions_user_id ON sessions (user_id);
