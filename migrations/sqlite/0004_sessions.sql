-- berth schema, version 4: browser sessions (signed cookies carry the id).

CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL          -- unix seconds
);
CREATE INDEX sessions_user_id ON sessions (user_id);
