-- Enterprise SSO: connections of organizations, pending upstream requests, the SAML replay cache,
-- and the profiles connections yield.
CREATE TABLE connections (
    id         TEXT PRIMARY KEY,
    env_id     TEXT NOT NULL REFERENCES environments(id),
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    type       TEXT NOT NULL CHECK (type IN ('saml', 'oidc')),
    name       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('draft', 'active', 'inactive')),
    config     TEXT NOT NULL,
    secrets    BYTEA,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX connections_org ON connections(org_id, id);

CREATE TABLE sso_requests (
    id              TEXT PRIMARY KEY,
    env_id          TEXT NOT NULL REFERENCES environments(id),
    connection_id   TEXT NOT NULL REFERENCES connections(id),
    auth_request_id TEXT NOT NULL,
    data            TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    consumed_at     BIGINT
);

CREATE TABLE saml_replay (
    env_id       TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    assertion_id TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (env_id, connection_id, assertion_id)
);

CREATE TABLE profiles (
    id            TEXT PRIMARY KEY,
    env_id        TEXT NOT NULL REFERENCES environments(id),
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    connection_id TEXT NOT NULL REFERENCES connections(id),
    idp_id        TEXT NOT NULL,
    email         TEXT,
    first_name    TEXT,
    last_name     TEXT,
    groups        TEXT NOT NULL,
    raw           TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (connection_id, idp_id)
);
