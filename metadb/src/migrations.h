#pragma once
// The schema migrations built into the library, and the code that brings a file up to date.

#include <string_view>
#include <vector>

#include "outpost/core/status.h"
#include "sqlite.h"

namespace outpost::metadb::detail {

struct Migration {
  int version;  // the file's NNNN; PRAGMA user_version after it ran
  std::string_view name;
  std::string_view sql;
};

// Every migration in version order (generated from metadb/migrations/*.sql).
const std::vector<Migration>& migrations();

// The schema version this build writes.
int latestSchemaVersion();

// Runs the migrations the file lacks, each in its own transaction with its user_version bump.
// Refuses a file from a newer version with kFailedPrecondition naming both versions. Returns the
// version found.
core::Result<int> migrate(sql::Connection& db, std::string_view path);

}  // namespace outpost::metadb::detail
