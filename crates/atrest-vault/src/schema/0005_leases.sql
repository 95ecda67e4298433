-- Leases: background work (sweepers, schedulers, data-service jobs) runs on one node of
-- a deployment at a time. A lease is held until `expires` (Unix seconds) and renewed by
-- its holder. A node that dies loses its leases when they expire.
CREATE TABLE leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    expires BIGINT NOT NULL
)
