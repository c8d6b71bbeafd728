-- OAuth 2 / OpenID Connect: clients, local users, browser sessions, pending authorization
-- requests, authorization codes, refresh-token families, revocations and client-assertion replay.
CREATE TABLE clients (
    id                          TEXT PRIMARY KEY,
    env_id                      TEXT NOT NULL REFERENCES environments(id),
    name                        TEXT NOT NULL,
    kind                        TEXT NOT NULL CHECK (kind IN ('confidential', 'public')),
    auth_method                 TEXT NOT NULL,
    redirect_uris               TEXT NOT NULL,
    post_logout_redirect_uris   TEXT NOT NULL,
    grant_types                 TEXT NOT NULL,
    scopes                      TEXT NOT NULL,
    jwks                        TEXT,
    exchange_audiences          TEXT NOT NULL,
    exchange_scopes             TEXT NOT NULL,
    access_token_ttl_seconds    BIGINT NOT NULL,
    id_token_ttl_seconds        BIGINT NOT NULL,
    refresh_idle_ttl_seconds    BIGINT NOT NULL,
    refresh_absolute_ttl_seconds BIGINT NOT NULL,
    secret_digest               TEXT,
    secret_created_at           BIGINT,
    previous_secret_digest      TEXT,
    previous_secret_expires_at  BIGINT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX clients_env ON clients(env_id, id);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    env_id        TEXT NOT NULL REFERENCES environments(id),
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    email         TEXT NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    password_hash TEXT NOT NULL,
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (env_id, email)
);
CREATE INDEX users_org ON users(org_id, id);

CREATE TABLE sessions (
    digest     TEXT PRIMARY KEY,
    env_id     TEXT NOT NULL REFERENCES environments(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    auth_time  BIGINT NOT NULL,
    amr        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE auth_requests (
    id            TEXT PRIMARY KEY,
    env_id        TEXT NOT NULL REFERENCES environments(id),
    browser       TEXT NOT NULL,
    params        TEXT NOT NULL,
    expires_at    BIGINT NOT NULL,
    completed_at  BIGINT
);

CREATE TABLE token_families (
    id                  TEXT PRIMARY KEY,
    env_id              TEXT NOT NULL REFERENCES environments(id),
    client_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT,
    created_at          BIGINT NOT NULL
);

CREATE TABLE auth_codes (
    digest      TEXT PRIMARY KEY,
    env_id      TEXT NOT NULL REFERENCES environments(id),
    family_id   TEXT NOT NULL REFERENCES token_families(id),
    grant_data  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    redeemed_at BIGINT
);

CREATE TABLE refresh_tokens (
    digest      TEXT PRIMARY KEY,
    env_id      TEXT NOT NULL REFERENCES environments(id),
    family_id   TEXT NOT NULL REFERENCES token_families(id),
    grant_data  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    rotated_at  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);

CREATE TABLE revoked_jtis (
    env_id     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (env_id, jti)
);

CREATE TABLE client_assertion_jtis (
    env_id     TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (env_id, client_id, jti)
);
