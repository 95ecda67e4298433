-- The parts of S3 multipart uploads: each part's body is sealed as it arrives (under the
-- upload's data key, context upload id and part number) and never rewritten. A row lists
-- one part body: while the upload runs, and after Complete for the parts the object is
-- made of (object_id, generation set), so the orphan sweep, backups and deletes find
-- them. The upload itself is an object row of kind 's3upload'. Rows are MACed.
CREATE TABLE store_s3_parts (
    resource_id TEXT NOT NULL,
    upload_id   TEXT NOT NULL,
    part        BIGINT NOT NULL,
    body        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    meta        BYTEA NOT NULL,
    object_id   TEXT,
    generation  BIGINT,
    created     BIGINT NOT NULL,
    mac         BYTEA NOT NULL,
    PRIMARY KEY (resource_id, upload_id, part)
);

CREATE INDEX store_s3_parts_object ON store_s3_parts (resource_id, object_id, generation)
