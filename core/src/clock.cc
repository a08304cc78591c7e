#include "outpost/core/clock.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace outpost::core {

std::string formatRfc3339(WallTime t, int fractionDigits) {
  constexpr int64_t kNanosPerSecond = 1'000'000'000;
  int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  int64_t secs = ns / kNanosPerSecond;
  int64_t frac = ns % kNanosPerSecond;
  if (frac < 0) {  // before 1970: the second below, and what is past it
    frac += kNanosPerSecond;
    --secs;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::string out(buf, std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm));
  if (fractionDigits > 0) {
    char digits[16];
    std::snprintf(digits, sizeof digits, ".%09lld", static_cast<long long>(frac));
    out.append(digits, 1 + static_cast<std::size_t>(std::min(fractionDigits, 9)));
  }
  out += 'Z';
  return out;
}

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

WallTime OffsetClock::wallNow() const {
  return base_.wallNow() + std::chrono::duration_cast<WallTime::duration>(wallOffset());
}

}  // namespace outpost::core
