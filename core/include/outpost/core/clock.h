#pragma once
// Clock: the only source of time in Outpost, injected so tests can drive time by hand.

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace outpost::core {

using Duration = std::chrono::nanoseconds;
using MonoTime = std::chrono::steady_clock::time_point;  // for timers, deadlines and intervals
using WallTime = std::chrono::system_clock::time_point;  // for timestamps that leave the process

// Milliseconds since the Unix epoch, as the wire formats carry them.
inline int64_t toUnixMillis(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// RFC 3339 in UTC: "2026-12-07T02:03:52Z" (Kubernetes' Time), with `fractionDigits` (at most 9)
// of the second after the point, cut, not rounded: 3 for milliseconds, 6 for Kubernetes'
// MicroTime, 9 for containerd's log stamps.
std::string formatRfc3339(WallTime t, int fractionDigits = 0);

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time; never goes backwards.
  virtual MonoTime now() const = 0;
  // Calendar time; may jump when the host's clock is set.
  virtual WallTime wallNow() const = 0;
  // How long a thread may sleep in real time while waiting for `deadline`; nullopt means "until
  // woken".
  virtual std::optional<Duration> realWaitFor(MonoTime deadline) const = 0;
  // Calls `wake` whenever time moves other than by its own passing (a manual clock advanced).
  // Returns a token for unwatch().
  virtual int watch(std::function<void()> wake) = 0;
  virtual void unwatch(int token) = 0;
};

// The host's clocks.
class SystemClock final : public Clock {
 public:
  MonoTime now() const override { return std::chrono::steady_clock::now(); }
  WallTime wallNow() const override { return std::chrono::system_clock::now(); }
  std::optional<Duration> realWaitFor(MonoTime deadline) const override {
    auto left = deadline - now();
    return left < Duration::zero() ? Duration::zero() : left;
  }
  int watch(std::function<void()>) override { return 0; }
  void unwatch(int) override {}
};

// A clock that only moves when told to; timers on loops using it fire on advance().
class ManualClock final : public Clock {
 public:
  explicit ManualClock(WallTime wallStart = WallTime(std::chrono::hours(24 * 365 * 56)));

  MonoTime now() const override;
  WallTime wallNow() const override;
  std::optional<Duration> realWaitFor(MonoTime) const override { return std::nullopt; }
  int watch(std::function<void()> wake) override;
  void unwatch(int token) override;

  // Moves both monotonic and wall time forward and wakes every watcher.
  void advance(Duration d);
  // Sets the wall clock alone (a host clock set back or forward); monotonic time is untouched.
  void setWall(WallTime t);

 private:
  void wakeAll();

  mutable std::mutex mu_;
  MonoTime mono_;
  WallTime wall_;
  int nextToken_ = 1;
  std::vector<std::pair<int, std::function<void()>>> watchers_;
};

// Another clock with its wall time moved by an offset that may be changed while it runs; monotonic
// time is the other clock's. A hollow node's simulated calendar (docs/hollow-nodes.md): what it
// does when its host's clock is set. Thread-safe; `base` must outlive it.
class OffsetClock final : public Clock {
 public:
  explicit OffsetClock(Clock& base) : base_(base) {}

  MonoTime now() const override { return base_.now(); }
  WallTime wallNow() const override;
  std::optional<Duration> realWaitFor(MonoTime deadline) const override {
    return base_.realWaitFor(deadline);
  }
  int watch(std::function<void()> wake) override { return base_.watch(std::move(wake)); }
  void unwatch(int token) override { base_.unwatch(token); }

  // Wall time from now on: the base's plus `offset` (zero: the base's own).
  void setWallOffset(Duration offset) { offset_.store(offset.count()); }
  Duration wallOffset() const { return Duration(offset_.load()); }

 private:
  Clock& base_;
  std::atomic<Duration::rep> offset_{0};
};

}  // namespace outpost::core
