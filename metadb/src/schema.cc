#include <string>

#include "migrations.h"

namespace outpost::metadb::detail {

int latestSchemaVersion() { return migrations().empty() ? 0 : migrations().back().version; }

core::Result<int> migrate(sql::Connection& db, std::string_view path) {
  OUTPOST_ASSIGN_OR_RETURN(int64_t found, db.queryInt("PRAGMA user_version"));
  const int latest = latestSchemaVersion();
  if (found > latest) {
    return core::failedPrecondition(
        "store " + std::string(path) + " has schema version " + std::to_string(found) +
        ", newer than version " + std::to_string(latest) +
        " that this build knows; it was written by a newer Outpost, refusing to open it");
  }
  int expected = 1;
  for (const Migration& m : migrations()) {
    // Versions are consecutive from 1: a gap would be a packaging bug, not a state to run with.
    if (m.version != expected++) {
      return core::internalError("migration " + std::to_string(m.version) + " (" +
                                 std::string(m.name) + ") is out of sequence");
    }
    if (m.version <= found) continue;
    OUTPOST_RETURN_IF_ERROR(db.exec("BEGIN IMMEDIATE"));
    core::Status s = db.exec(m.sql);
    if (s.isOk()) s = db.exec("PRAGMA user_version = " + std::to_string(m.version));
    if (s.isOk()) s = db.exec("COMMIT");
    if (!s.isOk()) {
      if (!db.autocommit()) db.exec("ROLLBACK").ignore();
      return s.withContext("migrating " + std::string(path) + " to schema version " +
                           std::to_string(m.version) + " (" + std::string(m.name) + ")");
    }
  }
  return static_cast<int>(found);
}

}  // namespace outpost::metadb::detail
