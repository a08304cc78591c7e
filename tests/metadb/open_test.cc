// Opening the store: file modes, migrations, newer files, corrupt files, a full disk.

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "store_fixture.h"

using namespace outpost;
using namespace outpost::metadb;
using namespace outpost::metadb::test;
namespace fs = std::filesystem;

namespace {

// Runs SQL on a file with SQLite directly (the store is not involved); returns the first column of
// the first row, if any.
std::string rawSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  std::string first;
  char* err = nullptr;
  int rc = sqlite3_exec(
      db, sql.c_str(),
      [](void* out, int n, char** values, char**) {
        auto* s = static_cast<std::string*>(out);
        if (s->empty() && n > 0 && values[0]) *s = values[0];
        return 0;
      },
      &first, &err);
  std::string message = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, message);
  return first;
}

unsigned modeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

void overwrite(const std::string& path, std::streamoff at, size_t n) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(file.good());
  file.seekp(at);
  std::string garbage(n, '\0');
  for (size_t i = 0; i < n; ++i) garbage[i] = static_cast<char>((i * 131 + 17) % 251);
  file.write(garbage.data(), static_cast<std::streamsize>(n));
}

}  // namespace

TEST_CASE("the state dir is made private and the store files are owner-only whatever the umask") {
  StoreFixture f;
  mode_t old = ::umask(0);
  f.open();
  ::umask(old);
  f.writeOk(WriteBatch().apply(upsert("default/pod/web", "1")));
  auto reader = f.reader();
  CHECK(modeOf(fs::path(f.options.path).parent_path()) == 0700);
  CHECK(modeOf(f.options.path) == 0600);
  CHECK(modeOf(f.options.path + "-wal") == 0600);
  CHECK(modeOf(f.options.path + "-shm") == 0600);
}

TEST_CASE("a new store is in WAL mode at the current schema version") {
  StoreFixture f;
  f.open();
  f.store.reset();
  CHECK(rawSql(f.options.path, "PRAGMA journal_mode") == "wal");
  CHECK(rawSql(f.options.path, "PRAGMA user_version") == std::to_string(storeSchemaVersion()));
  CHECK(storeSchemaVersion() >= 3);
}

TEST_CASE("a version 1 store is migrated to the current schema and keeps its data") {
  StoreFixture f;
  fs::create_directories(fs::path(f.options.path).parent_path());
  rawSql(f.options.path, outpost::test::readFile(OUTPOST_METADB_FIXTURES "/v1.sql"));
  REQUIRE(rawSql(f.options.path, "PRAGMA user_version") == "1");

  f.open();
  auto reader = f.reader();
  auto web = *reader->get("default/pod/web");
  REQUIRE(web.has_value());
  CHECK(web->version == 1200);
  CHECK(web->uid == "uid-web");
  CHECK(web->object == R"({"metadata":{"name":"web"}})");
  CHECK(reader->list("configmap")->size() == 1);
  auto due = *reader->outboxDue(10);
  REQUIRE(due.size() == 1);
  CHECK(due[0].payload == "Running");
  CHECK(due[0].attempts == 2);
  CHECK(reader->outboxStats()->rows == 1);
  auto twin = *reader->twin("default/thermostat");
  REQUIRE(twin.size() == 1);
  CHECK(twin[0].expected->value == "21");
  CHECK(twin[0].expectedVersion.cloud == 4);
  CHECK(*reader->getKv("node.name") == "edge-1");

  // What version 2 added works on the migrated data: a delete leaves a tombstone.
  f.writeOk(WriteBatch().apply(remove("default/pod/web", "1201")));
  CHECK(f.writeOk(WriteBatch().apply(upsert("default/pod/web", "1200"))).changes ==
        std::vector{ApplyOutcome::kStale});
  f.store.reset();
  CHECK(rawSql(f.options.path, "PRAGMA user_version") == std::to_string(storeSchemaVersion()));
}

TEST_CASE("a version 2 store gains the index that finds the outbox's next attempt") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/web", "1")));
  f.store.reset();
  // What version 2 left: the same tables without 0003's index.
  rawSql(f.options.path, "DROP INDEX outbox_next_attempt; PRAGMA user_version = 2");
  const std::string plan = "EXPLAIN QUERY PLAN SELECT min(next_attempt_ms) FROM outbox";
  auto usesIndex = [&] {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(f.options.path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, plan.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::string detail;
    while (sqlite3_step(st) == SQLITE_ROW) {
      detail += reinterpret_cast<const char*>(sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return detail.find("outbox_next_attempt") != std::string::npos;
  };
  CHECK_FALSE(usesIndex());

  f.open();
  CHECK(*f.reader()->get("default/pod/web"));
  f.store.reset();
  CHECK(rawSql(f.options.path, "PRAGMA user_version") == std::to_string(storeSchemaVersion()));
  CHECK(usesIndex());
}

TEST_CASE("a store written by a newer version is refused with both versions named, and kept") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/web", "1")));
  f.store.reset();
  rawSql(f.options.path, "PRAGMA user_version = 99");

  auto r = f.tryOpen();
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == core::Code::kFailedPrecondition);
  CHECK(r.status().message().find("99") != std::string::npos);
  CHECK(r.status().message().find("version " + std::to_string(storeSchemaVersion())) !=
        std::string::npos);
  CHECK(rawSql(f.options.path, "SELECT count(*) FROM resources") == "1");
  for (const auto& e : fs::directory_iterator(fs::path(f.options.path).parent_path())) {
    CHECK(e.path().filename().string().find("corrupt") == std::string::npos);
  }
}

