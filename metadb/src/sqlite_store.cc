#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

#include "migrations.h"
#include "open.h"
#include "reader.h"
#include "sqlite_store_impl.h"

namespace outpost::metadb {

namespace detail {

using core::Result;
using core::Status;

SqliteStoreImpl::SqliteStoreImpl(const StoreOptions& options, core::Clock& clock, core::Bus& bus,
                                 core::Logging& logging, core::MetricsRegistry& metrics)
    : options_(options),
      clock_(clock),
      bus_(bus),
      log_(logging.get("metadb")),
      metrics_(metrics),
      commitSeconds_(metrics.histogram("outpost_store_commit_duration_seconds",
                                       "Time to commit one group of writes durably, in seconds",
                                       core::latencyBuckets())),
      commits_(metrics.counter("outpost_store_commits_total", "Durable transactions committed")),
      rowsWritten_(metrics.counter("outpost_store_rows_written_total",
                                   "Operations committed (resource changes, outbox, twins, kv)")),
      outboxDropped_(metrics.counter("outpost_outbox_dropped_total",
                                     "Outbox rows dropped because the outbox quota was full")),
      outboxRows_(metrics.gauge("outpost_outbox_rows", "Rows waiting in the outbox")),
      outboxBytes_(metrics.gauge("outpost_outbox_bytes", "Payload bytes waiting in the outbox")),
      sizeBytes_(metrics.gauge("outpost_store_size_bytes", "Size of the store's database pages")),
      loop_("metadb", realClock_) {}

SqliteStoreImpl::~SqliteStoreImpl() {
  if (db_.get() != nullptr) {
    if (!loop_.runSync([this] { flushAll(); }, std::chrono::minutes(1))) {
      log_.error("store did not finish its last commit within a minute at shutdown");
    }
  }
  loop_.stop();
}

Status SqliteStoreImpl::open() {
  OUTPOST_ASSIGN_OR_RETURN(OpenedWriter opened, openWriter(options_, clock_.wallNow(), log_));
  db_ = std::move(opened.db);
  struct stat st {};
  if (::stat(options_.path.c_str(), &st) != 0) {
    return core::unavailable("the store " + options_.path +
                             " is gone right after opening it: " + std::strerror(errno));
  }
  fileDevice_ = st.st_dev;
  fileInode_ = st.st_ino;
  OUTPOST_ASSIGN_OR_RETURN(writer_, BatchWriter::create(db_, options_));
  struct Entry {
    sql::Statement* stmt;
    const char* text;
  };
  for (const Entry& e :
       {Entry{&begin_, "BEGIN IMMEDIATE"}, Entry{&commit_, "COMMIT"}, Entry{&rollback_, "ROLLBACK"},
        Entry{&savepoint_, "SAVEPOINT batch"}, Entry{&release_, "RELEASE batch"},
        Entry{&rollbackTo_, "ROLLBACK TO batch"},
        Entry{&stats_, "SELECT rows, bytes FROM outbox_stats"},
        Entry{&pages_,
              "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"}}) {
    OUTPOST_ASSIGN_OR_RETURN(*e.stmt, db_.prepare(e.text));
  }
  refreshGauges();
  loop_.start();
  OUTPOST_RETURN_IF_ERROR(pruneTombstones());
  pruneTimer_ = loop_.runEvery(std::chrono::hours(1), [this] {
    Status s = pruneTombstones();
    if (!s.isOk()) log_.warn("pruning tombstones: ", s.toString());
  });
  log_.info("opened store ", options_.path, " (schema version ", latestSchemaVersion(), ")");
  return core::okStatus();
}

void SqliteStoreImpl::write(WriteBatch batch, core::EventLoop& loop, WriteCallback done) {
  const size_t ops = opsOf(batch);
  bool first = false, full = false;
  {
    // Writers only touch the intake: the loop is woken when it goes from empty to non-empty (to
    // start the commit window) and when it holds a full batch, not once per write.
    std::lock_guard lock(intakeMu_);
    first = intake_.empty();
    intake_.push_back(Pending{std::move(batch), &loop, std::move(done)});
    intakeOps_ += ops;
    if (intakeOps_ >= options_.maxBatch && !fullSignalled_) full = fullSignalled_ = true;
  }
  if (full) {
    loop_.post([this] { commitPending(); });
  } else if (first) {
    loop_.post([this] { startWindow(); });
  }
}

Result<StoreReaderPtr> SqliteStoreImpl::openReader() {
  OUTPOST_ASSIGN_OR_RETURN(sql::Connection db, openReadOnly(options_));
  return makeReader(std::move(db), clock_);
}

size_t SqliteStoreImpl::opsOf(const WriteBatch& batch) { return std::max<size_t>(1, batch.size()); }

void SqliteStoreImpl::startWindow() {
  if (timer_) return;
  if (options_.commitWindow <= core::Duration::zero()) {
    commitPending();
    return;
  }
  timer_ = loop_.runAfter(options_.commitWindow, [this] {
    timer_.reset();
    commitPending();
  });
}

bool SqliteStoreImpl::commitPending() {
  if (timer_) loop_.cancel(*std::exchange(timer_, std::nullopt));
  std::vector<Pending> group;
  bool more = false, leftover = false;
  {
    // At most maxBatch operations per commit (a bigger single batch commits alone).
    std::lock_guard lock(intakeMu_);
    size_t ops = 0;
    while (!intake_.empty() &&
           (group.empty() || ops + opsOf(intake_.front().batch) <= options_.maxBatch)) {
      ops += opsOf(intake_.front().batch);
      group.push_back(std::move(intake_.front()));
      intake_.pop_front();
    }
    intakeOps_ -= ops;
    more = fullSignalled_ = intakeOps_ >= options_.maxBatch;
    leftover = !intake_.empty();
  }
  if (!group.empty()) commitGroup(group);
  if (more) {
    loop_.post([this] { commitPending(); });
  } else if (leftover) {
    startWindow();  // what arrived during this commit waits for its own window
  }
  return leftover;
}

Status SqliteStoreImpl::fileStillThere() const {
  struct stat st {};
  if (::stat(options_.path.c_str(), &st) != 0) {
    return core::dataLoss("the store file " + options_.path + " is gone (" + std::strerror(errno) +
                          "): refusing writes that would be lost; restart the agent");
  }
  if (st.st_dev != fileDevice_ || st.st_ino != fileInode_) {
    return core::dataLoss("the store file " + options_.path +
                          " was replaced by another file: refusing writes that would be lost; "
                          "restart the agent");
  }
  return core::okStatus();
}

void SqliteStoreImpl::commitGroup(std::vector<Pending>& group) {
  const core::MonoTime started = realClock_.now();
  const int64_t nowMs = core::toUnixMillis(clock_.wallNow());
  std::vector<Outcome> out(group.size());
  // Checked before every commit (one stat): a store whose file was removed takes no write, so no
  // link acknowledges what it would lose.
  if (Status there = fileStillThere(); !there.isOk()) {
    for (Outcome& o : out) o.status = there;
    finish(group, out, started, 0);
    return;
  }
  int transactions = 1;
  if (!commitTogether(group, nowMs, out)) {
    // The shared transaction failed as a whole (disk full at commit, I/O error, or SQLite rolled it
    // back itself): give each caller a transaction of its own, so one caller's failure is not
    // everyone's.
    transactions = 0;
    for (size_t i = 0; i < group.size(); ++i) {
      out[i] = Outcome{};
      commitAlone(group[i], nowMs, out[i]);
      if (out[i].status.isOk()) ++transactions;
    }
  }
  finish(group, out, started, transactions);
}

void SqliteStoreImpl::rollback() {
  if (db_.autocommit()) return;
  sql::Use q(rollback_);
  Status s = q->run();
  if (!s.isOk()) log_.error("rollback failed: ", s.toString());
}

bool SqliteStoreImpl::commitTogether(std::vector<Pending>& group, int64_t nowMs,
                                     std::vector<Outcome>& out) {
  auto step = [](sql::Statement& s) {
    sql::Use q(s);
    return q->run();
  };
  if (!step(begin_).isOk()) return false;
  for (size_t i = 0; i < group.size(); ++i) {
    // Each caller's batch in a savepoint: all of it or nothing, without touching the others. A
    // batch that writes with one statement needs none: SQLite undoes a failed statement by itself.
    const bool savepoint = !writesWithOneStatement(group[i].batch);
    if (savepoint && !step(savepoint_).isOk()) return rollback(), false;
    Status s = writer_->apply(group[i].batch, nowMs, out[i].effects);
    if (s.isOk()) {
      if (savepoint && !step(release_).isOk()) return rollback(), false;
      continue;
    }
    if (db_.autocommit()) return false;  // SQLite already rolled the whole transaction back
    if (savepoint && (!step(rollbackTo_).isOk() || !step(release_).isOk())) {
      return rollback(), false;
    }
    out[i] = Outcome{std::move(s), {}};
  }
  if (!step(commit_).isOk()) return rollback(), false;
  return true;
}

void SqliteStoreImpl::commitAlone(Pending& p, int64_t nowMs, Outcome& out) {
  auto step = [](sql::Statement& s) {
    sql::Use q(s);
    return q->run();
  };
  Status s = step(begin_);
  if (s.isOk()) s = writer_->apply(p.batch, nowMs, out.effects);
  if (s.isOk()) s = step(commit_);
  if (!s.isOk()) {
    rollback();
    out = Outcome{std::move(s), {}};
  }
}

void SqliteStoreImpl::finish(std::vector<Pending>& group, std::vector<Outcome>& out,
                             core::MonoTime started, int transactions) {
  commitSeconds_.observe(std::chrono::duration<double>(realClock_.now() - started).count());
  commits_.inc(transactions);
  KeysChanged changed;
  OutboxChanged outboxChanged;
  bool outbox = false;
  size_t rows = 0;
  core::Code failure = core::Code::kOk;
  for (size_t i = 0; i < group.size(); ++i) {
    Outcome& o = out[i];
    if (!o.status.isOk()) {
      metrics_
          .counter("outpost_store_write_errors_total", "Write batches that failed, by status code",
                   {{"code", std::string(core::codeName(o.status.code()))}})
          .inc();
      core::Code c = o.status.code();
      if (c != core::Code::kInvalidArgument && c != core::Code::kNotFound) failure = c;
      continue;
    }
    rows += group[i].batch.size();
    outbox = outbox || o.effects.touchedOutbox;
    outboxChanged.queued += o.effects.outbox.queued;
    outboxChanged.acked += o.effects.outbox.acked;
    outboxChanged.retried += o.effects.outbox.retried;
    outboxChanged.dropped += o.effects.outbox.dropped;
    outboxDropped_.inc(static_cast<double>(o.effects.result.outboxDropped));
    std::move(o.effects.keys.begin(), o.effects.keys.end(), std::back_inserter(changed.keys));
    std::move(o.effects.devices.begin(), o.effects.devices.end(),
              std::back_inserter(changed.devices));
  }
  rowsWritten_.inc(static_cast<double>(rows));
  // Storage trouble is logged when it starts and when it ends, not once per write.
  if (failure != lastError_ && (failure != core::Code::kOk || transactions > 0)) {
    if (failure != core::Code::kOk) {
      log_.error("writes are failing: ", codeName(failure), " (",
                 std::find_if(out.begin(), out.end(),
                              [&](const Outcome& o) { return o.status.code() == failure; })
                     ->status.message(),
                 ")");
    } else {
      log_.info("writes succeed again");
    }
    lastError_ = failure;
  }
  if (outbox || transactions > 0) refreshGauges();
  if (!changed.keys.empty() || !changed.devices.empty()) bus_.publish(kKeysChanged, changed);
  if (outboxChanged.queued + outboxChanged.acked + outboxChanged.retried + outboxChanged.dropped >
      0) {
    bus_.publish(kOutboxChanged, outboxChanged);
  }

  // Completions for the same loop go in one task (in commit order): one wake-up per loop and
  // commit, not one per caller.
  using Delivery = std::vector<std::pair<WriteCallback, Result<WriteResult>>>;
  std::vector<std::pair<core::EventLoop*, std::shared_ptr<Delivery>>> byLoop;
  for (size_t i = 0; i < group.size(); ++i) {
    auto it = std::find_if(byLoop.begin(), byLoop.end(),
                           [&](const auto& e) { return e.first == group[i].loop; });
    if (it == byLoop.end()) {
      byLoop.emplace_back(group[i].loop, std::make_shared<Delivery>());
      it = std::prev(byLoop.end());
    }
    it->second->emplace_back(std::move(group[i].done),
                             out[i].status.isOk()
                                 ? Result<WriteResult>(std::move(out[i].effects.result))
                                 : Result<WriteResult>(out[i].status));
  }
  for (auto& [loop, delivery] : byLoop) {
    loop->post([delivery = std::move(delivery)] {
      for (auto& [done, result] : *delivery) {
        if (done) done(std::move(result));
      }
    });
  }
}

void SqliteStoreImpl::refreshGauges() {
  {
    sql::Use q(stats_);
    auto row = q->step();
    if (row.isOk() && *row) {
      outboxRows_.set(static_cast<double>(q->int64(0)));
      outboxBytes_.set(static_cast<double>(q->int64(1)));
    }
  }
  sql::Use q(pages_);
  auto row = q->step();
  if (row.isOk() && *row) {
    sizeBytes_.set(static_cast<double>(q->int64(0)));
  }
}

Status SqliteStoreImpl::runOnLoop(const std::function<Status()>& task) {
  Status result = core::unavailable("the store's loop did not run the task");
  if (loop_.isInLoopThread()) return task();
  if (!loop_.runSync([&] { result = task(); }, std::chrono::minutes(1))) {
    return core::deadlineExceeded("the store's loop did not answer within a minute");
  }
  return result;
}

Status SqliteStoreImpl::setMaxPageCount(int64_t pages) {
  return runOnLoop([&]() -> Status {
    OUTPOST_ASSIGN_OR_RETURN(int64_t now,
                             db_.queryInt("PRAGMA max_page_count = " + std::to_string(pages)));
    if (now != pages) {
      return core::failedPrecondition("max_page_count is " + std::to_string(now) +
                                      ", not the requested " + std::to_string(pages));
    }
    return core::okStatus();
  });
}

Status SqliteStoreImpl::pruneTombstones() {
  return runOnLoop([&]() -> Status {
    flushAll();
    const int64_t cutoff = core::toUnixMillis(clock_.wallNow() - options_.tombstoneRetention);
    OUTPOST_RETURN_IF_ERROR(db_.exec("BEGIN IMMEDIATE"));
    auto pruned = writer_->pruneTombstones(cutoff);
    Status s = pruned.status();
    if (s.isOk()) s = db_.exec("COMMIT");
    if (!s.isOk()) {
      rollback();
      return s.withContext("pruning tombstones");
    }
    if (*pruned > 0) log_.debug("pruned ", *pruned, " tombstones");
    return core::okStatus();
  });
}

void SqliteStoreImpl::flushAll() {
  while (commitPending()) {
  }
}

void SqliteStoreImpl::flush() {
  Status s = runOnLoop([this] {
    flushAll();
    return core::okStatus();
  });
  if (!s.isOk()) log_.error("flush: ", s.toString());
}

}  // namespace detail

int storeSchemaVersion() { return detail::latestSchemaVersion(); }

core::Result<std::unique_ptr<SqliteStore>> openSqliteStore(const StoreOptions& options,
                                                           core::Clock& clock, core::Bus& bus,
                                                           core::Logging& logging,
                                                           core::MetricsRegistry& metrics) {
  auto store = std::make_unique<detail::SqliteStoreImpl>(options, clock, bus, logging, metrics);
  OUTPOST_RETURN_IF_ERROR(store->open());
  return std::unique_ptr<SqliteStore>(std::move(store));
}

}  // namespace outpost::metadb
