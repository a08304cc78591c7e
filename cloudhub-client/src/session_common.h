#pragma once
// Session logic both cloud links share: turning a cloud envelope into a store change, tracking
// store writes so a link can stop safely, draining the outbox rate-limited, and the link's state
// and outage bookkeeping.

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/link.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/store.h"
#include "outpost/metadb/types.h"
#include "outpost/validation/validation.h"
#include "rate_limiter.h"

namespace outpost::cloudhub {

inline bool isDecimal(std::string_view s) {
  return !s.empty() && s.size() <= 18 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The store change a cloud message asks for: insert, update and patch carry the object (its
// resource version from the header, else from metadata.resourceVersion; its uid from metadata);
// delete withdraws it (a delete's version may be absent). Refused with the reason otherwise.
inline core::Result<metadb::ResourceChange> resourceChangeFrom(const Envelope& env,
                                                               const std::string& key,
                                                               const std::string& origin) {
  metadb::ResourceChange change;
  change.key = key;
  change.origin = origin;
  const std::string& op = env.route.operation;
  bool isDelete = op == "delete";
  if (!isDelete && op != "insert" && op != "update" && op != "patch")
    return core::invalidArgument("operation \"" + validation::printable(op) +
                                 "\" cannot carry desired state");
  change.kind =
      isDelete ? metadb::ResourceChange::Kind::kDelete : metadb::ResourceChange::Kind::kUpsert;
  std::string version = env.header.resourceVersion;
  auto object = contentObject(env);
  if (!object && !isDelete) return core::invalidArgument("content is not a JSON object");
  auto parts = metadb::parseKey(key);
  if (!parts.isOk()) return parts.status();
  if (isDelete)
    OUTPOST_RETURN_IF_ERROR(validation::desiredKey(parts->ns, parts->type, parts->name));
  if (object) {
    // The door: nothing is stored that could later be turned into a host path, or that lies about
    // the key it is stored under (docs/security.md). The same pass finds the uid and version. A
    // delete's object only names what it removes: its key was checked above.
    auto facts = isDelete ? validation::objectFacts(*object)
                          : validation::desiredObject(parts->ns, parts->type, parts->name, *object);
    if (!facts.isOk()) return facts.status();
    if (version.empty() && facts->resourceVersion) version = std::move(*facts->resourceVersion);
    if (facts->uid) change.uid = std::move(*facts->uid);
    if (!isDelete) change.object = std::move(*object);
  }
  if ((!isDelete || !version.empty()) && !isDecimal(version))
    return core::invalidArgument("resource version \"" + validation::printable(version) +
                                 "\" is not a decimal number");
  change.version = version;
  return change;
}

// The twin-group messages of KubeEdge 1.14 that go to the twins over kCloudTwinMessages:
// `device/<id>/twin/cloud_updated`, and operation `update` on resource `membership`.
inline bool isCloudTwinMessage(const Route& r) {
  constexpr std::string_view kPrefix = "device/", kSuffix = "/twin/cloud_updated";
  std::string_view res = r.resource;
  if (res == "membership") return r.operation == "update";
  return res.size() > kPrefix.size() + kSuffix.size() && res.starts_with(kPrefix) &&
         res.ends_with(kSuffix);
}

// Counts store writes in flight, so stop() can wait for the completions that will be posted to the
// link's loop before the loop goes away.
class StoreWrites {
 public:
  explicit StoreWrites(metadb::Store& store) : store_(store) {}

  void write(metadb::WriteBatch batch, core::EventLoop& loop, metadb::WriteCallback done) {
    {
      std::lock_guard lock(mu_);
      ++pending_;
    }
    store_.write(std::move(batch), loop,
                 [this, done = std::move(done)](core::Result<metadb::WriteResult> r) {
                   done(std::move(r));
                   std::lock_guard lock(mu_);
                   if (--pending_ == 0) cv_.notify_all();
                 });
  }
  // False when writes were still pending after `timeout`.
  bool waitIdle(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return pending_ == 0; });
  }

 private:
  metadb::Store& store_;
  std::mutex mu_;
  std::condition_variable cv_;
  int pending_ = 0;
};

// Sends due outbox rows, oldest first by priority, at most `page` at a time and within the rate
// limit; a row leaves the outbox when its send is confirmed and is retried later otherwise. Lives
// on the link's loop; every call is made there.
class OutboxDrainer {
 public:
  // Sends one row; `done` (on the loop) says whether the cloud has it.
  using SendFn = std::function<void(const metadb::OutboxEntry&, std::function<void(core::Status)>)>;

