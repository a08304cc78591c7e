-- 0002: a delete keeps the key's row as a tombstone (deleted_ms set, object emptied) so a late resend of an
-- older version stays stale instead of bringing the object back. Tombstones are pruned after a retention.
ALTER TABLE resources ADD COLUMN deleted_ms INTEGER;
CREATE INDEX resources_tombstones ON resources (deleted_ms) WHERE deleted_ms IS NOT NULL;
