#pragma once
// The CRI configurations of a pod's sandbox and containers, built from the pod spec: our labels,
// the log paths, the cgroup values of the resources, the security context the pod defaults.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "outpost/deploy/runtime.h"
#include "pod_spec.h"

namespace outpost::deploy {

// The cgroup of a pod's sandbox under `cgroupParent` (cgroupfs path).
std::string podCgroup(const std::string& cgroupParent, const std::string& uid);

// The sandbox of `pod`: our labels over the pod's, its grace period as an annotation, its cgroup
// under `cgroupParent` (none when that is empty: the runtime's default).
PodSandboxConfig sandboxConfig(const PodSpec& pod, uint32_t attempt,
                               const std::string& logDirectory, const std::string& cgroupParent);

// A container's CPU and memory as cgroup values, as the kubelet sets them: the CPU limit as a
// quota per 100 ms period, the request (or else the limit) as shares of 1024 per CPU (at least
// 2), the memory limit as is; 0 where the spec sets nothing.
LinuxResources linuxResources(const ContainerSpec& spec);

// The container's security context, its unset user, group and supplemental groups taken from
// the pod's.
SecurityContext containerSecurity(const PodSpec& pod, const ContainerSpec& spec);

// The attempt number of the next container named `name`: one past the highest seen (`seen`,
// from every sandbox of the pod) and past the newest of the current sandbox (`newest`), else 0.
uint32_t nextAttempt(const std::optional<uint32_t>& seen, const std::optional<uint32_t>& newest);

// Container `spec` of `pod`, attempt `attempt`, with its resolved environment and mounts.
ContainerConfig containerConfig(const PodSpec& pod, const ContainerSpec& spec, uint32_t attempt,
                                std::vector<std::pair<std::string, std::string>> env,
                                std::vector<Mount> mounts);

}  // namespace outpost::deploy
