-- berth schema, version 12: the keys that sign the identity assertions
-- (`Berth-Jwt-Assertion`) apps receive. One row a key: its id (the JWT
-- `kid`), the private key (PKCS#8 DER, standard base64; as secret as the
-- cookie key in `secrets`, so the database file stays 0600) and when it was
-- made. The newest signs; older ones stay published for a grace period,
-- then control deletes them.

CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    private_key TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
