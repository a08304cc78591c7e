#pragma once
// The kubelet's /metrics/resource in Prometheus text format: what metrics-server scrapes for
// `kubectl top` (CPU and memory of the node, its pods and their containers), from a snapshot of our
// own types. The node's figures come from /proc (readNodeUsage).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::stream {

// CPU and memory at a moment; a figure not known is nullopt and its metric is left out.
struct UsageSample {
  int64_t cpuTimeMs = 0;                 // when the CPU figure was taken (Unix ms)
  std::optional<uint64_t> cpuCoreNanos;  // cumulative CPU time, core-nanoseconds
  int64_t memoryTimeMs = 0;
  std::optional<uint64_t> memoryWorkingSetBytes;  // usage minus inactive file pages
};

struct ContainerUsage {
  std::string name;
  std::optional<int64_t> startTimeMs;  // container_start_time_seconds (the runtime's creation)
  UsageSample usage;
};

struct PodUsage {
  std::string ns;
  std::string name;
  UsageSample usage;
  std::vector<ContainerUsage> containers;
};

struct ResourceSnapshot {
  UsageSample node;
  std::vector<PodUsage> pods;
  bool scrapeError = false;  // the runtime's stats could not be read (the node's still count)
};

// The text of /metrics/resource for `snapshot` (text/plain; version=0.0.4).
std::string resourceMetricsText(const ResourceSnapshot& snapshot);

// The node's figures as the kubelet reports them, from `proc`'s stat and meminfo: CPU time is every
// CPU's non-idle time (user, nice, system, irq, softirq, steal); the working set is memory in use
// (MemTotal - MemFree) less inactive file pages (Inactive(file)). `nowMs` stamps both.
core::Result<UsageSample> readNodeUsage(const std::filesystem::path& proc, int64_t nowMs);

}  // namespace outpost::stream
