-- berth schema, version 17 (PostgreSQL): a port's protocol may be 'h2c'
-- (HTTP/2 without TLS, what gRPC servers speak) besides 'http' and 'https'.
-- As migrations/sqlite/0017_protocol_h2c.sql, which has to rebuild the tables.

ALTER TABLE shares DROP CONSTRAINT shares_protocol_check;
ALTER TABLE shares ADD CONSTRAINT shares_protocol_check CHECK (protocol IN ('http', 'https', 'h2c'));
ALTER TABLE apps DROP CONSTRAINT apps_protocol_check;
ALTER TABLE apps ADD CONSTRAINT apps_protocol_check CHECK (protocol IN ('http', 'https', 'h2c'));
