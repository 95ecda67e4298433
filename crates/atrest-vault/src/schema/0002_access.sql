-- Tenants, principals (users and service identities), their tokens (hashes only) and
-- per-vault access policies. Every row carries a MAC like the key rows.
CREATE TABLE tenants (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    created   BIGINT NOT NULL,
    mac       BYTEA NOT NULL
);

CREATE TABLE principals (
    id        TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    role      TEXT NOT NULL,
    disabled  BIGINT NOT NULL,
    created   BIGINT NOT NULL,
    mac       BYTEA NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL,
    hash         BYTEA NOT NULL,
    created      BIGINT NOT NULL,
    expires      BIGINT,
    revoked      BIGINT NOT NULL,
    mac          BYTEA NOT NULL
);

CREATE TABLE access_policies (
    vault_id     TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    permissions  TEXT NOT NULL,
    updated      BIGINT NOT NULL,
    mac          BYTEA NOT NULL,
    PRIMARY KEY (vault_id, principal_id)
)
