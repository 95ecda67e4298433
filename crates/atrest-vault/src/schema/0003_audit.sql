-- The audit trail: one hash chain per vault (and one, chain "deployment", for changes to
-- tenants and principals). Each entry's hash covers the previous hash and all its fields;
-- each hash is MACed under a root-derived key. Signed checkpoints pin the head.
CREATE TABLE audit_log (
    chain        TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    time         BIGINT NOT NULL,
    principal    TEXT NOT NULL,
    operation    TEXT NOT NULL,
    target       TEXT NOT NULL,
    result       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    prev_hash    BYTEA NOT NULL,
    hash         BYTEA NOT NULL,
    mac          BYTEA NOT NULL,
    PRIMARY KEY (chain, seq)
);

-- The deployment's checkpoint-signing key (EC P-256), sealed by the key backend.
CREATE TABLE audit_signing_key (
    id           TEXT PRIMARY KEY,
    material     BYTEA NOT NULL,
    public_jwk   TEXT NOT NULL,
    created      BIGINT NOT NULL,
    mac          BYTEA NOT NULL
)
