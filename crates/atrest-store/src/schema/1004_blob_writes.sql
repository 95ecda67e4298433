-- Blob bodies being written: one row per body, inserted before its first byte goes to
-- the blob store. The orphan sweep never removes a body listed here (an upload, or a
-- re-encrypt batch whose rows commit only at the end of the batch, can outlast any
-- grace period). The sweep drops entries whose body a row refers to, and entries older
-- than a week. A row here only ever keeps ciphertext alive, so it carries no MAC.
CREATE TABLE store_blob_writes (
    resource_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    started     BIGINT NOT NULL,
    PRIMARY KEY (resource_id, name)
)
