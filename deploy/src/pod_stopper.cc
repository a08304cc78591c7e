#include "pod_stopper.h"

#include <algorithm>

namespace outpost::deploy {

PodStopper::PodStopper(Runtime& runtime, core::Logger log)
    : runtime_(runtime), log_(std::move(log)) {}

PodStopper::~PodStopper() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads = std::move(threads_);
    threads_.clear();
  }
  for (auto& t : threads) t.join();
}

bool PodStopper::stop(const std::string& key, std::vector<std::string> ids,
                      std::chrono::seconds grace, std::function<void()> done) {
  reap();
  std::lock_guard lock(mu_);
  if (!inFlight_.insert(key).second) return false;
  threads_.emplace_back([this, key, ids = std::move(ids), grace, done = std::move(done)] {
    std::vector<std::thread> each;
    each.reserve(ids.size());
    for (const auto& id : ids) {
      each.emplace_back([this, id, grace] {
        auto s = runtime_.stopContainer(id, grace);
        if (!s.isOk() && s.code() != core::Code::kNotFound)
          log_.warn("StopContainer ", id.substr(0, 12), ": ", s.toString());
      });
    }
    for (auto& t : each) t.join();
    {
      std::lock_guard inner(mu_);
      inFlight_.erase(key);
      finished_.push_back(std::this_thread::get_id());
    }
    if (done) done();
  });
  return true;
}

bool PodStopper::stopping(const std::string& key) const {
  std::lock_guard lock(mu_);
  return inFlight_.count(key) != 0;
}

// Joins the threads that have finished (they only return from here on).
void PodStopper::reap() {
  std::vector<std::thread> done;
  {
    std::lock_guard lock(mu_);
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (std::find(finished_.begin(), finished_.end(), it->get_id()) != finished_.end()) {
        finished_.erase(std::find(finished_.begin(), finished_.end(), it->get_id()));
        done.push_back(std::move(*it));
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& t : done) t.join();
}

}  // namespace outpost::deploy
