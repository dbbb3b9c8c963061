-- Compute pools besides `default`: each row is a libgo_core::ComputePoolSpec as JSON.
CREATE TABLE compute_pools (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
