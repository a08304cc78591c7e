#pragma once
// BatchWriter: applies the operations of one WriteBatch on the writer connection, inside a
// transaction (or savepoint) that the caller opened. It never commits; on an error the caller rolls
// back.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/core/status.h"
#include "outpost/metadb/sqlite_store.h"
#include "outpost/metadb/store.h"
#include "sqlite.h"

namespace outpost::metadb::detail {

// What one batch did, kept until its transaction commits.
struct BatchEffects {
  WriteResult result;
  std::vector<KeyChange> keys;
  std::vector<std::string> devices;
  bool touchedOutbox = false;  // an outbox statement ran (the gauges are read again)
  OutboxChanged outbox;        // the rows it changed
};

// Parses a resource version: a non-empty decimal integer that fits in 63 bits.
core::Result<int64_t> parseVersion(std::string_view text);

// True when applying `batch` writes with at most one statement (one upsert, ack, retry or kv
// operation), so a failure leaves nothing behind without a savepoint.
bool writesWithOneStatement(const WriteBatch& batch);

class BatchWriter {
 public:
  static core::Result<std::unique_ptr<BatchWriter>> create(sql::Connection& db,
                                                           const StoreOptions& options);

  // Applies `batch` at wall time `nowMs`, filling `out`. On an error `out` is meaningless.
  core::Status apply(const WriteBatch& batch, int64_t nowMs, BatchEffects& out);

  // Deletes tombstones older than `cutoffMs`; returns how many.
  core::Result<int64_t> pruneTombstones(int64_t cutoffMs);

 private:
  BatchWriter(sql::Connection& db, const StoreOptions& options) : db_(db), options_(options) {}
  core::Status prepareAll();

  core::Status applyChange(const ResourceChange& c, int64_t nowMs, BatchEffects& out);
  core::Status enqueue(const OutboxItem& item, int64_t nowMs, BatchEffects& out);
  core::Status enforceQuota(int64_t keepId, BatchEffects& out);
  core::Status ack(const OutboxRef& ref, BatchEffects& out);
  core::Status retry(const OutboxRef& ref, int64_t nowMs, BatchEffects& out);
  core::Status updateDevice(const DeviceUpdate& u, int64_t nowMs, BatchEffects& out);
  core::Status putKv(std::string_view key, std::string_view value);
  core::Status eraseKv(std::string_view key);

  sql::Connection& db_;
  const StoreOptions& options_;

  sql::Statement resourceVersion_, resourceUpsert_, resourceTombstone_, pruneTombstones_;
  sql::Statement outboxUpsert_, outboxStats_, outboxVictim_, outboxDelete_, outboxAck_;
  sql::Statement outboxAttempts_, outboxRetry_, droppedAdd_;
  sql::Statement deviceExists_, deviceUpsert_, deviceDelete_, propsDeleteAll_, propUpsert_,
      propDelete_;
  sql::Statement kvPut_, kvErase_;
};

}  // namespace outpost::metadb::detail
