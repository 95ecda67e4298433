-- S3 objects are object rows of kind 's3' with two more columns: the object key, stored
-- readable (as on AWS, where server-side encryption never covers keys) so a bucket lists
-- in key order from an index, and the S3 metadata sealed under the infrastructure layer.
-- Both are in the row MAC. Other kinds leave them NULL.
ALTER TABLE store_objects ADD COLUMN skey BYTEA;

ALTER TABLE store_objects ADD COLUMN meta BYTEA;

CREATE INDEX store_objects_skey ON store_objects (resource_id, kind, skey, id)
