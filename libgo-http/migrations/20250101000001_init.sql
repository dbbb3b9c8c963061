-- LibGo server state. Portable SQL: runs unchanged on SQLite and PostgreSQL.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at BIGINT
);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT,
    status TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL,
    message TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX tasks_created ON tasks (created_at);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    username TEXT,
    role TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    route TEXT,
    target TEXT,
    status BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT,
    client TEXT
);
CREATE INDEX audit_log_time ON audit_log (time);

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
