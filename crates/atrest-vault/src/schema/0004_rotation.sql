-- Rotation policies, one per key. `notified_version` remembers the last version a
-- Notify action fired for, so each version is announced once.
CREATE TABLE rotation_policies (
    vault_id         TEXT NOT NULL,
    name_lc          TEXT NOT NULL,
    policy           TEXT NOT NULL,
    created          BIGINT NOT NULL,
    updated          BIGINT NOT NULL,
    notified_version TEXT NOT NULL,
    mac              BYTEA NOT NULL,
    PRIMARY KEY (vault_id, name_lc)
)
