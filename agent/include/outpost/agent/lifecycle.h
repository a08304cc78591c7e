#pragma once
// Lifecycle: starts the agent's modules in a fixed order and stops them in reverse, within a
// deadline.

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "outpost/core/log.h"
#include "outpost/core/status.h"

namespace outpost::agent {

// A part of the agent with a start and a stop (store, runtime driver, device twins, cloud link,
// API).
class Module {
 public:
  virtual ~Module() = default;
  // Short name used in logs and status ("metadb").
  virtual std::string name() const = 0;
  // Brings the module up; returns once it serves. An error aborts the agent's start.
  virtual core::Status start() = 0;
  // Stops the module; must return promptly (the whole stop has a deadline).
  virtual void stop() = 0;
  // One line for `outpostctl status` ("running", "connected to tcp://...").
  virtual std::string describe() const { return "running"; }
  // True when the module's threads answer; gates the systemd watchdog.
  virtual bool alive(std::chrono::milliseconds /*timeout*/) { return true; }
};

enum class ModuleState { kStopped, kStarting, kRunning, kStopping, kFailed };
std::string_view moduleStateName(ModuleState s);

struct ModuleStatus {
  std::string name;
  ModuleState state;
  std::string detail;
};

class Lifecycle {
 public:
  explicit Lifecycle(core::Logger log) : log_(std::move(log)) {}
  ~Lifecycle();
  Lifecycle(const Lifecycle&) = delete;
  Lifecycle& operator=(const Lifecycle&) = delete;

  // Adds a module; modules start in the order they were added.
  void add(Module& module);
  // Called before each module starts, e.g. to report "STATUS=starting metadb" to systemd.
  void onProgress(std::function<void(const std::string&)> progress) {
    progress_ = std::move(progress);
  }

  // Starts every module in order. On a failure, stops those already started (in reverse) and
  // returns the failure, naming the module.
  core::Status startAll();
  // Stops the running modules in reverse order. Returns false if they did not all stop by
  // `deadline` (the caller then exits anyway; containers outlive the agent).
  bool stopAll(std::chrono::milliseconds deadline);

  bool ready() const { return ready_.load(); }
  bool alive(std::chrono::milliseconds timeout);
  std::vector<ModuleStatus> status() const;

 private:
  void setState(size_t i, ModuleState s);
  void stopStarted();

  core::Logger log_;
  std::function<void(const std::string&)> progress_;
  std::vector<Module*> modules_;
  mutable std::mutex mu_;
  std::vector<ModuleState> states_;
  std::atomic<bool> ready_{false};
  std::thread stopper_;
};

}  // namespace outpost::agent
