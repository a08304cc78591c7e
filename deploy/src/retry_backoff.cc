#include "retry_backoff.h"

#include <algorithm>

namespace outpost::deploy {

const RetryBackoff* RetryBackoffs::heldBack(const std::string& slot, const std::string& cause,
                                            core::MonoTime now) {
  auto it = entries_.find(slot);
  if (it == entries_.end()) return nullptr;
  if (it->second.cause != cause) {
    entries_.erase(it);
    return nullptr;
  }
  if (now >= it->second.retryAt) return nullptr;
  return &it->second;
}

bool RetryBackoffs::failedAgain(const std::string& slot, const std::string& cause,
                                const std::string& message, core::Duration initial,
                                core::Duration max, core::MonoTime now) {
  auto& b = entries_[slot];
  bool first = b.cause != cause || b.delay == core::Duration::zero();
  if (b.cause != cause) b = RetryBackoff{cause, core::Duration::zero(), {}, ""};
  b.delay = b.delay == core::Duration::zero() ? initial : std::min(b.delay * 2, max);
  b.retryAt = now + b.delay;
  b.message = message;
  return first;
}

const RetryBackoff* RetryBackoffs::find(const std::string& slot) const {
  auto it = entries_.find(slot);
  return it == entries_.end() ? nullptr : &it->second;
}

std::string backOffMessage(const RetryBackoff& b, const std::string& what) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(b.delay).count();
  return "Back-off " + std::to_string(secs) + "s creating " + what + ": " + b.message;
}

}  // namespace outpost::deploy
