#pragma once
// Exponential back-off with full jitter: the n-th retry waits a uniform random time in
// [0, min(cap, base * 2^n)], so a fleet that lost the same uplink does not return in one second.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

#include "outpost/core/clock.h"

namespace outpost::core {

class Backoff {
 public:
  Backoff(Duration base, Duration cap, uint64_t seed = std::random_device{}())
      : base_(base), cap_(cap), rng_(seed) {}

  // The wait before the next retry; each call counts one more failure.
  Duration next() {
    double ceiling = static_cast<double>(base_.count()) *
                     static_cast<double>(uint64_t{1} << std::min(attempt_, 30));
    ceiling = std::min(ceiling, static_cast<double>(cap_.count()));
    ++attempt_;
    std::uniform_real_distribution<double> dist(0, ceiling);
    return Duration(static_cast<int64_t>(dist(rng_)));
  }
  // After a success: the next failure starts from `base` again.
  void reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  Duration base_, cap_;
  int attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace outpost::core
