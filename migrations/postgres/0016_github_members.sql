-- berth schema, version 16 (PostgreSQL): group memberships may come from
-- GitHub teams (group_members.source 'github'); see
-- migrations/sqlite/0016_github_members.sql.

ALTER TABLE group_members DROP CONSTRAINT group_members_source_check;
ALTER TABLE group_members ADD CONSTRAINT group_members_source_check
    CHECK (source IN ('berth', 'oidc', 'github'));
