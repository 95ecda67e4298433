-- Secrets (the AKV secrets API). Names, tags, content type and dates are stored readable,
-- as Azure Key Vault treats them. A value is stored only sealed (record format) under a
-- per-version data key, which is stored only wrapped by the vault's secrets key.

-- One secrets key per vault, held by the key backend (its handle, as key material is).
CREATE TABLE secret_keks (
    vault_id         TEXT PRIMARY KEY,
    material         BYTEA NOT NULL,
    created          BIGINT NOT NULL,
    mac              BYTEA NOT NULL
);

-- One row per secret name. `deleted_at` set = soft-deleted (all versions with it).
CREATE TABLE secrets (
    vault_id         TEXT NOT NULL,
    name_lc          TEXT NOT NULL,
    name             TEXT NOT NULL,
    latest_version   TEXT NOT NULL,
    deleted_at       BIGINT,
    scheduled_purge  BIGINT,
    mac              BYTEA NOT NULL,
    PRIMARY KEY (vault_id, name_lc)
);

-- One row per secret version: `wrapped_key` is the version's data key wrapped (A256KW)
-- by the vault's secrets key, `sealed` the value sealed under it.
CREATE TABLE secret_versions (
    vault_id         TEXT NOT NULL,
    name_lc          TEXT NOT NULL,
    version          TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    enabled          BIGINT NOT NULL,
    nbf              BIGINT,
    exp              BIGINT,
    created          BIGINT NOT NULL,
    updated          BIGINT NOT NULL,
    content_type     TEXT NOT NULL,
    tags             TEXT NOT NULL,
    wrapped_key      BYTEA NOT NULL,
    sealed           BYTEA NOT NULL,
    mac              BYTEA NOT NULL,
    PRIMARY KEY (vault_id, name_lc, version)
);

-- Unique: two writers that picked the same version number cannot both commit.
CREATE UNIQUE INDEX secret_versions_by_seq ON secret_versions (vault_id, name_lc, seq);

CREATE INDEX secrets_by_purge ON secrets (scheduled_purge)
