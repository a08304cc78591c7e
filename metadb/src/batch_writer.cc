#include "batch_writer.h"

#include <algorithm>
#include <charconv>
#include <type_traits>
#include <variant>

namespace outpost::metadb::detail {

using core::Result;
using core::Status;

Result<int64_t> parseVersion(std::string_view text) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  bool digits = !text.empty() &&
                std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (!digits || ec != std::errc() || ptr != end) {
    return core::invalidArgument("resource version '" + std::string(text) +
                                 "' is not a decimal integer of at most 63 bits");
  }
  return v;
}

bool writesWithOneStatement(const WriteBatch& batch) {
  if (batch.size() != 1) return batch.empty();
  const WriteOp& op = batch.ops().front();
  if (const auto* c = std::get_if<ResourceChange>(&op))
    return c->kind == ResourceChange::Kind::kUpsert;
  return std::holds_alternative<OutboxAck>(op) || std::holds_alternative<OutboxRetry>(op) ||
         std::holds_alternative<KvPut>(op) || std::holds_alternative<KvErase>(op);
}

Result<std::unique_ptr<BatchWriter>> BatchWriter::create(sql::Connection& db,
                                                         const StoreOptions& options) {
  std::unique_ptr<BatchWriter> w(new BatchWriter(db, options));
  OUTPOST_RETURN_IF_ERROR(w->prepareAll());
  return w;
}

Status BatchWriter::prepareAll() {
  struct Entry {
    sql::Statement* stmt;
    const char* text;
  };
  const Entry entries[] = {
      {&resourceVersion_,
       "SELECT version, deleted_ms IS NOT NULL, origin FROM resources WHERE key = ?1"},
      {&resourceUpsert_,
       "INSERT INTO resources (key, namespace, type, name, uid, version, object, origin, "
       "updated_ms)"
       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (key) DO UPDATE SET"
       " uid = excluded.uid, version = excluded.version, object = excluded.object,"
       " origin = excluded.origin, updated_ms = excluded.updated_ms, deleted_ms = NULL"
       " WHERE excluded.version > resources.version"},
      {&resourceTombstone_,
       "INSERT INTO resources (key, namespace, type, name, uid, version, object, origin, "
       "updated_ms,"
       " deleted_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7, ?8, ?8) ON CONFLICT (key) DO UPDATE "
       "SET"
       " version = max(version, excluded.version), object = '', origin = excluded.origin,"
       " updated_ms = excluded.updated_ms, deleted_ms = excluded.deleted_ms"},
      {&pruneTombstones_, "DELETE FROM resources WHERE deleted_ms IS NOT NULL AND deleted_ms < ?1"},
      {&outboxUpsert_,
       "INSERT INTO outbox (kind, key, priority, payload, bytes, next_attempt_ms, created_ms)"
       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (kind, key) DO UPDATE SET"
       " generation = generation + 1, priority = excluded.priority, payload = excluded.payload,"
       " bytes = excluded.bytes, attempts = 0, next_attempt_ms = excluded.next_attempt_ms"
       " RETURNING id, generation"},
      {&outboxStats_, "SELECT rows, bytes FROM outbox_stats"},
      {&outboxVictim_,
       "SELECT id, bytes FROM outbox WHERE id <> ?1 ORDER BY priority ASC, id ASC LIMIT 1"},
      {&outboxDelete_, "DELETE FROM outbox WHERE id = ?1"},
      {&outboxAck_, "DELETE FROM outbox WHERE id = ?1 AND generation = ?2"},
      {&outboxAttempts_, "SELECT attempts FROM outbox WHERE id = ?1 AND generation = ?2"},
      {&outboxRetry_,
       "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?3"
       " WHERE id = ?1 AND generation = ?2"},
      {&droppedAdd_,
       "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET"
       " value = CAST(value AS INTEGER) + excluded.value"},
      {&deviceExists_, "SELECT 1 FROM devices WHERE id = ?1"},
      {&deviceUpsert_,
       "INSERT INTO devices (id, name, description, state, last_online, model, object, updated_ms)"
       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO UPDATE SET name = "
       "excluded.name,"
       " description = excluded.description, state = excluded.state,"
       " last_online = excluded.last_online, model = excluded.model, object = excluded.object,"
       " updated_ms = excluded.updated_ms"},
      {&deviceDelete_, "DELETE FROM devices WHERE id = ?1"},
      {&propsDeleteAll_, "DELETE FROM twin_properties WHERE device_id = ?1"},
      {&propUpsert_,
       "INSERT OR REPLACE INTO twin_properties (device_id, name, type, optional, expected_value,"
       " expected_ms, expected_cloud, expected_edge, actual_value, actual_ms, actual_cloud,"
       " actual_edge) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"},
      {&propDelete_, "DELETE FROM twin_properties WHERE device_id = ?1 AND name = ?2"},
      {&kvPut_,
       "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET"
       " value = excluded.value"},
      {&kvErase_, "DELETE FROM kv WHERE key = ?1"},
  };
  for (const Entry& e : entries) {
    OUTPOST_ASSIGN_OR_RETURN(*e.stmt, db_.prepare(e.text));
  }
  return core::okStatus();
}

