#pragma once
// SqliteStore: the Store on one SQLite file. Only agent/ (and tests) include this header.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/core/status.h"
#include "outpost/metadb/store.h"

namespace outpost::metadb {

struct StoreOptions {
  // The database file, e.g. /var/lib/outpost/outpost.db. Missing directories are made with mode
  // 0700.
  std::string path;
  // How long a group commit waits for more writes, and how many operations end the wait early.
  // Zero commits as soon as the writer is free (writes that arrive during a commit still share the
  // next).
  core::Duration commitWindow = std::chrono::milliseconds(2);
  size_t maxBatch = 256;
  // Outbox quota; past it the oldest rows of the lowest priority are dropped (and counted).
  int64_t outboxMaxRows = 100000;
  int64_t outboxMaxBytes = int64_t{64} << 20;
  // Back-off of retryLater(): initial * 2^attempts, at most max.
  core::Duration outboxRetryInitial = std::chrono::seconds(1);
  core::Duration outboxRetryMax = std::chrono::minutes(5);
  // How long a deleted key remembers its version, so a late resend of an older version stays stale.
  core::Duration tombstoneRetention = std::chrono::hours(24);
  // How long a connection waits on a lock held by another connection.
  std::chrono::milliseconds busyTimeout = std::chrono::seconds(5);
  // Caps the file at this many pages (SQLite's max_page_count); for tests of a full disk.
  std::optional<int64_t> maxPageCount;
  // SQLite's page cache per connection, in KiB (PRAGMA cache_size = -N). SQLite's own default is
  // 2 MiB per connection, and each module holds a reader, so a store of a few MB would sit in the
  // agent's memory several times over. Pages not cached are read again from the kernel's page
  // cache, which holds them once.
  int writerCacheKiB = 512;
  int readerCacheKiB = 128;
};

class SqliteStore : public Store {
 public:
  // Changes the page cap at run time ("the disk has room again"); tests only.
  virtual core::Status setMaxPageCount(int64_t pages) = 0;
  // Forgets tombstones older than the retention now (also done at open and every hour).
  virtual core::Status pruneTombstones() = 0;
  // Commits whatever is queued now and waits for it; used at shutdown and by tests.
  virtual void flush() = 0;
};

// The schema version (PRAGMA user_version) this build writes.
int storeSchemaVersion();

// Opens the store: creates or migrates the file, checks it, and moves a corrupt file aside
// (starting fresh with the "needs_full_resync" mark). Fails with kFailedPrecondition for a file
// from a newer version.
core::Result<std::unique_ptr<SqliteStore>> openSqliteStore(const StoreOptions& options,
                                                           core::Clock& clock, core::Bus& bus,
                                                           core::Logging& logging,
                                                           core::MetricsRegistry& metrics);

}  // namespace outpost::metadb
