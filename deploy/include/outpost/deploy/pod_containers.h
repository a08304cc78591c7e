#pragma once
// Finding a container of a pod this node runs, for what the cloud's stream tunnel serves (logs,
// exec, attach): only pods the reconciler knows are reachable, by validated names.

#include <cstdint>
#include <string>
#include <vector>

#include "outpost/core/status.h"
#include "outpost/deploy/reconciler.h"
#include "outpost/deploy/runtime.h"

namespace outpost::deploy {

// One container of a pod the reconciler runs: its newest attempt and the one before.
struct PodContainer {
  std::string podUid;
  std::string sandboxId;    // the newest attempt's sandbox
  std::string containerId;  // the newest attempt
  uint32_t attempt = 0;
  std::string logPath;              // the newest attempt's CRI log file
  std::string previousContainerId;  // empty when the runtime keeps no earlier attempt
  std::string previousLogPath;      // empty when there is none
};

// The container `container` of pod `pod` in namespace `ns`: INVALID_ARGUMENT for a name that is
// not a Kubernetes name, NOT_FOUND when `reconciler` runs no such pod or the runtime has no such
// container of it. Blocking (asks `runtime`), from any thread.
core::Result<PodContainer> containerFor(Runtime& runtime, const Reconciler& reconciler,
                                        const std::string& ns, const std::string& pod,
                                        const std::string& container);

// The usage of a pod the reconciler runs and of its running containers, for `kubectl top`.
struct PodUsage {
  std::string ns;
  std::string name;
  UsageStats usage;  // the runtime's sandbox figures, or the sum of its containers' (see podUsage)
  struct Member {
    std::string name;
    UnixNanos createdAt = 0;
    UsageStats usage;
  };
  std::vector<Member> containers;
};

// Every pod `reconciler` runs with its running containers' usage (CRI ListContainerStats). A
// pod's own figures come from ListPodSandboxStats; from a runtime that does not implement it
// (UNIMPLEMENTED), they are the sum of its containers'. Blocking, from any thread.
core::Result<std::vector<PodUsage>> podUsage(Runtime& runtime, const Reconciler& reconciler);

}  // namespace outpost::deploy
