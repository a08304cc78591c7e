#include "sqlite.h"

namespace outpost::metadb::sql {

namespace {
core::Code codeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return core::Code::kResourceExhausted;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return core::Code::kDataLoss;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return core::Code::kUnavailable;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return core::Code::kPermissionDenied;
    case SQLITE_CONSTRAINT:
      return core::Code::kFailedPrecondition;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
      return core::Code::kInvalidArgument;
    case SQLITE_INTERRUPT:
      return core::Code::kCancelled;
    default:
      return core::Code::kInternal;
  }
}
}  // namespace

core::Status error(int rc, sqlite3* db, std::string_view what) {
  std::string message(what);
  message += ": ";
  // The connection's message is more precise, but only when it describes this very error.
  if (db != nullptr && sqlite3_extended_errcode(db) == rc) {
    message += sqlite3_errmsg(db);
  } else {
    message += sqlite3_errstr(rc);
  }
  message += " (sqlite " + std::to_string(rc) + ")";
  return {codeFor(rc), std::move(message)};
}

core::Result<bool> Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return error(rc, sqlite3_db_handle(stmt_), sqlite3_sql(stmt_));
}

core::Status Statement::run() {
  while (true) {
    OUTPOST_ASSIGN_OR_RETURN(bool row, step());
    if (!row) return core::okStatus();
  }
}

std::string Statement::text(int col) const {
  const auto* p = sqlite3_column_blob(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

core::Result<Connection> Connection::open(const std::string& path, int flags,
                                          std::chrono::milliseconds busyTimeout) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Connection conn(db);  // closes `db` on every path, including a failed open
  if (rc != SQLITE_OK) return error(rc, db, "opening " + path);
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(busyTimeout.count()));
  return conn;
}

core::Status Connection::exec(std::string_view sql) {
  std::string text(sql);
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return error(rc, db_, text);
  return core::okStatus();
}

core::Result<Statement> Connection::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return error(rc, db_, sql);
  return Statement(stmt);
}

core::Result<int64_t> Connection::queryInt(std::string_view sql) {
  OUTPOST_ASSIGN_OR_RETURN(Statement s, prepare(sql));
  OUTPOST_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return core::internalError(std::string(sql) + ": returned no row");
  return s.int64(0);
}

core::Result<std::string> Connection::queryText(std::string_view sql) {
  OUTPOST_ASSIGN_OR_RETURN(Statement s, prepare(sql));
  OUTPOST_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return core::internalError(std::string(sql) + ": returned no row");
  return s.text(0);
}

void Connection::close() {
  if (db_ != nullptr) {
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

}  // namespace outpost::metadb::sql
