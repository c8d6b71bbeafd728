-- Egress policy per environment: one JSON document with a version number. No row: no rules.
CREATE TABLE egress_policies (
    env_id     TEXT PRIMARY KEY REFERENCES environments(id),
    version    BIGINT NOT NULL,
    document   TEXT NOT NULL,
    ca_bundle  TEXT,
    updated_at BIGINT NOT NULL
);
