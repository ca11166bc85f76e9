-- berth schema, version 8: ACME accounts, certificates and the ordering lease.
-- Plain SQL that SQLite and PostgreSQL both accept.

-- One account per ACME directory; credentials are instant-acme's JSON
-- (account URL and private key).
CREATE TABLE acme_accounts (
    directory   TEXT PRIMARY KEY,
    credentials TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- The certificate for one set of names from one directory (id = directory
-- and names), with its key, so every replica serves the same one.
CREATE TABLE acme_certs (
    id         TEXT   PRIMARY KEY,
    names      TEXT   NOT NULL,          -- comma-separated, as ordered
    chain_pem  TEXT   NOT NULL,          -- leaf first, then intermediates
    key_pem    TEXT   NOT NULL,          -- PKCS#8
    issuer     TEXT   NOT NULL,
    not_after  BIGINT NOT NULL,          -- unix seconds
    renew_at   BIGINT NOT NULL,          -- unix seconds: next renewal attempt
    last_error TEXT,                     -- the last failed renewal, if any
    updated_at TEXT   NOT NULL
);

-- Who may order a certificate right now; a lease ends at expires_at even if
-- its holder died.
CREATE TABLE acme_leases (
    id         TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL           -- unix seconds
);
