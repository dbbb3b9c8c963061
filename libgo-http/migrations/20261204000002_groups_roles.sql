-- Custom roles (sets of the permissions the routes declare), groups of users, and the
-- scope a user's role applies in: 'all', or 'groups' (the instances of the groups the
-- user is a member of).
CREATE TABLE roles (
    name TEXT PRIMARY KEY,
    permissions TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE user_groups (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE user_group_members (
    group_name TEXT NOT NULL REFERENCES user_groups(name) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_id)
);

ALTER TABLE users ADD COLUMN scope TEXT NOT NULL DEFAULT 'all';
