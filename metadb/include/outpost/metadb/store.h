#pragma once
// Store: the durable state of the node (desired resources, outbox, device twins, key-values), as
// other modules see it. agent/ injects the implementation (see sqlite_store.h).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "outpost/core/bus.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/status.h"
#include "outpost/metadb/types.h"

namespace outpost::metadb {

// Operations of a WriteBatch (built with its methods).
struct OutboxAck {
  OutboxRef ref;
};
struct OutboxRetry {
  OutboxRef ref;
};
struct KvPut {
  std::string key;
  std::string value;
};
struct KvErase {
  std::string key;
};
using WriteOp =
    std::variant<ResourceChange, OutboxItem, OutboxAck, OutboxRetry, DeviceUpdate, KvPut, KvErase>;

// Changes that commit together or not at all, in the order they were added.
class WriteBatch {
 public:
  // Applies a resource change: answered kApplied, kStale or kDeleted.
  WriteBatch& apply(ResourceChange change) { return add(std::move(change)); }
  // Queues an outbox item, replacing an unsent item with the same (kind, key).
  WriteBatch& enqueue(OutboxItem item) { return add(std::move(item)); }
  // Deletes an outbox row the cloud acknowledged, unless it was replaced since it was read.
  WriteBatch& ack(OutboxRef ref) { return add(OutboxAck{ref}); }
  // Counts a failed send and pushes the row's next attempt back (exponential back-off).
  WriteBatch& retryLater(OutboxRef ref) { return add(OutboxRetry{ref}); }
  // Changes one device and its twin atomically.
  WriteBatch& updateDevice(DeviceUpdate update) { return add(std::move(update)); }
  WriteBatch& putKv(std::string key, std::string value) {
    return add(KvPut{std::move(key), std::move(value)});
  }
  WriteBatch& eraseKv(std::string key) { return add(KvErase{std::move(key)}); }

  const std::vector<WriteOp>& ops() const { return ops_; }
  size_t size() const { return ops_.size(); }
  bool empty() const { return ops_.empty(); }

 private:
  WriteBatch& add(WriteOp op) {
    ops_.push_back(std::move(op));
    return *this;
  }
  std::vector<WriteOp> ops_;
};

// What a committed batch did, one entry per operation of each kind, in the order they were added.
struct WriteResult {
  std::vector<ApplyOutcome> changes;  // per apply()
  std::vector<OutboxRef> enqueued;    // per enqueue(): the row now holding the item
  std::vector<bool> acked;            // per ack(): false when the row was gone or replaced
  std::vector<bool> retried;          // per retryLater(): false when the row was gone or replaced
  int64_t outboxDropped = 0;          // older rows this batch pushed out of the outbox quota
};

// Receives a batch's outcome on the loop the caller named.
using WriteCallback = std::function<void(core::Result<WriteResult>)>;

// One key whose stored state changed in a commit: the stored key "<ns>/<type>/<name>" and its
// parts, so no subscriber splits the key again.
struct KeyChange {
  std::string key;
  std::string ns;
  std::string type;
  std::string name;
  bool deleted = false;
};

// Published after each commit that changed desired resources or devices.
struct KeysChanged {
  std::vector<KeyChange> keys;       // resources applied or deleted, in commit order
  std::vector<std::string> devices;  // devices whose record or twin changed
};
inline constexpr core::Topic<KeysChanged> kKeysChanged{"metadb.keys_changed"};

// Published once after each commit that changed outbox rows, with what it changed: the batches of
// the commit together (a group commit publishes one signal, not one per batch or row). Nothing is
// published for a batch that failed and left nothing behind, nor for a commit that changed no
// outbox row (an ack of a row that was replaced or gone changes none). Whoever sends the outbox
// drains on it instead of polling.
struct OutboxChanged {
  int64_t queued = 0;   // rows inserted or replaced by enqueue()
  int64_t acked = 0;    // rows deleted by ack()
  int64_t retried = 0;  // rows whose next attempt retryLater() pushed back
  int64_t dropped = 0;  // older rows the outbox quota pushed out
};
inline constexpr core::Topic<OutboxChanged> kOutboxChanged{"metadb.outbox_changed"};

// A read-only view of the store for one thread. Each call reads the latest committed state.
class StoreReader {
 public:
  virtual ~StoreReader() = default;

  // The live resource under `key` (deleted ones are absent).
  virtual core::Result<std::optional<Resource>> get(std::string_view key) = 0;
  // Live resources of `type`, optionally in one namespace, ordered by key.
  virtual core::Result<std::vector<Resource>> list(std::string_view type,
                                                   std::optional<std::string_view> ns = {}) = 0;
  // Live resources whose key starts with `prefix`, ordered by key.
  virtual core::Result<std::vector<Resource>> listPrefix(std::string_view prefix) = 0;

  // Up to `limit` outbox rows due now (by the store's clock), highest priority first, then oldest.
  virtual core::Result<std::vector<OutboxEntry>> outboxDue(size_t limit) = 0;
  // When the earliest outbox row is due; nullopt when the outbox is empty.
  virtual core::Result<std::optional<core::WallTime>> outboxNextAttempt() = 0;
  // Whether a row of `kind` under `key` is in the outbox: not sent yet, or sent and not acked.
  virtual core::Result<bool> outboxHas(std::string_view kind, std::string_view key) = 0;
  virtual core::Result<OutboxStats> outboxStats() = 0;

  virtual core::Result<std::optional<Device>> device(std::string_view id) = 0;
  virtual core::Result<std::vector<Device>> devices() = 0;
  // The twin of a device, ordered by property name (empty when unknown).
  virtual core::Result<std::vector<TwinProperty>> twin(std::string_view deviceId) = 0;

  virtual core::Result<std::optional<std::string>> getKv(std::string_view key) = 0;
};
using StoreReaderPtr = std::unique_ptr<StoreReader>;

// The store. write() may be called from any thread.
class Store {
 public:
  virtual ~Store() = default;

  // Queues `batch` for the next group commit. `done` is posted to `loop` after the batch is
  // durable, or with the error that left nothing of it behind. Batches of other callers are not
  // affected.
  virtual void write(WriteBatch batch, core::EventLoop& loop, WriteCallback done) = 0;
  // A new read-only connection, to be used on one thread.
  virtual core::Result<StoreReaderPtr> openReader() = 0;
};
using StorePtr = std::unique_ptr<Store>;

// Keys of the key-value table that the store itself sets.
inline constexpr std::string_view kKvNeedsFullResync = "needs_full_resync";  // "1" after quarantine
inline constexpr std::string_view kKvOutboxDropped = "outbox.dropped_total";

}  // namespace outpost::metadb
