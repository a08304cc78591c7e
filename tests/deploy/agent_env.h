#pragma once
// The deploy half of an agent for tests: its loop, a runtime, the reconciler, in-memory ports.

#include <atomic>
#include <memory>

#include "deploy_fixture.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/deploy/reconciler.h"
#include "support/test_util.h"

namespace outpost::test {

class DeployAgent {
 public:
  // `logFile`: where the reconciler's log lines go (empty: stderr).
  // `local`: where the reconciler keeps the on-site holds (nullptr: nowhere).
  DeployAgent(deploy::Runtime& runtime, MemoryDesired& desired, MemorySink& sink,
              core::Clock& clock, deploy::ReconcilerConfig config, std::string logFile = "",
              deploy::LocalState* local = nullptr)
      : logging_(core::Logging::Options{core::LogLevel::kWarn, false, std::move(logFile)}),
        loop_("deploy-test", clock) {
    reconciler_ = std::make_unique<deploy::Reconciler>(
        loop_, runtime, desired, sink, std::move(config), logging_.get("deploy"), nullptr, local);
    loop_.start();
  }
  ~DeployAgent() {
    reconciler_->stop();
    loop_.stop();
    reconciler_.reset();
  }
  // Starts and waits for the cold boot pass.
  bool start() {
    reconciler_->start([this] { coldBoot_ = true; });
    return waitFor([this] { return coldBoot_.load(); }, std::chrono::seconds(60));
  }
  deploy::Reconciler& reconciler() { return *reconciler_; }
  // Runs a full pass and waits until it is done.
  void pass() {
    reconciler_->syncAll();
    loop_.runSync([] {}, std::chrono::seconds(60));
  }
  // True when the loop runs a task within `timeout` (it is not blocked).
  bool loopAnswers(std::chrono::milliseconds timeout) {
    return loop_.runSync([] {}, timeout);
  }
  // Writes out buffered log lines (to the log file, if any).
  void flushLog() { logging_.flush(); }
  void changed(std::vector<std::string> keys) {
    reconciler_->onDesiredChanged(std::move(keys));
    loop_.runSync([] {}, std::chrono::seconds(60));
  }

 private:
  core::Logging logging_;
  core::EventLoop loop_;
  std::unique_ptr<deploy::Reconciler> reconciler_;
  std::atomic<bool> coldBoot_{false};
};

}  // namespace outpost::test
