-- Vaults and keys. Every security-relevant row carries `mac`: a version byte and an
-- HMAC-SHA256 (root-derived key) over its other columns, verified on every read.
CREATE TABLE vaults (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    name             TEXT NOT NULL UNIQUE,
    retention_days   BIGINT NOT NULL,
    purge_protection BIGINT NOT NULL,
    allow_rsa1_5     BIGINT NOT NULL,
    created          BIGINT NOT NULL,
    updated          BIGINT NOT NULL,
    mac              BYTEA NOT NULL
);

-- One row per key name. `deleted_at` set = soft-deleted (all versions with it).
CREATE TABLE keys (
    vault_id         TEXT NOT NULL,
    name_lc          TEXT NOT NULL,
    name             TEXT NOT NULL,
    latest_version   TEXT NOT NULL,
    deleted_at       BIGINT,
    scheduled_purge  BIGINT,
    mac              BYTEA NOT NULL,
    PRIMARY KEY (vault_id, name_lc)
);

-- One row per key version. `material` is the key backend's handle (for the software
-- backend: the key sealed under a root-derived key, context = vault, name, version).
CREATE TABLE key_versions (
    vault_id         TEXT NOT NULL,
    name_lc          TEXT NOT NULL,
    version          TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    kty              TEXT NOT NULL,
    key_ops          TEXT NOT NULL,
    enabled          BIGINT NOT NULL,
    nbf              BIGINT,
    exp              BIGINT,
    created          BIGINT NOT NULL,
    updated          BIGINT NOT NULL,
    tags             TEXT NOT NULL,
    public_jwk       TEXT NOT NULL,
    material         BYTEA NOT NULL,
    gcm_count        BIGINT NOT NULL,
    mac              BYTEA NOT NULL,
    PRIMARY KEY (vault_id, name_lc, version)
);

CREATE INDEX key_versions_by_seq ON key_versions (vault_id, name_lc, seq)
