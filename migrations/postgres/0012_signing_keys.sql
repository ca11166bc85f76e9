-- berth schema, version 12 (PostgreSQL): the keys that sign the identity
-- assertions. As migrations/sqlite/0012_signing_keys.sql, with BIGINT.

CREATE TABLE signing_keys (
    kid         TEXT   PRIMARY KEY,
    private_key TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
