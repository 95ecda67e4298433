-- S3 access keys of principals. SigV4 is symmetric: the server needs the secret itself,
-- so it is stored sealed (record format, key derived from the root key, the key id and
-- principal as associated data), never hashed. Rows are MACed. Revoked rows stay, so an
-- id is never issued twice.
CREATE TABLE s3_keys (
    id            TEXT PRIMARY KEY,
    principal_id  TEXT NOT NULL,
    secret_sealed BYTEA NOT NULL,
    created       BIGINT NOT NULL,
    revoked       BIGINT NOT NULL,
    mac           BYTEA NOT NULL
);

CREATE INDEX s3_keys_principal ON s3_keys (principal_id)