Status BatchWriter::apply(const WriteBatch& batch, int64_t nowMs, BatchEffects& out) {
  size_t index = 0;
  for (const WriteOp& op : batch.ops()) {
    Status s = std::visit(
        [&](const auto& o) -> Status {
          using T = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<T, ResourceChange>) return applyChange(o, nowMs, out);
          if constexpr (std::is_same_v<T, OutboxItem>) return enqueue(o, nowMs, out);
          if constexpr (std::is_same_v<T, OutboxAck>) return ack(o.ref, out);
          if constexpr (std::is_same_v<T, OutboxRetry>) return retry(o.ref, nowMs, out);
          if constexpr (std::is_same_v<T, DeviceUpdate>) return updateDevice(o, nowMs, out);
          if constexpr (std::is_same_v<T, KvPut>) return putKv(o.key, o.value);
          if constexpr (std::is_same_v<T, KvErase>) return eraseKv(o.key);
        },
        op);
    if (!s.isOk()) return s.withContext("operation " + std::to_string(index) + " of the batch");
    ++index;
  }
  return core::okStatus();
}

Status BatchWriter::applyChange(const ResourceChange& c, int64_t nowMs, BatchEffects& out) {
  OUTPOST_ASSIGN_OR_RETURN(KeyParts parts, parseKey(c.key));
  const bool isDelete = c.kind == ResourceChange::Kind::kDelete;
  // A delete without a version (an empty retained MQTT message) deletes whatever is stored.
  std::optional<int64_t> version;
  if (!(isDelete && c.version.empty())) {
    auto parsed = parseVersion(c.version);
    if (!parsed.isOk()) return parsed.status().withContext(c.key);
    version = *parsed;
  }

  if (!isDelete) {
    // One statement decides and writes: the conditional upsert changes no row when the key already
    // has this version or a newer one (equal is a resend of what we hold, or of what we deleted).
    sql::Use q(resourceUpsert_);
    q->bind(1, c.key).bind(2, parts.ns).bind(3, parts.type).bind(4, parts.name).bind(5, c.uid);
    q->bind(6, *version).bind(7, c.object).bind(8, c.origin).bind(9, nowMs);
    OUTPOST_RETURN_IF_ERROR(q->run());
    if (sqlite3_changes(db_.get()) == 0) {
      out.result.changes.push_back(ApplyOutcome::kStale);
      return core::okStatus();
    }
    out.result.changes.push_back(ApplyOutcome::kApplied);
    out.keys.push_back({c.key, parts.ns, parts.type, parts.name, false});
    return core::okStatus();
  }

  std::optional<int64_t> stored;
  bool tombstone = false;
  std::string storedOrigin;
  {
    sql::Use q(resourceVersion_);
    q->bind(1, c.key);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (row) {
      stored = q->int64(0);
      tombstone = q->int64(1) != 0;
      storedOrigin = q->text(2);
    }
  }

  // A delete at the stored version deletes that very object; an older one is stale. A delete
  // without a version withdraws its origin's copy: an object another origin sent (a group's, newer
  // than the node's own) stays.
  if ((stored && version && *version < *stored) ||
      (!version && stored && !tombstone && !c.origin.empty() && !storedOrigin.empty() &&
       storedOrigin != c.origin)) {
    out.result.changes.push_back(ApplyOutcome::kStale);
    return core::okStatus();
  }
  sql::Use q(resourceTombstone_);
  q->bind(1, c.key).bind(2, parts.ns).bind(3, parts.type).bind(4, parts.name).bind(5, c.uid);
  q->bind(6, version.value_or(stored.value_or(0))).bind(7, c.origin).bind(8, nowMs);
  OUTPOST_RETURN_IF_ERROR(q->run());
  out.result.changes.push_back(ApplyOutcome::kDeleted);
  if (stored && !tombstone) out.keys.push_back({c.key, parts.ns, parts.type, parts.name, true});
  return core::okStatus();
}

