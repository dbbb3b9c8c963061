-- Tasks shared by several server replicas: the replica that runs a task owns it and renews
-- its lease (heartbeat); another replica asks it to cancel through the row; a task whose
-- owner stopped renewing is failed INTERRUPTED by a live replica.
ALTER TABLE tasks ADD COLUMN owner TEXT;
ALTER TABLE tasks ADD COLUMN heartbeat_at BIGINT;
ALTER TABLE tasks ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
