-- Foundation: environments, organizations, API keys, signing keys, event log, audit chain.
-- Timestamps are milliseconds since the Unix epoch (BIGINT on PostgreSQL), so both backends
-- share one SQL text for every query.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE environments (
    id                   TEXT PRIMARY KEY,
    slug                 TEXT NOT NULL UNIQUE,
    name                 TEXT NOT NULL,
    mode                 TEXT NOT NULL CHECK (mode IN ('connected', 'isolated')),
    issuer               TEXT NOT NULL UNIQUE,
    signing_alg          TEXT NOT NULL CHECK (signing_alg IN ('ES256', 'EdDSA', 'RS256')),
    key_lifetime_seconds BIGINT NOT NULL,
    key_grace_seconds    BIGINT NOT NULL,
    event_seq            BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY,
    env_id     TEXT NOT NULL REFERENCES environments(id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX organizations_env ON organizations(env_id, id);

-- A domain belongs to at most one organization per environment: the primary key says so.
CREATE TABLE organization_domains (
    env_id TEXT NOT NULL REFERENCES environments(id),
    domain TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    PRIMARY KEY (env_id, domain)
);
CREATE INDEX organization_domains_org ON organization_domains(org_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('admin', 'environment')),
    env_id       TEXT REFERENCES environments(id),
    name         TEXT NOT NULL,
    digest       TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    CHECK (kind = 'admin' OR env_id IS NOT NULL)
);

CREATE TABLE signing_keys (
    id             TEXT PRIMARY KEY,
    env_id         TEXT NOT NULL REFERENCES environments(id),
    alg            TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    public_jwk     TEXT NOT NULL,
    sealed_private BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    activated_at   BIGINT,
    retired_at     BIGINT
);
CREATE INDEX signing_keys_env ON signing_keys(env_id, state);

CREATE TABLE events (
    env_id     TEXT NOT NULL REFERENCES environments(id),
    seq        BIGINT NOT NULL,
    id         TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    org_id     TEXT,
    data       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (env_id, seq)
);

CREATE TABLE audit_records (
    chain     TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
