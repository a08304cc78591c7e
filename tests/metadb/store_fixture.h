#pragma once
// A store on a fresh file in a temporary directory, with a manual clock and a caller loop, for
// tests.

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/test_util.h"

namespace outpost::metadb::test {

inline ResourceChange upsert(std::string key, std::string version, std::string object = "{}") {
  ResourceChange c;
  c.key = std::move(key);
  c.version = std::move(version);
  c.object = std::move(object);
  c.origin = "cloud";
  return c;
}

inline ResourceChange remove(std::string key, std::string version) {
  ResourceChange c;
  c.kind = ResourceChange::Kind::kDelete;
  c.key = std::move(key);
  c.version = std::move(version);
  c.origin = "cloud";
  return c;
}

struct StoreFixture {
  outpost::test::TempDir dir;
  core::ManualClock clock;
  core::Bus bus;
  std::string logPath = (dir / "test.log").string();
  core::Logging logging{{core::LogLevel::kDebug, false, logPath}};
  core::MetricsRegistry metrics;
  core::EventLoop caller{"caller", clock};  // where completions are delivered
  StoreOptions options;
  std::unique_ptr<SqliteStore> store;

  StoreFixture() {
    options.path = (dir / "state" / "outpost.db").string();
    caller.start();
  }
  ~StoreFixture() {
    store.reset();
    caller.stop();
  }

  core::Result<std::unique_ptr<SqliteStore>> tryOpen() {
    return openSqliteStore(options, clock, bus, logging, metrics);
  }
  void open() {
    auto s = tryOpen();
    REQUIRE_MESSAGE(s.isOk(), s.status().toString());
    store = std::move(s).value();
  }
  void reopen() {
    store.reset();
    open();
  }

  // Queues a batch; the future is set on the caller loop when the store completes it.
  std::future<core::Result<WriteResult>> writeAsync(WriteBatch batch) {
    auto promise = std::make_shared<std::promise<core::Result<WriteResult>>>();
    auto future = promise->get_future();
    store->write(std::move(batch), caller,
                 [promise](core::Result<WriteResult> r) { promise->set_value(std::move(r)); });
    return future;
  }
  static core::Result<WriteResult> wait(std::future<core::Result<WriteResult>>& f) {
    REQUIRE(f.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    return f.get();
  }
  core::Result<WriteResult> write(WriteBatch batch) {
    auto f = writeAsync(std::move(batch));
    return wait(f);
  }
  WriteResult writeOk(WriteBatch batch) {
    auto r = write(std::move(batch));
    REQUIRE_MESSAGE(r.isOk(), r.status().toString());
    return std::move(r).value();
  }
  StoreReaderPtr reader() {
    auto r = store->openReader();
    REQUIRE_MESSAGE(r.isOk(), r.status().toString());
    return std::move(r).value();
  }
  // The value of a metric series in the registry's text output (0 when absent).
  double metric(const std::string& series) const {
    std::string text = metrics.render();
    auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return 0;
    return std::stod(text.substr(at + series.size() + 2));
  }
};

}  // namespace outpost::metadb::test
