#include "open.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "migrations.h"

namespace outpost::metadb::detail {

namespace fs = std::filesystem;
using core::Result;
using core::Status;

namespace {

Status errnoStatus(const std::string& what, int err) {
  core::Code code = err == EACCES || err == EPERM ? core::Code::kPermissionDenied
                    : err == ENOSPC               ? core::Code::kResourceExhausted
                                                  : core::Code::kUnavailable;
  return {code, what + ": " + std::strerror(err)};
}

// Makes missing directories with mode 0700: the state dir holds the node's credentials too.
Status ensureDir(const fs::path& dir) {
  if (dir.empty()) return core::okStatus();
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return core::okStatus();
  OUTPOST_RETURN_IF_ERROR(ensureDir(dir.parent_path()));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return errnoStatus("creating state directory " + dir.string(), errno);
  }
  return core::okStatus();
}

// Creates the file ourselves so it is 0600 from its first byte; SQLite gives -wal and -shm the same
// mode.
Status ensureFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return errnoStatus("creating " + path, errno);
  int rc = ::fchmod(fd, 0600);
  int err = errno;
  ::close(fd);
  if (rc != 0) return errnoStatus("setting the mode of " + path, err);
  return core::okStatus();
}

Status fsyncDir(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errnoStatus("opening " + dir.string(), errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return errnoStatus("syncing " + dir.string(), err);
  return core::okStatus();
}

Status limitCache(sql::Connection& db, int kib) {
  return db.exec("PRAGMA cache_size = -" + std::to_string(kib));
}

// quick_check's report (one row, a line per problem, up to 100) in a few words for one log line:
// the first two problems and how many more.
std::string summarizeCheck(const std::string& report) {
  std::vector<std::string> problems;
  size_t start = 0;
  while (start <= report.size()) {
    size_t end = report.find('\n', start);
    std::string line = report.substr(start, end == std::string::npos ? end : end - start);
    if (!line.empty() && line.rfind("***", 0) != 0) problems.push_back(line);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  std::string out;
  for (size_t i = 0; i < problems.size() && i < 2; ++i) out += (i ? "; " : "") + problems[i];
  if (problems.size() > 2) out += "; and " + std::to_string(problems.size() - 2) + " more";
  return out.empty() ? report : out;
}

// Everything that reads the file's content; a kDataLoss from here means the file is corrupt.
Result<sql::Connection> tryOpen(const StoreOptions& options) {
  OUTPOST_RETURN_IF_ERROR(ensureFile(options.path));
  OUTPOST_ASSIGN_OR_RETURN(
      sql::Connection db,
      sql::Connection::open(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            options.busyTimeout));
  OUTPOST_ASSIGN_OR_RETURN(std::string mode, db.queryText("PRAGMA journal_mode = WAL"));
  if (mode != "wal")
    return core::unavailable("could not switch " + options.path + " to WAL: " + mode);
  OUTPOST_RETURN_IF_ERROR(db.exec("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON"));
  OUTPOST_RETURN_IF_ERROR(limitCache(db, options.writerCacheKiB));
  if (options.maxPageCount) {
    OUTPOST_RETURN_IF_ERROR(
        db.queryInt("PRAGMA max_page_count = " + std::to_string(*options.maxPageCount)));
  }
  OUTPOST_ASSIGN_OR_RETURN(std::string check, db.queryText("PRAGMA quick_check"));
  if (check != "ok")
    return core::dataLoss("quick_check of " + options.path + ": " + summarizeCheck(check));
  OUTPOST_ASSIGN_OR_RETURN(int found, migrate(db, options.path));
  (void)found;
  OUTPOST_RETURN_IF_ERROR(makePrivate(options.path));
  return db;
}

std::string stamp(core::WallTime now) {
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// Renames the file and its -wal and -shm to "<path>.corrupt-<time>[.n]" and returns the new name.
Result<std::string> moveAside(const std::string& path, core::WallTime now) {
  std::string aside = path + ".corrupt-" + stamp(now);
  std::error_code ec;
  for (int n = 1; fs::exists(aside, ec); ++n) {
    aside = path + ".corrupt-" + stamp(now) + "." + std::to_string(n);
  }
  for (const char* suffix : {"-wal", "-shm", ""}) {
    std::string from = path + suffix;
    if (!fs::exists(from, ec)) continue;
    if (::rename(from.c_str(), (aside + suffix).c_str()) != 0) {
      return errnoStatus("moving " + from + " aside", errno);
    }
  }
  OUTPOST_RETURN_IF_ERROR(fsyncDir(fs::path(path).parent_path()));
  return aside;
}

}  // namespace

Status makePrivate(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::string file = path + suffix;
    if (::chmod(file.c_str(), 0600) != 0 && errno != ENOENT) {
      return errnoStatus("setting the mode of " + file, errno);
    }
  }
  return core::okStatus();
}

Result<OpenedWriter> openWriter(const StoreOptions& options, core::WallTime now,
                                const core::Logger& log) {
  if (options.path.empty()) return core::invalidArgument("store path is empty");
  if (options.writerCacheKiB <= 0 || options.readerCacheKiB <= 0) {
    return core::invalidArgument("store page cache sizes must be positive (KiB)");
  }
  const fs::path dir = fs::path(options.path).parent_path();
  OUTPOST_RETURN_IF_ERROR(ensureDir(dir));
  std::error_code ec;
  const bool existed = fs::exists(options.path, ec);

  auto first = tryOpen(options);
  if (first.isOk()) {
    if (!existed) OUTPOST_RETURN_IF_ERROR(fsyncDir(dir));
    return OpenedWriter{std::move(first).value(), {}};
  }
  if (first.status().code() != core::Code::kDataLoss) return first.status();

  // A corrupt file: keep it for inspection and start fresh rather than fail every start.
  OUTPOST_ASSIGN_OR_RETURN(std::string aside, moveAside(options.path, now));
  log.error("STORE CORRUPT: ", first.status().message(), "; moved it to ", aside,
            " and started an empty store. Every desired object is gone until the cloud resends it: "
            "marked needs_full_resync=1");
  OUTPOST_ASSIGN_OR_RETURN(sql::Connection db, tryOpen(options));
  OUTPOST_RETURN_IF_ERROR(
      db.exec("INSERT OR REPLACE INTO kv (key, value) VALUES ('needs_full_resync', '1')"));
  OUTPOST_RETURN_IF_ERROR(fsyncDir(dir));
  return OpenedWriter{std::move(db), aside};
}

Result<sql::Connection> openReadOnly(const StoreOptions& options) {
  OUTPOST_ASSIGN_OR_RETURN(
      sql::Connection db,
      sql::Connection::open(options.path, SQLITE_OPEN_READONLY, options.busyTimeout));
  OUTPOST_RETURN_IF_ERROR(limitCache(db, options.readerCacheKiB));
  return db;
}

}  // namespace outpost::metadb::detail
