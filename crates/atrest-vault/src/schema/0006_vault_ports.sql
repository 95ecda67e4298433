-- Vault origins without DNS: a vault may answer on a port of its own (every node serves
-- every port in this table). One port per vault and one vault per port. The row is
-- MACed, so a port cannot be moved to another vault outside atrest.
CREATE TABLE vault_ports (
    port     BIGINT PRIMARY KEY,
    vault_id TEXT NOT NULL UNIQUE REFERENCES vaults(id),
    mac      BYTEA NOT NULL
)
