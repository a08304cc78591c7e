// metadb benchmark: durable rows/s of 2 KB objects through the Store API versus raw SQLite with the
// same pragmas (WAL, synchronous=FULL) and the same table, one row per transaction and batched, in
// one run.
//   outpost_bench_metadb [--out file.json] [--reps 7] [--single-rows 200] [--batched-rows 5000]
//                        [--dir /tmp] [--only <part of a scenario name>]

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "bench_util.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/sqlite_store.h"

using namespace outpost;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

using bench::cpuModel;
using bench::median;
using bench::summary;

struct Params {
  std::string out;
  int reps = 7;
  int singleRows = 200;
  int batchedRows = 5000;
  int batch = 256;  // rows per transaction of the raw batched limit = the store's maxBatch
  fs::path dir = fs::temp_directory_path();
  std::string only;  // run only the scenarios whose name contains this (for investigations)
};

const std::string kObject = [] {
  std::string o = R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":")";
  o.append(2048 - o.size() - 3, 'p');
  return o + "\"}";
}();

std::string key(int i) { return "default/pod/bench-" + std::to_string(i); }

// A failure of the bench itself. die() throws it so that main() unwinds and the scratch databases
// are removed (std::exit left them behind).
struct BenchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void die(const std::string& what) { throw BenchFailure(what); }

// A scratch database file, removed with its -wal and -shm.
struct Scratch {
  std::string path;
  explicit Scratch(const fs::path& dir, const std::string& name)
      : path(
            (dir / ("outpost-bench-" + std::to_string(::getpid()) + "-" + name + ".db")).string()) {
    clean();
  }
  ~Scratch() { clean(); }
  void clean() const {
    for (const char* s : {"", "-wal", "-shm"}) fs::remove(path + s);
  }
};

// ---- the limit: SQLite alone
// -----------------------------------------------------------------------

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    die(std::string(what) + ": " + sqlite3_errmsg(db));
  }
}

