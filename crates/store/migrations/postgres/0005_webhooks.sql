-- Webhooks: endpoints, the transactional outbox (one delivery per event and matching endpoint,
-- written in the event's transaction), the attempt log, and the leases that let several nodes
-- share the deliveries (a lease that expires is taken again: a node that dies loses nothing).
CREATE TABLE webhook_endpoints (
    id                         TEXT PRIMARY KEY,
    env_id                     TEXT NOT NULL REFERENCES environments(id),
    url                        TEXT NOT NULL,
    description                TEXT NOT NULL,
    -- JSON array of event types; [] takes every type.
    event_types                TEXT NOT NULL,
    -- JSON array of [name, value] pairs.
    headers                    TEXT NOT NULL,
    disabled_at                BIGINT,
    state                      TEXT NOT NULL CHECK (state IN ('active', 'failing')),
    secret                     BYTEA NOT NULL,
    previous_secret            BYTEA,
    previous_secret_expires_at BIGINT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_env ON webhook_endpoints(env_id, id);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    env_id           TEXT NOT NULL REFERENCES environments(id),
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL,
    event_seq        BIGINT NOT NULL,
    event_type       TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    completed_at     BIGINT,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, event_seq);
CREATE INDEX webhook_deliveries_lease ON webhook_deliveries(endpoint_id, state, next_attempt_at);

CREATE TABLE webhook_attempts (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempted_at BIGINT NOT NULL,
    node         TEXT NOT NULL,
    status       BIGINT,
    latency_ms   BIGINT NOT NULL,
    response     TEXT,
    error        TEXT,
    succeeded    BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);