  OutboxDrainer(core::EventLoop& loop, StoreWrites& writes, RateLimiter& limiter, core::Logger log,
                SendFn send, size_t page = 64)
      : loop_(loop),
        writes_(writes),
        limiter_(limiter),
        log_(std::move(log)),
        send_(std::move(send)),
        page_(page) {}

  // Sends what is due, using `reader` (the loop's own store reader).
  void drain(metadb::StoreReader& reader) {
    auto due = reader.outboxDue(page_ + inFlight_.size());
    if (!due.isOk()) {
      log_.error("reading the outbox: ", due.status().toString());
      return;
    }
    size_t sentNow = 0;
    for (const auto& e : *due) {
      if (inFlight_.count(e.ref.id)) continue;
      if (!limiter_.tryTake()) {
        if (!limitTimerArmed_) {
          limitTimerArmed_ = true;
          loop_.runAfter(limiter_.waitTime(), [this] {
            limitTimerArmed_ = false;
            if (redrain_) redrain_();
          });
        }
        return;
      }
      inFlight_.insert(e.ref.id);
      ++sentNow;
      metadb::OutboxRef ref = e.ref;
      uint64_t epoch = epoch_;
      send_(e, [this, ref, epoch](core::Status s) { onSent(ref, epoch, s); });
    }
    if (sentNow == page_ && redrain_) loop_.post([this] { redrain_(); });
  }
  // Called to drain again (from timers and completions): the link checks it may send, then calls
  // drain().
  void setRedrain(std::function<void()> f) { redrain_ = std::move(f); }
  // The connection went away: rows in flight are sent again on the next one.
  void reset() {
    inFlight_.clear();
    ++epoch_;
  }

 private:
  void onSent(metadb::OutboxRef ref, uint64_t epoch, const core::Status& s) {
    if (epoch != epoch_) return;  // from a connection that is gone; reset() forgot the row already
    metadb::WriteBatch batch;
    if (s.isOk()) {
      batch.ack(ref);  // the cloud has it: the row may go
    } else {
      log_.warn("sending outbox row ", ref.id, " failed: ", s.message());
      batch.retryLater(ref);
    }
    writes_.write(std::move(batch), loop_, [this, ref, epoch](core::Result<metadb::WriteResult> r) {
      if (epoch == epoch_) inFlight_.erase(ref.id);
      if (!r.isOk()) log_.error("updating the outbox: ", r.status().toString());
      if (redrain_) redrain_();
    });
  }

  core::EventLoop& loop_;
  StoreWrites& writes_;
  RateLimiter& limiter_;
  core::Logger log_;
  SendFn send_;
  size_t page_;
  std::function<void()> redrain_;
  std::set<int64_t> inFlight_;
  uint64_t epoch_ = 0;
  bool limitTimerArmed_ = false;
};

// The link's state as `outpostctl status` shows it, and the outage bookkeeping both links share.
// An outage starts when a connected link goes down and ends when it is connected again; its start
// is kept in the store, so an agent restarted while offline still reports how long the site has
// been cut off, not how long this process has run. Thread-safe; restore() and set() run on the
// link's loop (they write the store).
class LinkStateBook {
 public:
  LinkStateBook(core::Clock& clock, core::Bus& bus, core::Gauge& linkUp, core::EventLoop& loop,
                StoreWrites& writes, core::Logger log, std::string endpoint)
      : clock_(clock),
        bus_(bus),
        linkUp_(linkUp),
        loop_(loop),
        writes_(writes),
        log_(std::move(log)),
        endpoint_(std::move(endpoint)),
        offlineSince_(clock.now()) {}

  // At start: the outage the store remembers, or one that starts now (offline until the first
  // connect), and when the desired set was last known complete.
  void restore(metadb::StoreReader& reader) {
    {
      std::lock_guard lock(mu_);
      offlineSince_ = clock_.now();
    }
    auto last = reader.getKv(kLastSyncKey);
    if (last.isOk() && last->has_value() && isDecimal(**last)) {
      auto at = core::WallTime(std::chrono::milliseconds(std::stoll(**last)));
      std::lock_guard lock(mu_);
      status_.lastSync = at;
      lastSyncStored_ = at;
    }
    auto kv = reader.getKv(kOfflineSinceKey);
    if (!kv.isOk() || !kv->has_value() || !isDecimal(**kv)) {
      remember(true);
      return;
    }
    auto since = core::WallTime(std::chrono::milliseconds(std::stoll(**kv)));
    auto ago = std::chrono::duration_cast<core::Duration>(clock_.wallNow() - since);
    std::lock_guard lock(mu_);
    if (ago > core::Duration::zero()) offlineSince_ = clock_.now() - ago;
  }

