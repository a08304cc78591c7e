#pragma once
// Agent: the one place that builds every module, wires them together and runs their lifecycle.

#include <memory>
#include <optional>
#include <string>

#include "outpost/agent/config.h"
#include "outpost/agent/lifecycle.h"
#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/core/status.h"

namespace outpost::agent {

class Agent {
 public:
  Agent(Config config, core::Logging& logging, core::Clock& clock);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Starts every module in order; an error names the module that failed.
  core::Status start(std::function<void(const std::string&)> progress = nullptr);
  // Stops in reverse order; false if the deadline passed first.
  bool stop(std::chrono::milliseconds deadline);
  // True when every module's threads answer (for the systemd watchdog).
  bool alive(std::chrono::milliseconds timeout);

  // Why the agent is not ready (/readyz answers 503 with it), or nothing when it is: "starting",
  // or the store's file was removed or replaced while it runs.
  std::optional<std::string> notReady() const;
  // The JSON document `outpostctl status` shows.
  std::string statusJson() const;
  // Applies what can change without a restart (the log level); SIGHUP.
  void reload(const Config& config);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// outpostd's main: parses the command line, loads the configuration and runs the agent until a
// signal.
int runDaemon(int argc, char** argv);
// outpostctl's main.
int runCtl(int argc, char** argv);

}  // namespace outpost::agent
