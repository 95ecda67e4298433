-- Blob bodies waiting to be removed from the blob store: bodies that were served
-- (replaced or deleted blobs) wait out a delay so downloads already running finish, and
-- removals that failed are retried. The data key of every body listed here is already
-- destroyed with its row, so a row here only ever leads to deleting ciphertext nobody
-- can open. It carries no MAC for that reason.
CREATE TABLE store_blob_removals (
    resource_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    due         BIGINT NOT NULL,
    PRIMARY KEY (resource_id, name)
);

CREATE INDEX store_blob_removals_due ON store_blob_removals (due)
