// Crash safety: a writer killed at random moments loses nothing it reported as stored.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "store_fixture.h"

using namespace outpost;
using namespace outpost::metadb;
using namespace outpost::metadb::test;

namespace {

// Starts the writer with its stdout on a pipe; returns the pid and the pipe's read end.
std::pair<pid_t, int> spawnWriter(const std::string& db, const std::string& prefix) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    const char* argv[] = {OUTPOST_CRASH_WRITER, db.c_str(), prefix.c_str(), nullptr};
    ::execv(argv[0], const_cast<char* const*>(argv));
    _exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Reads complete lines from `fd` into `lines` until `enough` lines or end of file; returns false at
// EOF.
bool readLines(int fd, std::string& buffer, std::vector<std::string>& lines, size_t enough) {
  char chunk[4096];
  while (lines.size() < enough) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buffer.find('\n')) != std::string::npos) {
      lines.push_back(buffer.substr(0, nl));
      buffer.erase(0, nl + 1);
    }
  }
  return true;
}

std::string integrityCheck(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) == SQLITE_OK);
  std::string result = sqlite3_step(stmt) == SQLITE_ROW
                           ? reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))
                           : "no result";
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

}  // namespace

TEST_CASE("a writer killed at random moments never loses a write it was told was stored") {
  StoreFixture f;
  std::filesystem::create_directories(std::filesystem::path(f.options.path).parent_path());
  std::mt19937 rng(std::random_device{}());
  constexpr int kKills = 50;
  std::vector<std::string> reported;
  for (int round = 0; round < kKills; ++round) {
    auto [pid, fd] = spawnWriter(f.options.path, "r" + std::to_string(round));
    std::string buffer;
    std::vector<std::string> lines;
    // Kill after a random number of reported keys plus a random sub-millisecond delay, so the kill
    // lands anywhere in a commit (the delay is the randomness of the test, not a synchronisation).
    size_t target = std::uniform_int_distribution<size_t>(1, 40)(rng);
    bool alive = readLines(fd, buffer, lines, target);
    if (alive) {
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(rng)));
    }
    ::kill(pid, SIGKILL);
    readLines(fd, buffer, lines, SIZE_MAX);  // to EOF: what the child wrote before it died
    ::close(fd);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE_MESSAGE(alive, "the writer exited by itself in round ", round);
    REQUIRE(WIFSIGNALED(status));
    reported.insert(reported.end(), lines.begin(), lines.end());

    REQUIRE(integrityCheck(f.options.path) == "ok");
    f.open();
    auto reader = f.reader();
    for (const auto& key : lines) {
      auto got = reader->get(key);
      REQUIRE(got.isOk());
      REQUIRE_MESSAGE(got->has_value(), "round ", round, ": reported key ", key, " is missing");
    }
    reader.reset();
    f.store.reset();
  }
  // Finally every key reported in any round is still there.
  f.open();
  auto reader = f.reader();
  size_t missing = 0;
  for (const auto& key : reported) missing += reader->get(key)->has_value() ? 0 : 1;
  CHECK(missing == 0);
  MESSAGE(kKills, " kills, ", reported.size(), " reported keys, all present");
}
