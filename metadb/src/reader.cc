#include "reader.h"

#include <chrono>

namespace outpost::metadb::detail {

using core::Result;
using core::Status;

namespace {

constexpr const char* kResourceColumns =
    "SELECT key, namespace, type, name, uid, version, object, origin, updated_ms FROM resources ";

core::WallTime fromMillis(int64_t ms) { return core::WallTime(std::chrono::milliseconds(ms)); }

// The smallest string greater than every string that starts with `prefix`; empty when there is
// none.
std::string prefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last != 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return end;
}

class SqliteReader final : public StoreReader {
 public:
  SqliteReader(sql::Connection db, core::Clock& clock) : db_(std::move(db)), clock_(clock) {}

  Status prepare() {
    struct Entry {
      sql::Statement* stmt;
      std::string text;
    };
    const std::string cols = kResourceColumns;
    const Entry entries[] = {
        {&get_, cols + "WHERE key = ?1 AND deleted_ms IS NULL"},
        {&byType_, cols + "WHERE type = ?1 AND deleted_ms IS NULL ORDER BY key"},
        {&byTypeNs_,
         cols + "WHERE type = ?1 AND namespace = ?2 AND deleted_ms IS NULL ORDER BY key"},
        {&byRange_, cols + "WHERE key >= ?1 AND key < ?2 AND deleted_ms IS NULL ORDER BY key"},
        {&byStart_, cols + "WHERE key >= ?1 AND deleted_ms IS NULL ORDER BY key"},
        {&due_,
         "SELECT id, generation, kind, key, payload, priority, attempts, next_attempt_ms, "
         "created_ms"
         " FROM outbox WHERE next_attempt_ms <= ?1 ORDER BY priority DESC, id LIMIT ?2"},
        {&next_, "SELECT min(next_attempt_ms) FROM outbox"},
        {&has_, "SELECT 1 FROM outbox WHERE kind = ?1 AND key = ?2"},
        {&stats_,
         "SELECT rows, bytes, (SELECT CAST(value AS INTEGER) FROM kv WHERE key = ?1)"
         " FROM outbox_stats"},
        {&device_,
         "SELECT id, name, description, state, last_online, model, object FROM devices"
         " WHERE id = ?1"},
        {&devices_,
         "SELECT id, name, description, state, last_online, model, object FROM devices"
         " ORDER BY id"},
        {&twin_,
         "SELECT name, type, optional, expected_value, expected_ms, expected_cloud, expected_edge,"
         " actual_value, actual_ms, actual_cloud, actual_edge FROM twin_properties"
         " WHERE device_id = ?1 ORDER BY name"},
        {&kv_, "SELECT value FROM kv WHERE key = ?1"},
    };
    for (const Entry& e : entries) {
      OUTPOST_ASSIGN_OR_RETURN(*e.stmt, db_.prepare(e.text));
    }
    return core::okStatus();
  }

  // StoreReader
  Result<std::optional<Resource>> get(std::string_view key) override {
    sql::Use q(get_);
    q->bind(1, key);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) return std::optional<Resource>();
    return std::optional<Resource>(resource(*q));
  }

  Result<std::vector<Resource>> list(std::string_view type,
                                     std::optional<std::string_view> ns) override {
    sql::Use q(ns ? byTypeNs_ : byType_);
    q->bind(1, type);
    if (ns) q->bind(2, *ns);
    return resources(*q);
  }

  Result<std::vector<Resource>> listPrefix(std::string_view prefix) override {
    std::string end = prefixEnd(prefix);
    sql::Use q(end.empty() ? byStart_ : byRange_);
    q->bind(1, prefix);
    if (!end.empty()) q->bind(2, end);
    return resources(*q);
  }

