-- Audit checkpoints: the head of an environment's audit chain (sequence number and hash), signed
-- by the environment's active signing key as a compact JWS. A checkpoint is not an audit record
-- (writing one would move the head it attests); the verifier trusts the JWS, and the other
-- columns are a copy of its payload for lookups. A chain whose records end below a checkpoint
-- lost its tail (docs/decisions/0009-audit-checkpoints.md).
CREATE TABLE audit_checkpoints (
    chain TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL,
    at    BIGINT NOT NULL,
    kid   TEXT NOT NULL,
    jws   TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
