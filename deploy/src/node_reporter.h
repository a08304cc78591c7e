#pragma once
// The node's status as the reconciler reports it: the host's facts and whether the runtime answers,
// sent when it changes and at every heartbeat.

#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/deploy/ports.h"
#include "outpost/deploy/reconciler.h"
#include "outpost/deploy/runtime.h"
#include "pod_status.h"

namespace outpost::deploy {

// On deploy's loop.
class NodeReporter {
 public:
  NodeReporter(Runtime& runtime, StatusSink& sink, const core::Clock& clock, core::Logger log,
               const ReconcilerConfig& config, const std::string& hostIp);
  // The runtime did not answer (`s`): the node is not ready, reported once.
  void runtimeDown(const core::Status& s);
  // The runtime answered: ready again, reported once.
  void runtimeUp();
  // Sends the node status when it changed, or always for a heartbeat.
  void report(bool heartbeat = false);

 private:
  Runtime& runtime_;
  StatusSink& sink_;
  const core::Clock& clock_;
  core::Logger log_;
  NodeFacts node_;
  std::string last_;
};

}  // namespace outpost::deploy
