-- Hosts besides the local one: each row is a libgo::HostConfig as JSON (engines, TLS file
-- paths, pool, labels, enabled), so that every replica connects the same engines.
CREATE TABLE hosts (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
