-- berth schema, version 11: shares that name users and groups, and shares
-- that end.
--
-- user_groups: berth groups, managed by admins or filled from the sign-in
-- provider's groups claim (group_members.source 'oidc'). Shares name users
-- and groups by id, so a renamed group keeps its shares and a deleted user
-- or group drops out of every share (ON DELETE CASCADE).
-- shares.expires_at: unix seconds when the share's audience (level and
-- names) ends; NULL for a share that does not end.

CREATE TABLE user_groups (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at TEXT    NOT NULL
);

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source   TEXT    NOT NULL CHECK (source IN ('berth', 'oidc')),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_id ON group_members (user_id);

CREATE TABLE share_users (
    agent_id INTEGER NOT NULL,
    port     INTEGER NOT NULL,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, port, user_id),
    FOREIGN KEY (agent_id, port) REFERENCES shares (agent_id, port) ON DELETE CASCADE
);
CREATE INDEX share_users_user_id ON share_users (user_id);

CREATE TABLE share_groups (
    agent_id INTEGER NOT NULL,
    port     INTEGER NOT NULL,
    group_id INTEGER NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, port, group_id),
    FOREIGN KEY (agent_id, port) REFERENCES shares (agent_id, port) ON DELETE CASCADE
);
CREATE INDEX share_groups_group_id ON share_groups (group_id);

ALTER TABLE shares ADD COLUMN expires_at INTEGER;
