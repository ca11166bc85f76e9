-- berth schema, version 16: group memberships may come from GitHub teams
-- (`github.teams_as_groups`): group_members.source 'github', next to an
-- admin's ('berth') and the OpenID Connect groups claim's ('oidc'). Each
-- sign-in replaces only the memberships of its own source, so hand-made
-- ones stay. SQLite cannot change a CHECK in place: the table is rebuilt.

CREATE TABLE group_members_v16 (
    group_id INTEGER NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source   TEXT    NOT NULL CHECK (source IN ('berth', 'oidc', 'github')),
    PRIMARY KEY (group_id, user_id)
);
INSERT INTO group_members_v16 (group_id, user_id, source)
    SELECT group_id, user_id, source FROM group_members;
DROP TABLE group_members;
ALTER TABLE group_members_v16 RENAME TO group_members;
CREATE INDEX group_members_user_id ON group_members (user_id);
