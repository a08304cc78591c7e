#pragma once
// The node's status (NodeStatus JSON), computed as the kubelet inside EdgeCore reports it.

#include <cstdint>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/deploy/runtime.h"
#include "pod_status.h"

namespace outpost::deploy {

struct NodeFacts {
  std::string nodeName;
  std::string address;  // InternalIP; empty: none known (only the Hostname address is reported)
  int64_t milliCpu = 0;
  int64_t memoryBytes = 0;
  int64_t reservedMilliCpu = 0;
  int64_t reservedMemoryBytes = 0;
  int maxPods = 110;
  int daemonPort = 0;
  std::string kubeletVersion;
  bool runtimeReady = false;
  std::string runtimeMessage;
  VersionInfo runtime;
  std::string kernel;
  std::string osImage;
  std::string architecture;
  std::string machineId;   // /etc/machine-id
  std::string systemUuid;  // /sys/class/dmi/id/product_uuid (readable by root only)
  std::string bootId;      // /proc/sys/kernel/random/boot_id
};

// The host's facts (CPUs, memory, kernel, OS, machine, system and boot ids) into `facts`.
void readHostFacts(NodeFacts& facts);
// The NodeStatus JSON. `transitions` keeps each condition's status and lastTransitionTime across
// calls (a time is set when the status changes); `heartbeat` (RFC 3339, may be empty) is each
// condition's lastHeartbeatTime.
std::string nodeStatusJson(const NodeFacts& facts, Transitions& transitions, core::WallTime now,
                           const std::string& heartbeat = "");

}  // namespace outpost::deploy
