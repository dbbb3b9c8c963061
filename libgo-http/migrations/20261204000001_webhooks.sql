-- Webhooks: where events are POSTed, and each delivery queued here so that it survives a
-- restart and is claimed by one replica at a time. The secret is kept as given: the
-- server needs it to sign every delivery.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The id is derived from the webhook and the event, so that replicas that saw the same
-- engine event insert one row.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    last_status BIGINT,
    last_error TEXT,
    duration_ms BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at);

-- Work one replica does for all (queuing engine events for webhooks, evaluating alerts):
-- the holder renews its lease; another takes it once it has expired.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Alert rules (the spec as JSON), which instances each fires for, and the transitions.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE alert_states (
    rule_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    firing BIGINT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (rule_id, instance_id)
);
CREATE TABLE alert_history (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    state TEXT NOT NULL,
    value DOUBLE PRECISION,
    time BIGINT NOT NULL
);
CREATE INDEX alert_history_rule ON alert_history (rule_id, time);