  Result<std::vector<OutboxEntry>> outboxDue(size_t limit) override {
    sql::Use q(due_);
    q->bind(1, core::toUnixMillis(clock_.wallNow())).bind(2, static_cast<int64_t>(limit));
    std::vector<OutboxEntry> out;
    while (true) {
      OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
      if (!row) return out;
      OutboxEntry e;
      e.ref = {q->int64(0), q->int64(1)};
      e.kind = q->text(2);
      e.key = q->text(3);
      e.payload = q->text(4);
      e.priority = static_cast<int>(q->int64(5));
      e.attempts = static_cast<int>(q->int64(6));
      e.nextAttempt = fromMillis(q->int64(7));
      e.created = fromMillis(q->int64(8));
      out.push_back(std::move(e));
    }
  }

  Result<std::optional<core::WallTime>> outboxNextAttempt() override {
    sql::Use q(next_);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row || q->isNull(0)) return std::optional<core::WallTime>();
    return std::optional<core::WallTime>(fromMillis(q->int64(0)));
  }

  Result<bool> outboxHas(std::string_view kind, std::string_view key) override {
    sql::Use q(has_);
    q->bind(1, kind).bind(2, key);
    return q->step();
  }

  Result<OutboxStats> outboxStats() override {
    sql::Use q(stats_);
    q->bind(1, kKvOutboxDropped);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) return core::internalError("outbox_stats has no row");
    return OutboxStats{q->int64(0), q->int64(1), q->int64(2)};
  }

  Result<std::optional<Device>> device(std::string_view id) override {
    sql::Use q(device_);
    q->bind(1, id);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) return std::optional<Device>();
    return std::optional<Device>(deviceRow(*q));
  }

  Result<std::vector<Device>> devices() override {
    sql::Use q(devices_);
    std::vector<Device> out;
    while (true) {
      OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
      if (!row) return out;
      out.push_back(deviceRow(*q));
    }
  }

  Result<std::vector<TwinProperty>> twin(std::string_view deviceId) override {
    sql::Use q(twin_);
    q->bind(1, deviceId);
    std::vector<TwinProperty> out;
    while (true) {
      OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
      if (!row) return out;
      TwinProperty p;
      p.name = q->text(0);
      p.type = q->text(1);
      p.optional = q->int64(2) != 0;
      auto side = [&](int first, std::optional<TwinValue>& v, VersionVector& vv) {
        if (!q->isNull(first)) v = TwinValue{q->text(first), q->int64(first + 1)};
        vv = {q->int64(first + 2), q->int64(first + 3)};
      };
      side(3, p.expected, p.expectedVersion);
      side(7, p.actual, p.actualVersion);
      out.push_back(std::move(p));
    }
  }

  Result<std::optional<std::string>> getKv(std::string_view key) override {
    sql::Use q(kv_);
    q->bind(1, key);
    OUTPOST_ASSIGN_OR_RETURN(bool row, q->step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(q->text(0));
  }

 private:
  static Resource resource(const sql::Statement& q) {
    Resource r;
    r.key = q.text(0);
    r.ns = q.text(1);
    r.type = q.text(2);
    r.name = q.text(3);
    r.uid = q.text(4);
    r.version = q.int64(5);
    r.object = q.text(6);
    r.origin = q.text(7);
    r.updated = fromMillis(q.int64(8));
    return r;
  }

  static Result<std::vector<Resource>> resources(sql::Statement& q) {
    std::vector<Resource> out;
    while (true) {
      OUTPOST_ASSIGN_OR_RETURN(bool row, q.step());
      if (!row) return out;
      out.push_back(resource(q));
    }
  }

  static Device deviceRow(const sql::Statement& q) {
    return Device{q.text(0), q.text(1), q.text(2), q.text(3), q.text(4), q.text(5), q.text(6)};
  }

  sql::Connection db_;
  core::Clock& clock_;
  sql::Statement get_, byType_, byTypeNs_, byRange_, byStart_, due_, next_, has_, stats_, device_,
      devices_, twin_, kv_;
};

}  // namespace

Result<StoreReaderPtr> makeReader(sql::Connection db, core::Clock& clock) {
  auto reader = std::make_unique<SqliteReader>(std::move(db), clock);
  OUTPOST_RETURN_IF_ERROR(reader->prepare());
  return StoreReaderPtr(std::move(reader));
}

}  // namespace outpost::metadb::detail
