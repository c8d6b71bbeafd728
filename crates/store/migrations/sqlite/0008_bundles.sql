-- Signed configuration bundles (issue 7): the publisher keys an environment trusts, and every
-- bundle applied to it (the highest sequence is the rollback floor).
CREATE TABLE bundle_publishers (
    env_id   TEXT NOT NULL REFERENCES environments(id),
    key_id   TEXT NOT NULL,
    jwk      TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (env_id, key_id)
);

CREATE TABLE bundle_imports (
    env_id     TEXT NOT NULL REFERENCES environments(id),
    sequence   BIGINT NOT NULL,
    digest     TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (env_id, sequence)
);