Result<int64_t> BatchWriter::pruneTombstones(int64_t cutoffMs) {
  sql::Use q(pruneTombstones_);
  q->bind(1, cutoffMs);
  OUTPOST_RETURN_IF_ERROR(q->run());
  return static_cast<int64_t>(sqlite3_changes(db_.get()));
}

Status BatchWriter::enqueue(const OutboxItem& item, int64_t nowMs, BatchEffects& out) {
  if (item.kind.empty()) return core::invalidArgument("outbox item without a kind");
  OutboxRef ref;
  {
    sql::Use q(outboxUpsert_);
    q->bind(1, item.kind).bind(2, item.key).bind(3, int64_t{item.priority});
    q->bindBlob(4, item.payload).bind(5, static_cast<int64_t>(item.payload.size())).bind(6, nowMs);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) return core::internalError("outbox upsert returned no row");
    ref = {q->int64(0), q->int64(1)};
    OUTPOST_RETURN_IF_ERROR(q->run());  // RETURNING finishes its write only when stepped to the end
  }
  out.result.enqueued.push_back(ref);
  out.touchedOutbox = true;
  ++out.outbox.queued;
  return enforceQuota(ref.id, out);
}

// Drops the oldest rows of the lowest priority until the outbox fits, never the row just queued.
Status BatchWriter::enforceQuota(int64_t keepId, BatchEffects& out) {
  int64_t rows = 0, bytes = 0;
  {
    sql::Use q(outboxStats_);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) return core::internalError("outbox_stats has no row");
    rows = q->int64(0);
    bytes = q->int64(1);
  }
  int64_t dropped = 0;
  while (rows > options_.outboxMaxRows || bytes > options_.outboxMaxBytes) {
    int64_t victim = 0, victimBytes = 0;
    {
      sql::Use q(outboxVictim_);
      q->bind(1, keepId);
      OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
      if (!row) break;  // only the new row is left: it stays, even if it alone is over the quota
      victim = q->int64(0);
      victimBytes = q->int64(1);
    }
    sql::Use d(outboxDelete_);
    d->bind(1, victim);
    OUTPOST_RETURN_IF_ERROR(d->run());
    --rows;
    bytes -= victimBytes;
    ++dropped;
  }
  if (dropped == 0) return core::okStatus();
  sql::Use q(droppedAdd_);
  q->bind(1, kKvOutboxDropped).bind(2, dropped);
  OUTPOST_RETURN_IF_ERROR(q->run());
  out.result.outboxDropped += dropped;
  out.outbox.dropped += dropped;
  return core::okStatus();
}

