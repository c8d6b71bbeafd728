-- Machine-credential lifecycle (docs/decisions/0010-credential-lifecycle.md): expiry of client
-- secrets and API keys, the link from a rotated API key to its successor, when each webhook
-- secret was made, per-credential first-seen and last-use times, and the record that
-- `credential.expired` was emitted, so that it is emitted once per credential and expiry.
ALTER TABLE clients ADD COLUMN secret_expires_at BIGINT;
ALTER TABLE clients ADD COLUMN previous_secret_created_at BIGINT;

ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;

-- NULL: the secret is the endpoint's first (created with it).
ALTER TABLE webhook_endpoints ADD COLUMN secret_created_at BIGINT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_created_at BIGINT;

-- One row per credential reference (`client_…/secret/<8 hex>`, `client_…/jwk/<kid>`): when a
-- private_key_jwt key was first seen, and the last successful use (written at most once a minute
-- per credential by each node, so the token endpoint stays a read).
CREATE TABLE credential_usage (
    reference    TEXT PRIMARY KEY,
    env_id       TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    created_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX credential_usage_owner ON credential_usage(owner_id);

-- `credential.expired` was emitted for this credential and this expiry. The primary key makes a
-- second node's sweep a no-op.
CREATE TABLE credential_expiry_notices (
    reference  TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    env_id     TEXT,
    noticed_at BIGINT NOT NULL,
    PRIMARY KEY (reference, expires_at)
);

-- Overlaps that ended before this migration were never announced and never will be: the
-- upgrade must not emit a burst of credential.expired for rotations long past.
INSERT INTO credential_expiry_notices (reference, expires_at, env_id, noticed_at)
SELECT id || '/secret/' || substr(previous_secret_digest, 1, 8), previous_secret_expires_at, env_id,
       previous_secret_expires_at
FROM clients
WHERE previous_secret_digest IS NOT NULL AND previous_secret_expires_at <= CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT);
INSERT INTO credential_expiry_notices (reference, expires_at, env_id, noticed_at)
SELECT id || '/secret/previous', previous_secret_expires_at, env_id, previous_secret_expires_at
FROM webhook_endpoints
WHERE previous_secret IS NOT NULL AND previous_secret_expires_at <= CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT);