TEST_CASE("a corrupt store is moved aside, a fresh one starts, and a full resync is asked for") {
  StoreFixture f;
  f.open();
  WriteBatch batch;
  for (int i = 0; i < 200; ++i) {
    batch.apply(upsert("default/pod/p" + std::to_string(i), "1", std::string(2000, 'x')));
  }
  f.writeOk(std::move(batch));
  f.store.reset();
  const auto size = fs::file_size(f.options.path);
  REQUIRE(size > 100 * 1024);

  SUBCASE("garbage over the header") { overwrite(f.options.path, 0, 4096); }
  SUBCASE("garbage over pages in the middle") {
    overwrite(f.options.path, static_cast<std::streamoff>(size / 2), 16384);
  }

  f.open();
  auto reader = f.reader();
  CHECK(*reader->getKv(kKvNeedsFullResync) == "1");
  CHECK(reader->list("pod")->empty());
  f.writeOk(WriteBatch().apply(upsert("default/pod/new", "1")));

  std::vector<std::string> aside;
  for (const auto& e : fs::directory_iterator(fs::path(f.options.path).parent_path())) {
    std::string name = e.path().filename().string();
    if (name.find("outpost.db.corrupt-") == 0) aside.push_back(name);
  }
  REQUIRE(aside.size() == 1);
  CHECK(fs::file_size(fs::path(f.options.path).parent_path() / aside[0]) == size);
  f.logging.flush();
  std::string log = outpost::test::readFile(f.logPath);
  CHECK(log.find("E [metadb] STORE CORRUPT") != std::string::npos);
  CHECK(log.find(aside[0]) != std::string::npos);
  // One line, however many problems quick_check found (it reports up to 100, a line each).
  auto corrupt = log.find("STORE CORRUPT");
  std::string entry = log.substr(corrupt, log.find(aside[0], corrupt) - corrupt);
  CHECK_MESSAGE(entry.find('\n') == std::string::npos, entry);

  // The next start finds a healthy store: no second quarantine, the mark stays until someone clears
  // it.
  f.reopen();
  CHECK(*f.reader()->getKv(kKvNeedsFullResync) == "1");
  CHECK(f.reader()->get("default/pod/new")->has_value());
}

TEST_CASE(
    "when the disk is full writes fail as resource exhausted, reads go on, and writes resume") {
  StoreFixture f;
  f.options.maxPageCount = 64;  // 256 KiB of 4 KiB pages
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/first", "1", std::string(2000, 'a'))));
  auto reader = f.reader();

  core::Status full;
  int stored = 0;
  for (int i = 0; i < 1000 && full.isOk(); ++i) {
    auto r =
        f.write(WriteBatch()
                    .apply(upsert("default/pod/p" + std::to_string(i), "1", std::string(2000, 'b')))
                    .enqueue({"s", "k" + std::to_string(i), std::string(500, 'c'), 0}));
    if (r.isOk()) {
      ++stored;
    } else {
      full = r.status();
    }
  }
  REQUIRE_FALSE(full.isOk());
  CHECK(full.code() == core::Code::kResourceExhausted);
  CHECK(stored > 10);

  // Reads go on, and everything committed before is there.
  auto pods = reader->list("pod");
  REQUIRE(pods.isOk());
  CHECK(pods->size() == static_cast<size_t>(stored) + 1);
  CHECK(reader->outboxStats()->rows == stored);
  CHECK(f.metric("outpost_store_write_errors_total{code=\"RESOURCE_EXHAUSTED\"}") >= 1);

  // Small writes that need no new page may still fit; a big one does not.
  auto big = f.write(WriteBatch().apply(upsert("default/pod/big", "1", std::string(100000, 'd'))));
  CHECK(big.status().code() == core::Code::kResourceExhausted);

  REQUIRE(f.store->setMaxPageCount(100000).isOk());  // space returns
  f.writeOk(WriteBatch().apply(upsert("default/pod/big", "1", std::string(100000, 'd'))));
  CHECK(reader->list("pod")->size() == static_cast<size_t>(stored) + 2);
  f.logging.flush();
  std::string log = outpost::test::readFile(f.logPath);
  CHECK(log.find("writes are failing: RESOURCE_EXHAUSTED") != std::string::npos);
  CHECK(log.find("writes succeed again") != std::string::npos);
}