// Inserts `rows` rows into the store's resources table layout, `perTx` rows per transaction.
double rawSqlite(const fs::path& dir, int rows, int perTx) {
  Scratch file(dir, "raw");
  sqlite3* db = nullptr;
  check(sqlite3_open(file.path.c_str(), &db), db, "open");
  check(sqlite3_exec(db,
                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                     "CREATE TABLE resources (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
                     " namespace TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,"
                     " uid TEXT NOT NULL, version INTEGER NOT NULL, object TEXT NOT NULL,"
                     " origin TEXT NOT NULL, updated_ms INTEGER NOT NULL, deleted_ms INTEGER);"
                     "CREATE INDEX resources_by_type ON resources (type, namespace, name);",
                     nullptr, nullptr, nullptr),
        db, "schema");
  sqlite3_stmt* ins = nullptr;
  check(
      sqlite3_prepare_v2(db,
                         "INSERT INTO resources (key, namespace, type, name, uid, version, object,"
                         " origin, updated_ms) VALUES (?1, 'default', 'pod', ?2, 'uid', ?3, ?4,"
                         " 'cloud', ?5)",
                         -1, &ins, nullptr),
      db, "prepare");
  auto start = Clock::now();
  for (int i = 0; i < rows;) {
    check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
    for (int j = 0; j < perTx && i < rows; ++j, ++i) {
      std::string k = key(i);
      sqlite3_bind_text(ins, 1, k.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(ins, 2, k.c_str() + 12, -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(ins, 3, i + 1);
      sqlite3_bind_text(ins, 4, kObject.data(), static_cast<int>(kObject.size()), SQLITE_STATIC);
      sqlite3_bind_int64(ins, 5, 1700000000000);
      check(sqlite3_step(ins), db, "insert");
      sqlite3_reset(ins);
    }
    check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  sqlite3_finalize(ins);
  sqlite3_close(db);
  return rows / seconds;
}

// ---- ours: the Store API
// ---------------------------------------------------------------------------

enum class Mode {
  kOneAtATime,  // one caller, each write waits for the previous one's completion
  kConcurrent,  // every write queued at once, one row each: group commit gathers them
  kBatches,     // WriteBatches of `batch` rows, queued at once
};

double throughStore(const fs::path& dir, int rows, Mode mode, int batch, core::Duration window) {
  Scratch file(dir, "ours");
  // Declared first, so they outlive the completions the store and the caller's loop may still run
  // while they close (when die() unwinds).
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int wanted = 0;      // the waiter is woken once this many rows completed, not at every completion
  std::string failed;  // a write's error, seen on the store's thread and reported by the waiter
  core::SystemClock clock;
  core::Bus bus;
  core::Logging logging({core::LogLevel::kWarn, false, ""});
  core::MetricsRegistry metrics;
  core::EventLoop caller("bench", clock);
  caller.start();
  metadb::StoreOptions options;
  options.path = file.path;
  options.commitWindow = window;
  auto opened = metadb::openSqliteStore(options, clock, bus, logging, metrics);
  if (!opened.isOk()) die(opened.status().toString());
  auto store = std::move(opened).value();

  auto change = [](int i) {
    return metadb::ResourceChange{metadb::ResourceChange::Kind::kUpsert,
                                  key(i),
                                  std::to_string(i + 1),
                                  "uid",
                                  kObject,
                                  "cloud"};
  };
  auto completed = [&](int n) {
    return [&, n](core::Result<metadb::WriteResult> r) {
      std::lock_guard l(mu);
      if (!r.isOk() && failed.empty()) failed = r.status().toString();
      done += n;
      if (done >= wanted || !failed.empty()) cv.notify_all();
    };
  };
  auto waitFor = [&](int n) {
    std::unique_lock l(mu);
    wanted = n;
    cv.wait(l, [&] { return done >= n || !failed.empty(); });
    if (!failed.empty()) die(failed);
  };

  auto start = Clock::now();
  if (mode == Mode::kOneAtATime) {
    for (int i = 0; i < rows; ++i) {
      store->write(metadb::WriteBatch().apply(change(i)), caller, completed(1));
      waitFor(i + 1);
    }
  } else {
    int per = mode == Mode::kBatches ? batch : 1;
    for (int i = 0; i < rows; i += per) {
      metadb::WriteBatch b;
      int n = std::min(per, rows - i);
      for (int j = 0; j < n; ++j) b.apply(change(i + j));
      store->write(std::move(b), caller, completed(n));
    }
    waitFor(rows);
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  store.reset();
  caller.stop();
  // Where the time went: inside commits (SQLite and fsync) or around them (queueing, completions).
  auto hist = metrics.histogram("outpost_store_commit_duration_seconds", "", core::latencyBuckets())
                  .snapshot();
  std::fprintf(stderr, "  %d rows: %llu commits, %.1f%% of %.3f s inside commits\n", rows,
               static_cast<unsigned long long>(hist.count), 100 * hist.sum / seconds, seconds);
  return rows / seconds;
}

// ---- statistics and output
// -------------------------------------------------------------------------

Params parse(int argc, char** argv) {
  Params p;
  std::string dir = p.dir.string();
  CLI::App app{"B3's storage half: durable rows/s through metadb versus raw SQLite",
               "outpost_bench_metadb"};
  app.option_defaults()->always_capture_default();
  app.add_option("--out", p.out, "write the results as JSON to this file");
  app.add_option("--reps", p.reps, "repetitions of each scenario")->check(bench::atLeast(5));
  app.add_option("--single-rows", p.singleRows, "rows written one per commit");
  app.add_option("--batched-rows", p.batchedRows, "rows written in batches");
  app.add_option("--dir", dir, "where the scratch databases go");
  app.add_option("--only", p.only, "run only the scenarios whose name contains this");
  bench::parseFlags(app, argc, argv);
  p.dir = dir;
  return p;
}

}  // namespace

int run(int argc, char** argv) {
  Params p = parse(argc, argv);
  using namespace std::chrono_literals;
  const core::Duration defaultWindow = metadb::StoreOptions{}.commitWindow;

  // name -> (rows per sample, run). Each repetition runs every scenario once, interleaved, so a
  // slow moment on this shared machine hits ours and the limit alike.
  struct Scenario {
    std::string name;
    std::function<double()> run;
  };
  std::vector<Scenario> scenarios = {
      {"raw_single", [&] { return rawSqlite(p.dir, p.singleRows, 1); }},
      {"ours_single",
       [&] { return throughStore(p.dir, p.singleRows, Mode::kOneAtATime, 1, defaultWindow); }},
      {"ours_single_window0",
       [&] { return throughStore(p.dir, p.singleRows, Mode::kOneAtATime, 1, 0ms); }},
      {"raw_batched", [&] { return rawSqlite(p.dir, p.batchedRows, p.batch); }},
      {"ours_concurrent",
       [&] { return throughStore(p.dir, p.batchedRows, Mode::kConcurrent, 1, defaultWindow); }},
      {"ours_batches",
       [&] { return throughStore(p.dir, p.batchedRows, Mode::kBatches, p.batch, defaultWindow); }},
  };

  std::cout << "machine: " << sysconf(_SC_NPROCESSORS_ONLN) << " cores, " << cpuModel() << "\n"
            << "versions: sqlite " << sqlite3_libversion() << ", outpost schema "
            << metadb::storeSchemaVersion() << ", compiler " << __VERSION__ << "\n"
            << "objects: " << kObject.size() << " bytes; single: " << p.singleRows
            << " rows/sample; batched: " << p.batchedRows << " rows/sample, " << p.batch
            << " per raw transaction; dir " << p.dir.string() << "\n";

  std::map<std::string, std::vector<double>> samples;
  for (int rep = 0; rep < p.reps; ++rep) {
    for (auto& s : scenarios) {
      if (s.name.find(p.only) == std::string::npos) continue;
      double v = s.run();
      samples[s.name].push_back(v);
      std::printf("rep %d %-20s %10.1f rows/s\n", rep + 1, s.name.c_str(), v);
      std::fflush(stdout);
    }
  }

  if (!p.only.empty()) return 0;  // a partial run has no ratios to report

  nlohmann::json out;
  out["benchmark"] = "metadb";
  out["unit"] = "rows/s";
  out["machine"] = {{"nproc", sysconf(_SC_NPROCESSORS_ONLN)}, {"cpu", cpuModel()}};
  out["versions"] = {{"sqlite", sqlite3_libversion()},
                     {"schema", metadb::storeSchemaVersion()},
                     {"compiler", __VERSION__}};
  out["params"] = {
      {"reps", p.reps},
      {"object_bytes", kObject.size()},
      {"single_rows", p.singleRows},
      {"batched_rows", p.batchedRows},
      {"raw_rows_per_transaction", p.batch},
      {"commit_window_ms", std::chrono::duration<double, std::milli>(defaultWindow).count()},
      {"dir", p.dir.string()}};
  for (auto& [name, v] : samples) out["scenarios"][name] = summary(v);

  // ours / limit, from the medians, and per repetition (same rep, side by side) for min and max.
  auto ratio = [&](const std::string& ours, const std::string& limit) {
    std::vector<double> per;
    for (int i = 0; i < p.reps; ++i) per.push_back(samples[ours][i] / samples[limit][i]);
    double r = median(samples[ours]) / median(samples[limit]);
    std::printf("%-20s / %-11s = %.2f (per-rep min %.2f, max %.2f)\n", ours.c_str(), limit.c_str(),
                r, *std::min_element(per.begin(), per.end()),
                *std::max_element(per.begin(), per.end()));
    return nlohmann::json{
        {"ours", ours}, {"limit", limit}, {"ratio_of_medians", r}, {"per_rep", summary(per)}};
  };
  std::cout << "\n";
  for (auto& s : scenarios) {
    auto& v = samples[s.name];
    std::printf("%-20s median %10.1f rows/s (min %.1f, max %.1f)\n", s.name.c_str(), median(v),
                *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  }
  out["ratios"] = {ratio("ours_single", "raw_single"), ratio("ours_single_window0", "raw_single"),
                   ratio("ours_concurrent", "raw_batched"), ratio("ours_batches", "raw_batched")};
  double target = median(samples["ours_concurrent"]) / median(samples["raw_batched"]);
  out["target"] = {
      {"what", "ours_concurrent / raw_batched >= 0.8"}, {"value", target}, {"met", target >= 0.8}};
  std::printf("target ours_concurrent / raw_batched >= 0.8: %.2f %s\n", target,
              target >= 0.8 ? "MET" : "NOT MET");

  if (!p.out.empty()) {
    std::ofstream f(p.out);
    f << out.dump(2) << "\n";
    if (!f) die("cannot write " + p.out);
    std::cout << "wrote " << p.out << "\n";
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // BenchFailure, or a helper that threw
    std::cerr << "bench: " << e.what() << "\n";
    return 1;
  }
}
