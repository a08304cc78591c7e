#pragma once
// A token bucket: `qps` tokens a second, at most `burst` saved up. Time from the injected clock.

#include <algorithm>
#include <chrono>

#include "outpost/core/clock.h"

namespace outpost::cloudhub {

class RateLimiter {
 public:
  RateLimiter(core::Clock& clock, double qps, int burst)
      : clock_(clock), qps_(qps), burst_(std::max(1, burst)), tokens_(burst_), last_(clock.now()) {}

  // Takes a token if one is there.
  bool tryTake() {
    refill();
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }
  // How long until the next token.
  core::Duration waitTime() {
    refill();
    if (tokens_ >= 1) return core::Duration::zero();
    auto secs = (1 - tokens_) / qps_;
    return std::chrono::duration_cast<core::Duration>(std::chrono::duration<double>(secs));
  }

 private:
  void refill() {
    auto now = clock_.now();
    double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min<double>(burst_, tokens_ + elapsed * qps_);
  }
  core::Clock& clock_;
  double qps_;
  int burst_;
  double tokens_;
  core::MonoTime last_;
};

}  // namespace outpost::cloudhub
