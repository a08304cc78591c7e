// The store module: opens the SQLite store under node.state_dir, and notices when its file goes.

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <memory>
#include <optional>

#include "modules.h"

namespace outpost::agent {

namespace {

// Why `dir` cannot hold the store, or nothing when it can (or does not exist yet: metadb makes it).
std::optional<std::string> stateDirProblem(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return std::string(std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return std::string("is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return std::string("cannot write there: ") + std::strerror(errno);
  return std::nullopt;
}

}  // namespace

std::string StoreModule::path() const { return ctx_.config.node.stateDir + "/outpost.db"; }

core::Status StoreModule::start() {
  const std::string& dir = ctx_.config.node.stateDir;
  const std::string key = "node.state_dir \"" + dir + "\"";
  if (auto problem = stateDirProblem(dir)) return core::unavailable(key + ": " + *problem);
  struct stat before {};
  const bool fresh = ::stat(path().c_str(), &before) != 0 || before.st_size == 0;

  metadb::StoreOptions o;
  o.path = path();
  o.commitWindow = ctx_.config.store.commitWindow;
  o.outboxMaxRows = ctx_.config.store.outboxMaxRows;
  o.outboxMaxBytes = ctx_.config.store.outboxMaxBytes;
  auto s = metadb::openSqliteStore(o, ctx_.clock, ctx_.bus, ctx_.logging, ctx_.metrics);
  if (!s.isOk()) return s.status().withContext(key);
  store_ = std::move(s).value();
  struct stat st {};
  if (::stat(path().c_str(), &st) != 0)
    return core::unavailable(key + ": the store " + path() + " is gone right after opening it");
  device_ = st.st_dev;
  inode_ = st.st_ino;
  opened_ = true;
  if (fresh) OUTPOST_RETURN_IF_ERROR(markFresh().withContext(key));
  return core::okStatus();
}

core::Status StoreModule::markFresh() {
  ctx_.logging.get("agent").warn(
      "no store at ", path(),
      " (first start, or the state directory was lost): started an empty "
      "one; containers found running are kept until the cloud has sent the whole desired set "
      "(needs_full_resync)");
  core::EventLoop loop("store-init", ctx_.clock);
  loop.start();
  auto done = std::make_shared<std::promise<core::Status>>();
  auto result = done->get_future();
  metadb::WriteBatch batch;
  batch.putKv(std::string(metadb::kKvNeedsFullResync), "1");
  store_->write(std::move(batch), loop,
                [done](core::Result<metadb::WriteResult> r) { done->set_value(r.status()); });
  core::Status s = result.wait_for(std::chrono::minutes(1)) == std::future_status::ready
                       ? result.get()
                       : core::deadlineExceeded("marking the new store needs_full_resync");
  loop.stop();
  return s;
}

void StoreModule::stop() {
  if (store_) store_->flush();
  store_.reset();
  opened_ = false;
}

std::optional<std::string> StoreModule::vanished() const {
  if (!opened_) return std::nullopt;
  struct stat st {};
  if (::stat(path().c_str(), &st) != 0) {
    return "the store " + path() + " is gone (" + std::strerror(errno) +
           "): node.state_dir was removed while the agent runs; writes are refused, restart the "
           "agent";
  }
  if (st.st_dev != device_ || st.st_ino != inode_) {
    return "the store " + path() +
           " was replaced by another file while the agent runs; writes are refused, restart the "
           "agent";
  }
  return std::nullopt;
}

std::string StoreModule::describe() const {
  if (auto gone = vanished()) return *gone;
  return path();
}

core::Result<metadb::StoreReaderPtr> StoreModule::openReaderOn(core::EventLoop& loop) const {
  metadb::SqliteStore* store = store_.get();
  if (!store) return core::unavailable("the store is not open");
  // Shared with the task: should the loop run it only after the wait gave up, nothing dangles.
  auto out = std::make_shared<std::optional<core::Result<metadb::StoreReaderPtr>>>();
  if (!loop.runSync([store, out] { *out = store->openReader(); }) || !*out)
    return core::unavailable("the loop did not open a store reader in time");
  return std::move(**out);
}

}  // namespace outpost::agent
