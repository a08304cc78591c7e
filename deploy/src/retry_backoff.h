#pragma once
// The back-off of a step that failed (an image pull, a creation the runtime refused), per slot (a
// container name, or the pod's sandbox).

#include <map>
#include <string>

#include "outpost/core/clock.h"

namespace outpost::deploy {

// No new attempt before `retryAt`. While the step keeps failing for the same `cause` (the image,
// the spec's hash) the delay doubles up to a cap; a new cause starts afresh, as does a success.
struct RetryBackoff {
  std::string cause;
  core::Duration delay{0};
  core::MonoTime retryAt{};
  std::string message;  // of the last failure
};

class RetryBackoffs {
 public:
  // The back-off of `slot` while it holds for `cause` at `now`, or nullptr when the step may be
  // tried now. An entry for another cause is dropped: that is a new episode.
  const RetryBackoff* heldBack(const std::string& slot, const std::string& cause,
                               core::MonoTime now);
  // Records that `slot` failed again for `cause` at `now`: the next attempt waits `initial`,
  // doubling up to `max`. True when this failure begins an episode (the first since the step
  // last succeeded or its cause changed): the one failure worth a log line.
  bool failedAgain(const std::string& slot, const std::string& cause, const std::string& message,
                   core::Duration initial, core::Duration max, core::MonoTime now);
  // The back-off of `slot`, whatever its cause; nullptr when there is none.
  const RetryBackoff* find(const std::string& slot) const;
  // The step succeeded: its next failure begins a new episode.
  void succeeded(const std::string& slot) { entries_.erase(slot); }

 private:
  std::map<std::string, RetryBackoff> entries_;
};

// "Back-off 20s creating <what>: <the last failure>".
std::string backOffMessage(const RetryBackoff& b, const std::string& what);

}  // namespace outpost::deploy
