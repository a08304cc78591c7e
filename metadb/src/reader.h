#pragma once
// SqliteReader: a StoreReader on its own read-only connection (WAL lets it read while the writer
// commits).

#include "outpost/core/clock.h"
#include "outpost/metadb/store.h"
#include "sqlite.h"

namespace outpost::metadb::detail {

core::Result<StoreReaderPtr> makeReader(sql::Connection db, core::Clock& clock);

}  // namespace outpost::metadb::detail
