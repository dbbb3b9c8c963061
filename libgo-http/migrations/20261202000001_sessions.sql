-- Sessions: every token names one; ending a session ends its token.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    client TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX tasks_created_by ON tasks (created_by);
