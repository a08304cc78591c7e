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

}  // namespace outpost::deploy
