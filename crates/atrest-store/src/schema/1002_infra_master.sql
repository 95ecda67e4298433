-- The data service's master secret, sealed under the infrastructure root. The layer key,
-- row-MAC key, name-hash key and credential key derive from it, so rotating the
-- infrastructure root re-seals this one row and touches no data.
CREATE TABLE store_infra (
    id      BIGINT PRIMARY KEY,
    sealed  BYTEA NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
)