Status BatchWriter::ack(const OutboxRef& ref, BatchEffects& out) {
  sql::Use q(outboxAck_);
  q->bind(1, ref.id).bind(2, ref.generation);
  OUTPOST_RETURN_IF_ERROR(q->run());
  const bool deleted = sqlite3_changes(db_.get()) > 0;
  out.result.acked.push_back(deleted);
  out.touchedOutbox = true;
  if (deleted) ++out.outbox.acked;
  return core::okStatus();
}

Status BatchWriter::retry(const OutboxRef& ref, int64_t nowMs, BatchEffects& out) {
  std::optional<int64_t> attempts;
  {
    sql::Use q(outboxAttempts_);
    q->bind(1, ref.id).bind(2, ref.generation);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (row) attempts = q->int64(0);
  }
  if (!attempts) {
    out.result.retried.push_back(false);
    return core::okStatus();
  }
  // initial * 2^attempts, capped; doubled step by step so it cannot overflow.
  core::Duration delay = options_.outboxRetryInitial;
  for (int64_t i = 0; i < *attempts && delay < options_.outboxRetryMax; ++i) delay *= 2;
  delay = std::min(delay, options_.outboxRetryMax);
  int64_t next = nowMs + std::chrono::duration_cast<std::chrono::milliseconds>(delay).count();
  sql::Use q(outboxRetry_);
  q->bind(1, ref.id).bind(2, ref.generation).bind(3, next);
  OUTPOST_RETURN_IF_ERROR(q->run());
  out.result.retried.push_back(true);
  out.touchedOutbox = true;
  ++out.outbox.retried;
  return core::okStatus();
}

Status BatchWriter::updateDevice(const DeviceUpdate& u, int64_t nowMs, BatchEffects& out) {
  if (u.deviceId.empty()) return core::invalidArgument("device update without a device id");
  out.devices.push_back(u.deviceId);
  if (u.remove) {
    sql::Use p(propsDeleteAll_);
    p->bind(1, u.deviceId);
    OUTPOST_RETURN_IF_ERROR(p->run());
    sql::Use d(deviceDelete_);
    d->bind(1, u.deviceId);
    return d->run();
  }
  if (u.device) {
    const Device& d = *u.device;
    sql::Use q(deviceUpsert_);
    q->bind(1, u.deviceId).bind(2, d.name).bind(3, d.description).bind(4, d.state);
    q->bind(5, d.lastOnline).bind(6, d.model).bind(7, d.object).bind(8, nowMs);
    OUTPOST_RETURN_IF_ERROR(q->run());
  } else {
    sql::Use q(deviceExists_);
    q->bind(1, u.deviceId);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) return core::notFound("device '" + u.deviceId + "' is not known");
  }
  for (const TwinProperty& p : u.set) {
    if (p.name.empty()) return core::invalidArgument("twin property without a name");
    sql::Use q(propUpsert_);
    q->bind(1, u.deviceId).bind(2, p.name).bind(3, p.type).bind(4, int64_t{p.optional ? 1 : 0});
    auto bindSide = [&](int first, const std::optional<TwinValue>& v, const VersionVector& vv) {
      if (v) {
        q->bind(first, v->value).bind(first + 1, v->timestampMs);
      } else {
        q->bindNull(first).bindNull(first + 1);
      }
      q->bind(first + 2, vv.cloud).bind(first + 3, vv.edge);
    };
    bindSide(5, p.expected, p.expectedVersion);
    bindSide(9, p.actual, p.actualVersion);
    OUTPOST_RETURN_IF_ERROR(q->run());
  }
  for (const std::string& name : u.removeProperties) {
    sql::Use q(propDelete_);
    q->bind(1, u.deviceId).bind(2, name);
    OUTPOST_RETURN_IF_ERROR(q->run());
  }
  return core::okStatus();
}

Status BatchWriter::putKv(std::string_view key, std::string_view value) {
  sql::Use q(kvPut_);
  q->bind(1, key).bind(2, value);
  return q->run();
}

Status BatchWriter::eraseKv(std::string_view key) {
  sql::Use q(kvErase_);
  q->bind(1, key);
  return q->run();
}

}  // namespace outpost::metadb::detail