TEST_CASE(
    "on a real filesystem that fills up, writes fail cleanly and resume after space returns") {
  StoreFixture f;
  fs::path mnt = f.dir / "small";
  fs::create_directories(mnt);
  if (::mount("outpost-test", mnt.c_str(), "tmpfs", 0, "size=1m,mode=0700") != 0) {
    MESSAGE("skipped: cannot mount a small tmpfs here (", std::strerror(errno),
            "); the page-limit test covers the same paths");
    return;
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  f.options.path = (mnt / "outpost.db").string();
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/first", "1", std::string(2000, 'a'))));
  fs::path filler = mnt / "filler";
  {
    // Another tenant of the disk takes what is left.
    std::ofstream out(filler, std::ios::binary);
    std::string chunk(4096, 'f');
    for (int i = 0; i < 512 && out.good(); ++i) out.write(chunk.data(), chunk.size());
  }
  core::Status full;
  int stored = 0;
  for (int i = 0; i < 2000 && full.isOk(); ++i) {
    auto r = f.write(WriteBatch().apply(
        upsert("default/pod/p" + std::to_string(i), "1", std::string(2000, 'b'))));
    if (r.isOk()) {
      ++stored;
    } else {
      full = r.status();
    }
  }
  CHECK(full.code() == core::Code::kResourceExhausted);
  auto reader = f.reader();
  CHECK(reader->list("pod")->size() == static_cast<size_t>(stored) + 1);
  fs::remove(filler);
  f.writeOk(WriteBatch().apply(upsert("default/pod/after", "1", std::string(2000, 'c'))));
  CHECK(reader->list("pod")->size() == static_cast<size_t>(stored) + 2);
}

// Each module holds its own reader. With SQLite's default page cache (2 MiB per connection) a store
// of a few MB would sit in the agent's memory once per reader; the cache is bounded instead.
TEST_CASE(
    "a reader's page cache stays bounded however large the store, and the bound is an option") {
  StoreFixture f;
  f.open();
  const std::string object(2000, 'x');
  for (int b = 0; b < 6; ++b) {
    WriteBatch batch;
    for (int i = 0; i < 250; ++i) {
      batch.apply(upsert("default/pod/p" + std::to_string(b * 250 + i), "1", object));
    }
    f.writeOk(std::move(batch));
  }
  // SQLite's own count of the memory it holds, before a reader and after it read 3 MB of pods.
  auto readAllCost = [&](int cacheKiB) {
    f.options.readerCacheKiB = cacheKiB;
    f.store.reset();
    f.open();
    int64_t before = sqlite3_memory_used();
    auto reader = f.reader();
    auto pods = reader->list("pod");
    REQUIRE(pods.isOk());
    CHECK(pods->size() == 1500);
    return sqlite3_memory_used() - before;
  };
  int64_t bounded = readAllCost(StoreOptions().readerCacheKiB);
  int64_t larger = readAllCost(4096);
  MESSAGE("SQLite memory of a reader after reading 3 MB: ", bounded, " bytes with the default, ",
          larger, " with a 4 MiB cache");
  CHECK(bounded < 512 * 1024);
  CHECK(larger > 2 * 1024 * 1024);
}

TEST_CASE("a page cache size that is not positive is refused with the option named") {
  StoreFixture f;
  f.options.readerCacheKiB = 0;
  auto r = f.tryOpen();
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == core::Code::kInvalidArgument);
  CHECK(r.status().message().find("page cache") != std::string::npos);
}

TEST_CASE("a store whose file was removed or replaced while open refuses writes with DATA_LOSS") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/before", "1")));
  const fs::path dir = fs::path(f.options.path).parent_path();
  std::string expected;
  SUBCASE("the state directory is removed") {
    fs::remove_all(dir);
    expected = "is gone";
  }
  SUBCASE("the file is replaced by another") {
    fs::rename(f.options.path, f.options.path + ".old");
    outpost::test::writeFile(f.options.path, "");
    expected = "was replaced";
  }
  // SQLite would go on writing to the unlinked file and say OK: every such write would be lost.
  auto r = f.write(WriteBatch().apply(upsert("default/pod/after", "1")));
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == core::Code::kDataLoss);
  CHECK(r.status().message().find(f.options.path) != std::string::npos);
  CHECK(r.status().message().find(expected) != std::string::npos);
  CHECK_FALSE(f.write(WriteBatch().putKv("k", "v")).isOk());
  f.logging.flush();
  std::string log = outpost::test::readFile(f.logPath);
  size_t lines = 0;
  for (size_t at = log.find("writes are failing"); at != std::string::npos;
       at = log.find("writes are failing", at + 1))
    ++lines;
  CHECK(lines == 1);  // said once, not per write
}
