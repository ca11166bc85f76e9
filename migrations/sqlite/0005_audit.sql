-- berth schema, version 5: the audit log (who shared, revoked, signed in, created).

CREATE TABLE audit_events (
    id     INTEGER PRIMARY KEY,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL
);
