#pragma once
// SqliteStoreImpl: the writer connection on the "metadb" loop, with group commit.

#include <sys/types.h>

#include <deque>
#include <memory>
#include <mutex>
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

  static size_t opsOf(const WriteBatch& batch);
  // All of these run on loop_.
  void startWindow();
  // Commits up to maxBatch operations from the intake; true when more are waiting.
  bool commitPending();
  void flushAll();
  void commitGroup(std::vector<Pending>& group);
  bool commitTogether(std::vector<Pending>& group, int64_t nowMs, std::vector<Outcome>& out);
  void commitAlone(Pending& p, int64_t nowMs, Outcome& out);
  void finish(std::vector<Pending>& group, std::vector<Outcome>& out, core::MonoTime started,
              int transactions);
  void rollback();
  // DATA_LOSS when the file at options_.path is no longer the one opened (removed or replaced):
  // SQLite would go on writing to the unlinked file and every write would be lost at the restart.
  core::Status fileStillThere() const;
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
  dev_t fileDevice_ = 0;
  ino_t fileInode_ = 0;
  std::unique_ptr<BatchWriter> writer_;
  sql::Statement begin_, commit_, rollback_, savepoint_, release_, rollbackTo_, stats_, pages_;

  // Batches waiting for a commit; filled by any thread, drained by loop_.
  std::mutex intakeMu_;
  std::deque<Pending> intake_;
  size_t intakeOps_ = 0;
  bool fullSignalled_ = false;  // a commit of a full batch is already posted

  std::optional<core::TimerId> timer_;
  std::optional<core::TimerId> pruneTimer_;
  core::Code lastError_ = core::Code::kOk;

  // The commit window is real time (how long a write waits for company), not the injected clock's:
  // a test's ManualClock must not stall commits. Stored times and back-off use the injected clock.
  core::SystemClock realClock_;
  core::EventLoop loop_;
};

}  // namespace outpost::metadb::detail
