#pragma once
// Small RAII wrappers over the sqlite3 C API: a connection, a prepared statement, and error
// mapping.

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "outpost/core/status.h"

namespace outpost::metadb::sql {

// Maps a SQLite result code to a Status: FULL -> kResourceExhausted, CORRUPT/NOTADB -> kDataLoss,
// BUSY/LOCKED/IOERR -> kUnavailable, and so on. `db` (may be null) supplies the detailed message.
core::Status error(int rc, sqlite3* db, std::string_view what);

// A prepared statement. Text and blobs are bound without copying: keep them alive until reset().
class Statement {
 public:
  Statement() = default;
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(Statement&& o) noexcept : stmt_(std::exchange(o.stmt_, nullptr)) {}
  Statement& operator=(Statement&& o) noexcept {
    if (this != &o) {
      sqlite3_finalize(stmt_);
      stmt_ = std::exchange(o.stmt_, nullptr);
    }
    return *this;
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are numbered from 1.
  Statement& bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Statement& bindBlob(int i, std::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Statement& bindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }

  // One step: true when a row is ready, false when the statement is done.
  core::Result<bool> step();
  // Steps to the end, ignoring rows.
  core::Status run();

  // Columns are numbered from 0.
  int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool isNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col) const;

  // Ends the statement's use (releasing its read snapshot) and clears its bindings.
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement when leaving scope, so no statement keeps a read transaction or stale
// bindings.
class Use {
 public:
  explicit Use(Statement& s) : s_(s) {}
  ~Use() { s_.reset(); }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  Statement* operator->() { return &s_; }
  Statement& operator*() { return s_; }

 private:
  Statement& s_;
};

// One database connection, used by one thread.
class Connection {
 public:
  Connection() = default;
  ~Connection() { close(); }
  Connection(Connection&& o) noexcept : db_(std::exchange(o.db_, nullptr)) {}
  Connection& operator=(Connection&& o) noexcept {
    if (this != &o) {
      close();
      db_ = std::exchange(o.db_, nullptr);
    }
    return *this;
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // `flags` are sqlite3_open_v2's (SQLITE_OPEN_READONLY, ...); the connection is not shared by
  // threads.
  static core::Result<Connection> open(const std::string& path, int flags,
                                       std::chrono::milliseconds busyTimeout);

  // Runs one or more statements that return nothing of interest.
  core::Status exec(std::string_view sql);
  // A statement kept for repeated use.
  core::Result<Statement> prepare(std::string_view sql);
  // The first column of the first row of `sql` (which must return a row).
  core::Result<int64_t> queryInt(std::string_view sql);
  core::Result<std::string> queryText(std::string_view sql);

  // False once a transaction began, true again after it ended (also when SQLite rolled it back
  // itself).
  bool autocommit() const { return sqlite3_get_autocommit(db_) != 0; }
  sqlite3* get() const { return db_; }
  void close();

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

}  // namespace outpost::metadb::sql
