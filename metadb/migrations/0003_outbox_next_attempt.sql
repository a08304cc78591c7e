-- 0003: the outbox's earliest next attempt (when to try again after failed sends) is an index lookup
-- instead of a scan of every row, which a large outbox backlog made costly. An index only: no query
-- needs it to be correct, so a build at schema 2 (OUTPOST_STORE_SCHEMA) behaves alike.
CREATE INDEX outbox_next_attempt ON outbox (next_attempt_ms);
