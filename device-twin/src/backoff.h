#pragma once
// Exponential back-off with full jitter: the n-th retry waits a uniform random time in
// [0, min(cap, base * 2^n)], so the devices' agents of a site do not return in lockstep.

#include <algorithm>
#include <cstdint>
#include <random>

#include "outpost/core/clock.h"

namespace outpost::twin {

class Backoff {
 public:
  Backoff(core::Duration base, core::Duration cap, uint64_t seed)
      : base_(base), cap_(cap), rng_(seed) {}

  core::Duration next() {
    double ceiling = static_cast<double>(base_.count()) *
                     static_cast<double>(uint64_t{1} << std::min(attempt_, 30));
    ceiling = std::min(ceiling, static_cast<double>(cap_.count()));
    ++attempt_;
    std::uniform_real_distribution<double> dist(0, ceiling);
    return core::Duration(static_cast<int64_t>(dist(rng_)));
  }
  void reset() { attempt_ = 0; }

 private:
  core::Duration base_, cap_;
  int attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace outpost::twin
