-- The data service's metadata. Every row carries a MAC under a key derived from the
-- master secret, over every column but the MAC (bodies are AEAD-sealed instead). Job rows
-- MAC what a job is (id, resource, kind, created), not its progress.
CREATE TABLE store_resources (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    identity_id     TEXT NOT NULL,
    state           TEXT NOT NULL,
    state_reason    TEXT NOT NULL,
    key_source      TEXT NOT NULL,
    key_uri         TEXT NOT NULL,
    kek_vault       TEXT NOT NULL,
    kek_name        TEXT NOT NULL,
    kek_version     TEXT NOT NULL,
    remote_cred     BYTEA NOT NULL,
    wrapped_version TEXT NOT NULL,
    wrapped_alg     TEXT NOT NULL,
    wrapped_key     BYTEA NOT NULL,
    rk_epoch        BIGINT NOT NULL,
    old_wrapped     BYTEA NOT NULL,
    enc_epoch       BIGINT NOT NULL,
    msg_version     TEXT NOT NULL,
    msg_alg         TEXT NOT NULL,
    msg_key         BYTEA NOT NULL,
    diagnostics     BIGINT NOT NULL,
    created         BIGINT NOT NULL,
    updated         BIGINT NOT NULL,
    mac             BYTEA NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE store_roles (
    resource_id  TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    role         TEXT NOT NULL,
    mac          BYTEA NOT NULL,
    PRIMARY KEY (resource_id, principal_id)
);

CREATE TABLE store_objects (
    resource_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name_hash   BYTEA NOT NULL,
    id          TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    rk_epoch    BIGINT NOT NULL,
    enc_epoch   BIGINT NOT NULL,
    name_sealed BYTEA NOT NULL,
    wrapped_dek BYTEA NOT NULL,
    body        BYTEA,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    mac         BYTEA NOT NULL,
    PRIMARY KEY (resource_id, kind, name_hash)
);

CREATE TABLE store_messages (
    id          TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    body        BYTEA NOT NULL,
    wrapped_dek BYTEA NOT NULL,
    created     BIGINT NOT NULL,
    expires     BIGINT NOT NULL,
    visible_at  BIGINT NOT NULL,
    receipt     TEXT NOT NULL,
    deliveries  BIGINT NOT NULL,
    mac         BYTEA NOT NULL
);

CREATE INDEX store_messages_next ON store_messages (resource_id, visible_at);
CREATE INDEX store_messages_expiry ON store_messages (expires);

CREATE TABLE store_jobs (
    id          TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    done        BIGINT NOT NULL,
    total       BIGINT NOT NULL,
    error       TEXT NOT NULL,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    mac         BYTEA NOT NULL
);

CREATE UNIQUE INDEX store_jobs_one_running ON store_jobs (resource_id) WHERE state = 'running'
