-- Address pools (each row a libgo_core::AddressPoolSpec as JSON) and the addresses handed
-- out from them. The primary key is what makes an address go to one instance only, also
-- with several replicas.
CREATE TABLE address_pools (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE address_allocations (
    pool TEXT NOT NULL REFERENCES address_pools(name),
    address TEXT NOT NULL,
    -- The address as a number, for range checks in SQL.
    address_num BIGINT NOT NULL,
    -- The instance's id; while it is being created, its name and a claim suffix.
    instance TEXT NOT NULL,
    -- Its name: an engine that replaces an instance (a Docker revert) gives it a new id,
    -- and the reclaim rounds must not free its address in between.
    instance_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (pool, address)
);

CREATE INDEX address_allocations_instance ON address_allocations (instance);
