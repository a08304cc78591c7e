#include "outpost/agent/lifecycle.h"

#include <future>
#include <memory>
#include <thread>

namespace outpost::agent {

std::string_view moduleStateName(ModuleState s) {
  switch (s) {
    case ModuleState::kStopped:
      return "stopped";
    case ModuleState::kStarting:
      return "starting";
    case ModuleState::kRunning:
      return "running";
    case ModuleState::kStopping:
      return "stopping";
    case ModuleState::kFailed:
      return "failed";
  }
  return "unknown";
}

Lifecycle::~Lifecycle() {
  if (stopper_.joinable()) stopper_.join();
}

void Lifecycle::add(Module& module) {
  std::lock_guard lock(mu_);
  modules_.push_back(&module);
  states_.push_back(ModuleState::kStopped);
}

void Lifecycle::setState(size_t i, ModuleState s) {
  std::lock_guard lock(mu_);
  states_[i] = s;
}

core::Status Lifecycle::startAll() {
  for (size_t i = 0; i < modules_.size(); ++i) {
    Module& m = *modules_[i];
    if (progress_) progress_("starting " + m.name());
    setState(i, ModuleState::kStarting);
    auto began = std::chrono::steady_clock::now();
    core::Status s = m.start();
    if (!s.isOk()) {
      setState(i, ModuleState::kFailed);
      log_.error("module ", m.name(), " failed to start: ", s.toString());
      stopStarted();
      return s.withContext("starting " + m.name());
    }
    setState(i, ModuleState::kRunning);
    std::chrono::duration<double, std::milli> ms = std::chrono::steady_clock::now() - began;
    log_.debug("module ", m.name(), " started in ", ms.count(), " ms");
  }
  ready_ = true;
  return core::okStatus();
}

void Lifecycle::stopStarted() {
  ready_ = false;
  for (size_t i = modules_.size(); i-- > 0;) {
    ModuleState s;
    {
      std::lock_guard lock(mu_);
      s = states_[i];
    }
    if (s != ModuleState::kRunning && s != ModuleState::kStarting) continue;
    setState(i, ModuleState::kStopping);
    if (progress_) progress_("stopping " + modules_[i]->name());
    modules_[i]->stop();
    setState(i, ModuleState::kStopped);
    log_.debug("module ", modules_[i]->name(), " stopped");
  }
}

bool Lifecycle::stopAll(std::chrono::milliseconds deadline) {
  // The stops run on a helper thread so a module that hangs cannot hold the process past the
  // deadline.
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  if (stopper_.joinable()) stopper_.join();
  stopper_ = std::thread([this, done] {
    stopStarted();
    done->set_value();
  });
  if (fut.wait_for(deadline) == std::future_status::ready) {
    stopper_.join();
    return true;
  }
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < modules_.size(); ++i) {
    if (states_[i] == ModuleState::kStopping) {
      log_.error("module ", modules_[i]->name(), " did not stop within ", deadline.count(), " ms");
    }
  }
  return false;  // the caller exits; the destructor would wait for the stuck stop
}

bool Lifecycle::alive(std::chrono::milliseconds timeout) {
  for (auto* m : modules_) {
    if (!m->alive(timeout)) {
      log_.error("module ", m->name(), " is not answering");
      return false;
    }
  }
  return true;
}

std::vector<ModuleStatus> Lifecycle::status() const {
  std::vector<ModuleStatus> out;
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < modules_.size(); ++i) {
    std::string detail = states_[i] == ModuleState::kRunning ? modules_[i]->describe() : "";
    out.push_back({modules_[i]->name(), states_[i], detail});
  }
  return out;
}

}  // namespace outpost::agent
