#pragma once
// Pod and node status, computed as the kubelet does, as Kubernetes JSON.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/clock.h"
#include "outpost/deploy/runtime.h"
#include "pod_spec.h"

namespace outpost::deploy {

// What the status needs to know about one container of the spec.
struct ContainerView {
  const ContainerSpec* spec = nullptr;
  std::optional<ContainerStatus> current;   // the newest container of that name
  std::optional<ContainerStatus> previous;  // the one before it (lastState)
  std::string waitingReason;                // why there is no running container, if known
  std::string waitingMessage;
};

struct PodView {
  const PodSpec* spec = nullptr;
  std::vector<ContainerView> init;
  std::vector<ContainerView> containers;
  bool sandboxReady = false;
  UnixNanos sandboxCreatedAt = 0;
  std::string hostIp;
  std::string podIp;
};

// Condition type -> (status, lastTransitionTime); kept by the caller across calls.
using Transitions = std::map<std::string, std::pair<std::string, std::string>>;

std::string rfc3339(UnixNanos t);
std::string rfc3339(core::WallTime t);

// The PodStatus JSON of a pod.
std::string podStatusJson(const PodView& view, Transitions& transitions, core::WallTime now);
// The PodStatus JSON of a pod whose spec cannot be run (phase Failed, `reason`, the error as
// message).
std::string invalidPodStatusJson(const std::string& error, Transitions& transitions,
                                 core::WallTime now, const std::string& reason = "InvalidSpec");

struct NodeFacts {
  std::string nodeName;
  int64_t milliCpu = 0;
  int64_t memoryBytes = 0;
  int64_t reservedMilliCpu = 0;
  int64_t reservedMemoryBytes = 0;
  int maxPods = 110;
  bool runtimeReady = false;
  std::string runtimeMessage;
  VersionInfo runtime;
  std::string kernel;
  std::string osImage;
  std::string architecture;
  std::string hostIp;
};

// The host's facts (CPUs, memory, kernel, OS) into `facts`.
void readHostFacts(NodeFacts& facts);
// The host's first non-loopback IPv4 address in /etc/hosts ("" when none), for host network pods.
std::string hostIp();
// The NodeStatus JSON; `heartbeat` (RFC 3339, may be empty) is each condition's lastHeartbeatTime.
std::string nodeStatusJson(const NodeFacts& facts, const std::string& heartbeat = "");

}  // namespace outpost::deploy