  // Moves to `st`: publishes a LinkEvent and sets the link-up gauge when it changes. Only a
  // failure says why the link is down; "connecting" keeps the last reason.
  void set(LinkState st, const std::string& detail) {
    {
      std::lock_guard lock(mu_);
      if (st == status_.state) return;
      auto now = clock_.now();
      if (status_.state == LinkState::kConnected && st != LinkState::kConnected) {
        offlineSince_ = now;
      } else if (status_.state != LinkState::kConnected && st == LinkState::kConnected) {
        status_.offlineSecondsTotal += std::chrono::duration<double>(now - offlineSince_).count();
      }
      if (status_.state == LinkState::kConnected || st == LinkState::kConnected) {
        remember(st != LinkState::kConnected);
      }
      status_.state = st;
      status_.endpoint = endpoint_;
      if (st == LinkState::kDisconnected && !detail.empty()) status_.lastError = detail;
    }
    linkUp_.set(st == LinkState::kConnected ? 1 : 0);
    bus_.publish(kLinkEvents, LinkEvent{st, detail});
  }

  LinkState state() const {
    std::lock_guard lock(mu_);
    return status_.state;
  }
  // The status with the current outage's length added.
  LinkStatus status() const {
    std::lock_guard lock(mu_);
    LinkStatus s = status_;
    if (s.state != LinkState::kConnected) {
      s.offlineSeconds = std::chrono::duration<double>(clock_.now() - offlineSince_).count();
      s.offlineSecondsTotal += s.offlineSeconds;
    }
    return s;
  }
  // Changes the counters and fields the link keeps (messages, reconnects, last sync).
  template <class F>
  void update(F&& f) {
    std::lock_guard lock(mu_);
    f(status_);
  }

  // The desired set is known complete at `at`. The store keeps it across restarts (unless the
  // caller's own batch already wrote kLastSyncKey); a moving lastSync is written at most once per
  // kLastSyncPersistEvery, so a session that answers every heartbeat does not write every time.
  void synced(core::WallTime at, bool storedByCaller = false) {
    bool persist = false;
    {
      std::lock_guard lock(mu_);
      status_.lastSync = at;
      if (storedByCaller) {
        lastSyncStored_ = at;
      } else if (!lastSyncStored_ || at - *lastSyncStored_ >= kLastSyncPersistEvery) {
        lastSyncStored_ = at;
        persist = true;
      }
    }
    if (!persist) return;
    metadb::WriteBatch batch;
    batch.putKv(std::string(kLastSyncKey), std::to_string(core::toUnixMillis(at)));
    writes_.write(std::move(batch), loop_, [this](core::Result<metadb::WriteResult> r) {
      if (!r.isOk()) log_.warn("recording the last sync: ", r.status().toString());
    });
  }

  static constexpr std::string_view kOfflineSinceKey = "cloud.offline_since_ms";
  static constexpr std::string_view kLastSyncKey = "sync.last";
  static constexpr std::chrono::seconds kLastSyncPersistEvery{60};

 private:
  void remember(bool down) {
    metadb::WriteBatch batch;
    if (down) {
      batch.putKv(std::string(kOfflineSinceKey),
                  std::to_string(core::toUnixMillis(clock_.wallNow())));
    } else {
      batch.eraseKv(std::string(kOfflineSinceKey));
    }
    writes_.write(std::move(batch), loop_, [this](core::Result<metadb::WriteResult> r) {
      if (!r.isOk()) log_.warn("recording the link's outage: ", r.status().toString());
    });
  }

  core::Clock& clock_;
  core::Bus& bus_;
  core::Gauge& linkUp_;
  core::EventLoop& loop_;
  StoreWrites& writes_;
  core::Logger log_;
  const std::string endpoint_;
  mutable std::mutex mu_;
  LinkStatus status_;
  core::MonoTime offlineSince_;
  std::optional<core::WallTime> lastSyncStored_;  // the lastSync the store holds
};

}  // namespace outpost::cloudhub
