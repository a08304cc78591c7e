// /metrics/resource as the kubelet serves it (metric names, labels, units and timestamps as
// metrics-server reads them); the text is written by hand, as Prometheus' text format 0.0.4 is.

#include "outpost/stream/resource_metrics.h"

#include <unistd.h>

#include <array>
#include <fstream>
#include <sstream>

#include "outpost/core/metrics.h"

namespace outpost::stream {
namespace {

class Writer {
 public:
  void family(const char* name, const char* type, const char* help,
              const char* stability = "STABLE") {
    out_ << "# HELP " << name << " [" << stability << "] " << help << "\n# TYPE " << name << " "
         << type << "\n";
  }
  // One sample; `timestampMs` 0 leaves the timestamp out.
  void sample(const char* name, const std::string& labels, double value, int64_t timestampMs) {
    out_ << name;
    if (!labels.empty()) out_ << "{" << labels << "}";
    out_ << " " << core::formatNumber(value);
    if (timestampMs != 0) out_ << " " << timestampMs;
    out_ << "\n";
  }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

std::string podLabels(const PodUsage& p) {
  return "namespace=\"" + core::escapeLabel(p.ns) + "\",pod=\"" + core::escapeLabel(p.name) + "\"";
}
std::string containerLabels(const PodUsage& p, const ContainerUsage& c) {
  return "container=\"" + core::escapeLabel(c.name) + "\"," + podLabels(p);
}

double seconds(uint64_t nanos) { return static_cast<double>(nanos) / 1e9; }

}  // namespace

std::string resourceMetricsText(const ResourceSnapshot& s) {
  Writer w;
  // Families in the order of their names, each family's samples together, as Prometheus writes.
  w.family("container_cpu_usage_seconds_total", "counter",
           "Cumulative cpu time consumed by the container in core-seconds");
  for (const auto& p : s.pods)
    for (const auto& c : p.containers)
      if (c.usage.cpuCoreNanos)
        w.sample("container_cpu_usage_seconds_total", containerLabels(p, c),
                 seconds(*c.usage.cpuCoreNanos), c.usage.cpuTimeMs);
  w.family("container_memory_working_set_bytes", "gauge",
           "Current working set of the container in bytes");
  for (const auto& p : s.pods)
    for (const auto& c : p.containers)
      if (c.usage.memoryWorkingSetBytes)
        w.sample("container_memory_working_set_bytes", containerLabels(p, c),
                 static_cast<double>(*c.usage.memoryWorkingSetBytes), c.usage.memoryTimeMs);
  w.family("container_start_time_seconds", "gauge",
           "Start time of the container since unix epoch in seconds");
  for (const auto& p : s.pods)
    for (const auto& c : p.containers)
      if (c.startTimeMs && *c.startTimeMs > 0)
        w.sample("container_start_time_seconds", containerLabels(p, c),
                 static_cast<double>(*c.startTimeMs) / 1e3, 0);
  w.family("node_cpu_usage_seconds_total", "counter",
           "Cumulative cpu time consumed by the node in core-seconds");
  if (s.node.cpuCoreNanos)
    w.sample("node_cpu_usage_seconds_total", "", seconds(*s.node.cpuCoreNanos), s.node.cpuTimeMs);
  w.family("node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes");
  if (s.node.memoryWorkingSetBytes)
    w.sample("node_memory_working_set_bytes", "",
             static_cast<double>(*s.node.memoryWorkingSetBytes), s.node.memoryTimeMs);
  w.family("pod_cpu_usage_seconds_total", "counter",
           "Cumulative cpu time consumed by the pod in core-seconds");
  for (const auto& p : s.pods)
    if (p.usage.cpuCoreNanos)
      w.sample("pod_cpu_usage_seconds_total", podLabels(p), seconds(*p.usage.cpuCoreNanos),
               p.usage.cpuTimeMs);
  w.family("pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes");
  for (const auto& p : s.pods)
    if (p.usage.memoryWorkingSetBytes)
      w.sample("pod_memory_working_set_bytes", podLabels(p),
               static_cast<double>(*p.usage.memoryWorkingSetBytes), p.usage.memoryTimeMs);
  w.family("resource_scrape_error", "gauge",
           "1 if there was an error while getting container metrics, 0 otherwise");
  w.sample("resource_scrape_error", "", s.scrapeError ? 1 : 0, 0);
  w.family("scrape_error", "gauge",
           "1 if there was an error while getting container metrics, 0 otherwise", "ALPHA");
  w.sample("scrape_error", "", s.scrapeError ? 1 : 0, 0);
  return w.text();
}

core::Result<UsageSample> readNodeUsage(const std::filesystem::path& proc, int64_t nowMs) {
  UsageSample out;
  std::ifstream stat(proc / "stat");
  std::string cpu;
  // user nice system idle iowait irq softirq steal (guest time is within user already)
  std::array<uint64_t, 8> t{};
  if (!(stat >> cpu) || cpu != "cpu")
    return core::unavailable("cannot read the node's CPU time from " + (proc / "stat").string());
  for (auto& v : t) {
    if (!(stat >> v))
      return core::unavailable("cannot read the node's CPU time from " + (proc / "stat").string());
  }
  uint64_t busyTicks = t[0] + t[1] + t[2] + t[5] + t[6] + t[7];
  long hz = ::sysconf(_SC_CLK_TCK);
  if (hz <= 0) hz = 100;
  out.cpuCoreNanos = busyTicks * (1000000000ULL / static_cast<uint64_t>(hz));
  out.cpuTimeMs = nowMs;
  std::ifstream meminfo(proc / "meminfo");
  std::optional<uint64_t> total, memFree, inactiveFile;
  std::string key;
  uint64_t kib = 0;
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream in(line);
    if (!(in >> key >> kib)) continue;
    if (key == "MemTotal:") total = kib * 1024;
    if (key == "MemFree:") memFree = kib * 1024;
    if (key == "Inactive(file):") inactiveFile = kib * 1024;
  }
  if (!total || !memFree || !inactiveFile)
    return core::unavailable("cannot read the node's memory from " + (proc / "meminfo").string());
  uint64_t used = *total > *memFree ? *total - *memFree : 0;
  out.memoryWorkingSetBytes = used > *inactiveFile ? used - *inactiveFile : 0;
  out.memoryTimeMs = nowMs;
  return out;
}

}  // namespace outpost::stream
