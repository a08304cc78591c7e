#pragma once
// SqliteStoreImpl: the writer connection on the "metadb" loop, with group commit.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "batch_writer.h"
#include "outpost/core/event_loop.h"
#include "outpost/metadb/sqlite_store.h"
#include "sqlite.h"

namespace outpost::metadb::detail {

class SqliteStoreImpl final : public SqliteStore {
 public:
  SqliteStoreImpl(const StoreOptions& options, core::Clock& clock, core::Bus& bus,
                  core::Logging& logging, core::MetricsRegistry& metrics);
  ~SqliteStoreImpl() override;

  // Opens the file and starts the loop; called once by openSqliteStore().
  core::Status open();

  // Store
  void write(WriteBatch batch, core::EventLoop& loop, WriteCallback done) override;
  core::Result<StoreReaderPtr> openReader() override;

  // SqliteStore
  core::Status setMaxPageCount(int64_t pages) override;
  core::Status pruneTombstones() override;
  void flush() override;

 private:
  struct Pending {
    WriteBatch batch;
    core::EventLoop* loop;
    WriteCallback done;
  };
  struct Outcome {
    core::Status status;
    BatchEffects effects;
  };

  // All of these run on loop_.
  void add(Pending p);
  void commitPending();
  bool commitTogether(std::vector<Pending>& group, int64_t nowMs, std::vector<Outcome>& out);
  void commitAlone(Pending& p, int64_t nowMs, Outcome& out);
  void finish(std::vector<Pending>& group, std::vector<Outcome>& out, core::MonoTime started,
              int transactions);
  void rollback();
  core::Status runOnLoop(const std::function<core::Status()>& task);
  void refreshGauges();

  const StoreOptions options_;
  core::Clock& clock_;
  core::Bus& bus_;
  core::Logger log_;
  core::MetricsRegistry& metrics_;
  core::Histogram& commitSeconds_;
  core::Counter& commits_;
  core::Counter& rowsWritten_;
  core::Counter& outboxDropped_;
  core::Gauge& outboxRows_;
  core::Gauge& outboxBytes_;
  core::Gauge& sizeBytes_;

  sql::Connection db_;
  std::unique_ptr<BatchWriter> writer_;
  sql::Statement begin_, commit_, rollback_, savepoint_, release_, rollbackTo_, stats_, pages_;

  std::vector<Pending> pending_;
  size_t pendingOps_ = 0;
  bool commitScheduled_ = false;
  std::optional<core::TimerId> timer_;
  std::optional<core::TimerId> pruneTimer_;
  core::Code lastError_ = core::Code::kOk;

  // The commit window is real time (how long a write waits for company), not the injected clock's:
  // a test's ManualClock must not stall commits. Stored times and back-off use the injected clock.
  core::SystemClock realClock_;
  core::EventLoop loop_;
};

}  // namespace outpost::metadb::detail
