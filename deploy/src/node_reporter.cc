// The node's status: the host's facts and the runtime's reachability, reported on change and at
// every heartbeat.

#include "node_reporter.h"

namespace outpost::deploy {

NodeReporter::NodeReporter(Runtime& runtime, StatusSink& sink, const core::Clock& clock,
                           core::Logger log, const ReconcilerConfig& config,
                           const std::string& hostIp)
    : runtime_(runtime), sink_(sink), clock_(clock), log_(std::move(log)) {
  node_.nodeName = config.nodeName;
  node_.reservedMilliCpu = config.reservedMilliCpu;
  node_.reservedMemoryBytes = config.reservedMemoryBytes;
  node_.maxPods = config.maxPods;
  node_.hostIp = hostIp;
  readHostFacts(node_);
}

void NodeReporter::runtimeDown(const core::Status& s) {
  if (node_.runtimeReady || node_.runtimeMessage.empty()) {
    log_.warn("runtime unreachable: ", s.toString());
  }
  bool changed = node_.runtimeReady;
  node_.runtimeReady = false;
  node_.runtimeMessage = "container runtime: " + s.toString();
  if (changed) report();
}

void NodeReporter::runtimeUp() {
  if (!node_.runtimeReady) {
    auto v = runtime_.version();
    if (v) node_.runtime = *v;
    node_.runtimeReady = true;
    node_.runtimeMessage.clear();
    report();
  }
}

void NodeReporter::report(bool heartbeat) {
  if (!node_.runtimeReady && node_.runtime.runtimeName.empty()) {
    auto v = runtime_.version();
    if (v) {
      node_.runtime = *v;
      node_.runtimeReady = true;
      node_.runtimeMessage.clear();
    } else {
      node_.runtimeMessage = "container runtime: " + v.status().toString();
    }
  }
  auto json = nodeStatusJson(node_);
  if (json == last_ && !heartbeat) return;
  last_ = json;
  sink_.nodeStatus(nodeStatusJson(node_, rfc3339(clock_.wallNow())));
}

}  // namespace outpost::deploy
