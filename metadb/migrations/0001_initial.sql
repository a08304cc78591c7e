-- 0001: desired resources, the outbox, devices and twins, key-values.

-- Desired resources, one row per key "<ns>/<type>/<name>". `version` is the resource version as an
-- integer; it only moves forward. Objects are ~2 KB, so a rowid table (not WITHOUT ROWID).
CREATE TABLE resources (
  id         INTEGER PRIMARY KEY,
  key        TEXT    NOT NULL UNIQUE,
  namespace  TEXT    NOT NULL,
  type       TEXT    NOT NULL,
  name       TEXT    NOT NULL,
  uid        TEXT    NOT NULL DEFAULT '',
  version    INTEGER NOT NULL,
  object     TEXT    NOT NULL,
  origin     TEXT    NOT NULL DEFAULT '',
  updated_ms INTEGER NOT NULL            -- wall clock, ms since the epoch
);
CREATE INDEX resources_by_type ON resources (type, namespace, name);

-- Items for the cloud, one row per (kind, key). `id` is the queue order (AUTOINCREMENT: never reused,
-- so an (id, generation) pair names one payload for ever); `generation` grows when a newer payload
-- replaces the row's.
CREATE TABLE outbox (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  kind            TEXT    NOT NULL,
  key             TEXT    NOT NULL,
  generation      INTEGER NOT NULL DEFAULT 1,
  priority        INTEGER NOT NULL DEFAULT 0,
  payload         BLOB    NOT NULL,
  bytes           INTEGER NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,      -- wall clock: it must mean the same after a restart
  created_ms      INTEGER NOT NULL,
  UNIQUE (kind, key)
);
CREATE INDEX outbox_send_order ON outbox (priority DESC, id);
CREATE INDEX outbox_drop_order ON outbox (priority, id);

-- Row and byte totals of the outbox, kept by triggers so they follow every commit and rollback.
CREATE TABLE outbox_stats (
  one   INTEGER PRIMARY KEY CHECK (one = 1),
  rows  INTEGER NOT NULL,
  bytes INTEGER NOT NULL
);
INSERT INTO outbox_stats (one, rows, bytes) VALUES (1, 0, 0);
CREATE TRIGGER outbox_stats_insert AFTER INSERT ON outbox BEGIN
  UPDATE outbox_stats SET rows = rows + 1, bytes = bytes + NEW.bytes;
END;
CREATE TRIGGER outbox_stats_delete AFTER DELETE ON outbox BEGIN
  UPDATE outbox_stats SET rows = rows - 1, bytes = bytes - OLD.bytes;
END;
CREATE TRIGGER outbox_stats_update AFTER UPDATE OF bytes ON outbox BEGIN
  UPDATE outbox_stats SET bytes = bytes - OLD.bytes + NEW.bytes;
END;

CREATE TABLE devices (
  id          TEXT    PRIMARY KEY NOT NULL,
  name        TEXT    NOT NULL,
  description TEXT    NOT NULL DEFAULT '',
  state       TEXT    NOT NULL DEFAULT '',
  last_online TEXT    NOT NULL DEFAULT '',
  model       TEXT    NOT NULL DEFAULT '',
  object      TEXT    NOT NULL DEFAULT '',
  updated_ms  INTEGER NOT NULL
);

-- Twin properties; a side (expected, actual) without a value has NULL value and timestamp.
CREATE TABLE twin_properties (
  device_id      TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  name           TEXT    NOT NULL,
  type           TEXT    NOT NULL,
  optional       INTEGER NOT NULL DEFAULT 1,
  expected_value TEXT,
  expected_ms    INTEGER,
  expected_cloud INTEGER NOT NULL DEFAULT 0,
  expected_edge  INTEGER NOT NULL DEFAULT 0,
  actual_value   TEXT,
  actual_ms      INTEGER,
  actual_cloud   INTEGER NOT NULL DEFAULT 0,
  actual_edge    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (device_id, name)
) WITHOUT ROWID;

-- Small values: node identity, sync marks, needs_full_resync, outbox.dropped_total.
CREATE TABLE kv (
  key   TEXT PRIMARY KEY NOT NULL,
  value BLOB NOT NULL
) WITHOUT ROWID;
