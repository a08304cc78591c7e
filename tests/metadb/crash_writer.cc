// The child of the crash test: writes in a loop, keeping several batches in flight, and prints the
// key of each batch whose completion arrived (so it is durable) on stdout, one line each, until it
// is killed.
//   metadb_crash_writer <db path> <key prefix>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/sqlite_store.h"

using namespace outpost;

namespace {

void report(const std::string& line) {
  // One write(2) per line, no stdio buffer: what the parent reads was really reported.
  std::string text = line + "\n";
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(STDOUT_FILENO, text.data() + off, text.size() - off);
    if (n <= 0) _exit(3);
    off += static_cast<size_t>(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <db path> <key prefix>\n", argv[0]);
    return 2;
  }
  core::SystemClock clock;
  core::Bus bus;
  core::Logging logging({core::LogLevel::kWarn, false, ""});
  core::MetricsRegistry metrics;
  core::EventLoop loop("writer", clock);
  metadb::StoreOptions options;
  options.path = argv[1];
  auto opened = metadb::openSqliteStore(options, clock, bus, logging, metrics);
  if (!opened.isOk()) {
    std::fprintf(stderr, "open: %s\n", opened.status().toString().c_str());
    return 1;
  }
  auto store = std::move(opened).value();
  const std::string prefix = argv[2];
  const std::string object(2000, 'o');
  std::atomic<int> next{0};

  std::function<void()> writeOne = [&] {
    int n = next++;
    std::string key = "default/pod/" + prefix + "-" + std::to_string(n);
    metadb::WriteBatch batch;
    batch.apply({metadb::ResourceChange::Kind::kUpsert, key, "1", "uid", object, "crash"});
    batch.enqueue({"ack", key, "OK", 0});
    store->write(std::move(batch), loop, [&, key](core::Result<metadb::WriteResult> r) {
      if (!r.isOk()) {
        std::fprintf(stderr, "write %s: %s\n", key.c_str(), r.status().toString().c_str());
        _exit(1);
      }
      report(key);
      writeOne();
    });
  };
  loop.post([&] {
    for (int i = 0; i < 16; ++i) writeOne();
  });
  loop.start();
  // Runs until the parent kills it.
  while (true) ::pause();
}
