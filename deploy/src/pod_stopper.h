#pragma once
// Stopping containers off deploy's loop. Each StopContainer (SIGTERM, then SIGKILL once the grace
// period is over) runs on a thread of its own, so pods being deleted stop in parallel, as the
// kubelet's pod workers stop them, and the loop goes on meanwhile (other pods start, status is
// published). The runtime's calls are safe from any thread (runtime.h).

#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "outpost/core/log.h"
#include "outpost/deploy/runtime.h"

namespace outpost::deploy {

class PodStopper {
 public:
  PodStopper(Runtime& runtime, core::Logger log);
  // Waits for the stops in flight (each is bounded by its grace period and the call's deadline).
  ~PodStopper();
  PodStopper(const PodStopper&) = delete;
  PodStopper& operator=(const PodStopper&) = delete;

  // Stops the containers `ids` of the pod at `key`, all at once; `done` runs on a stop thread once
  // every call returned (it must only post to the owner's loop). False, and nothing started, while
  // the pod's earlier stop is still in flight.
  bool stop(const std::string& key, std::vector<std::string> ids, std::chrono::seconds grace,
            std::function<void()> done);
  // True while a stop of the pod at `key` is in flight (from any thread).
  bool stopping(const std::string& key) const;

 private:
  void reap();

  Runtime& runtime_;
  core::Logger log_;
  mutable std::mutex mu_;
  std::set<std::string> inFlight_;
  std::vector<std::thread> threads_;
  std::vector<std::thread::id> finished_;
};

}  // namespace outpost::deploy
