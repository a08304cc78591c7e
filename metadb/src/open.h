#pragma once
// Opening the database file: modes, pragmas, integrity check, migrations, and quarantine of a
// corrupt file.

#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/core/status.h"
#include "outpost/metadb/sqlite_store.h"
#include "sqlite.h"

namespace outpost::metadb::detail {

struct OpenedWriter {
  sql::Connection db;
  std::string quarantinedTo;  // where a corrupt file was moved; empty when none was
};

// Opens the one writer connection: WAL, synchronous=FULL, quick_check, migrations, mode 0600. A
// corrupt file is moved aside with its -wal and -shm, a fresh one is made and marked
// "needs_full_resync".
core::Result<OpenedWriter> openWriter(const StoreOptions& options, core::WallTime now,
                                      const core::Logger& log);

// A read-only connection to a store the writer already opened.
core::Result<sql::Connection> openReadOnly(const StoreOptions& options);

// Gives the file and its -wal and -shm companions mode 0600, whatever the umask was.
core::Status makePrivate(const std::string& path);

}  // namespace outpost::metadb::detail
