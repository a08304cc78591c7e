#pragma once
// The Session's parts (session/session.h): tracking store writes so a link can stop safely,
// draining the outbox rate-limited, and the link's state and outage bookkeeping.

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "codec/resource_change.h"
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
#include "session/rate_limiter.h"

namespace outpost::cloudhub {

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
// limit; a row leaves the outbox when its send is confirmed and is retried later otherwise. Nothing
// polls: the session drains on connect and when told the outbox changed, and the drainer itself
// only when what held it back frees up: a token of the rate limit (a timer), a page sent in full or
// a send completed (its in-flight window), or the time a row put back is due again (a timer). Lives
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
      std::string row = e.kind + " " + e.key;
      send_(e, [this, ref, epoch, row, attempts = e.attempts](core::Status s) {
        onSent(ref, epoch, s, row, attempts + 1);
      });
    }
    if (sentNow == page_ && redrain_) {
      loop_.post([this] { redrain_(); });
    } else if (sentNow == 0 && inFlight_.empty()) {
      armRetry(reader);
    }
  }
  // Called to drain again (from timers and completions): the link checks it may send, then calls
  // drain().
  void setRedrain(std::function<void()> f) { redrain_ = std::move(f); }
  // A row the cloud has not taken after this many attempts in a row is reported: logged once,
  // counted, and told to `reporter` (rows reported now, one of them with why) until it is taken.
  static constexpr int kReportAfter = 5;
  using Reporter = std::function<void(int64_t rows, const std::string& example)>;
  void setReporter(Reporter r, core::Counter* failures) {
    reporter_ = std::move(r);
    failures_ = failures;
  }
  // The connection went away: rows in flight are sent again on the next one.
  void reset() {
    inFlight_.clear();
    ++epoch_;
  }
  // Stops the timers (the link stops).
  void cancelTimers() {
    loop_.cancel(retryTimer_);
    retryTimer_ = 0;
  }

 private:
  // Nothing is due and nothing in flight: a row put back by retryLater() is due at its next
  // attempt; drain then. A row that fell due since outboxDue() looked (the clock moved on between
  // the two reads) is drained a moment later: skipping the timer would leave it until the next
  // connect or outbox change.
  void armRetry(metadb::StoreReader& reader) {
    auto next = reader.outboxNextAttempt();
    if (!next.isOk() || !next->has_value()) return;
    auto wait = std::chrono::duration_cast<core::Duration>(**next - loop_.clock().wallNow());
    wait = std::max(wait, core::Duration::zero());
    loop_.cancel(retryTimer_);
    retryTimer_ = loop_.runAfter(wait + std::chrono::milliseconds(1), [this] {
      retryTimer_ = 0;
      if (redrain_) redrain_();
    });
  }

  void onSent(metadb::OutboxRef ref, uint64_t epoch, const core::Status& s, const std::string& row,
              int attempt) {
    if (epoch != epoch_) return;  // from a connection that is gone; reset() forgot the row already
    metadb::WriteBatch batch;
    if (s.isOk()) {
      batch.ack(ref);  // the cloud has it: the row may go
      if (refused_.erase(ref.id)) {
        log_.info("outbox row ", row, " was taken by the cloud after ", attempt, " attempts");
        report();
      }
    } else {
      // Once per run of refusals, at the kReportAfter-th; the store's back-off spaces the attempts.
      if (failures_) failures_->inc();
      if (attempt == kReportAfter || (attempt > kReportAfter && !refused_.count(ref.id))) {
        log_.warn("the cloud keeps refusing outbox row ", row, ": ", attempt,
                  " attempts, the last: ", s.message(),
                  "; it stays in the outbox and is sent again with back-off");
      } else {
        log_.debug("sending outbox row ", row, " failed (attempt ", attempt, "): ", s.message());
      }
      if (attempt >= kReportAfter) {
        refused_[ref.id] = row + ": " + s.message() + " (" + std::to_string(attempt) + " attempts)";
        report();
      }
      batch.retryLater(ref);
    }
    writes_.write(std::move(batch), loop_, [this, ref, epoch](core::Result<metadb::WriteResult> r) {
      if (epoch == epoch_) inFlight_.erase(ref.id);
      if (!r.isOk()) log_.error("updating the outbox: ", r.status().toString());
      if (redrain_) redrain_();
    });
  }

  void report() {
    if (reporter_)
      reporter_(static_cast<int64_t>(refused_.size()),
                refused_.empty() ? "" : refused_.begin()->second);
  }

  core::EventLoop& loop_;
  StoreWrites& writes_;
  RateLimiter& limiter_;
  core::Logger log_;
  SendFn send_;
  size_t page_;
  std::function<void()> redrain_;
  Reporter reporter_;
  core::Counter* failures_ = nullptr;
  std::map<int64_t, std::string> refused_;  // row id -> what was refused and why
  std::set<int64_t> inFlight_;
  uint64_t epoch_ = 0;
  bool limitTimerArmed_ = false;
  core::TimerId retryTimer_ = 0;
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
