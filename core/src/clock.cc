#include "outpost/core/clock.h"

#include <algorithm>

namespace outpost::core {

ManualClock::ManualClock(WallTime wallStart) : mono_(std::chrono::hours(1)), wall_(wallStart) {}

MonoTime ManualClock::now() const {
  std::lock_guard lock(mu_);
  return mono_;
}

WallTime ManualClock::wallNow() const {
  std::lock_guard lock(mu_);
  return wall_;
}

int ManualClock::watch(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  int token = nextToken_++;
  watchers_.emplace_back(token, std::move(wake));
  return token;
}

void ManualClock::unwatch(int token) {
  std::lock_guard lock(mu_);
  std::erase_if(watchers_, [token](const auto& w) { return w.first == token; });
}

void ManualClock::advance(Duration d) {
  {
    std::lock_guard lock(mu_);
    mono_ += d;
    wall_ += std::chrono::duration_cast<WallTime::duration>(d);
  }
  wakeAll();
}

void ManualClock::setWall(WallTime t) {
  {
    std::lock_guard lock(mu_);
    wall_ = t;
  }
  wakeAll();
}

void ManualClock::wakeAll() {
  std::vector<std::function<void()>> wakers;
  {
    std::lock_guard lock(mu_);
    for (auto& w : watchers_) wakers.push_back(w.second);
  }
  for (auto& w : wakers) w();
}

}  // namespace outpost::core
