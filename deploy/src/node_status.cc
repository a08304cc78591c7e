#include "node_status.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "outpost/deploy/reconciler.h"
#include "pod_spec.h"

namespace outpost::deploy {
namespace {

using nlohmann::json;

// The first line of a small host file, trimmed; "" when it cannot be read. Ids are short: a line
// past 64 characters is not an id and is not reported.
std::string hostId(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  line.erase(line.begin(), std::find_if_not(line.begin(), line.end(), space));
  line.erase(std::find_if_not(line.rbegin(), line.rend(), space).base(), line.end());
  bool printable = std::all_of(line.begin(), line.end(),
                               [](unsigned char c) { return std::isalnum(c) || c == '-'; });
  return line.size() <= 64 && printable ? line : "";
}

std::string cpuQuantity(int64_t milli) {
  return milli % 1000 == 0 ? std::to_string(milli / 1000) : std::to_string(milli) + "m";
}
std::string memoryQuantity(int64_t bytes) { return std::to_string(bytes / 1024) + "Ki"; }

}  // namespace

void readHostFacts(NodeFacts& facts) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  facts.milliCpu = cpus > 0 ? cpus * 1000 : 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemTotal:", 0) == 0) {
      std::istringstream in(line.substr(9));
      int64_t kb = 0;
      in >> kb;
      facts.memoryBytes = kb * 1024;
    }
  }
  utsname u{};
  if (uname(&u) == 0) {
    facts.kernel = u.release;
    facts.architecture = u.machine;
    if (facts.architecture == "x86_64") facts.architecture = "amd64";
    if (facts.architecture == "aarch64") facts.architecture = "arm64";
  }
  std::ifstream osr("/etc/os-release");
  while (std::getline(osr, line)) {
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      facts.osImage = line.substr(12);
      if (facts.osImage.size() >= 2 && facts.osImage.front() == '"')
        facts.osImage = facts.osImage.substr(1, facts.osImage.size() - 2);
    }
  }
  // As the kubelet's cadvisor reads them; product_uuid is root's only, and absent in many VMs.
  facts.machineId = hostId("/etc/machine-id");
  facts.systemUuid = hostId("/sys/class/dmi/id/product_uuid");
  facts.bootId = hostId("/proc/sys/kernel/random/boot_id");
}

std::string nodeStatusJson(const NodeFacts& f, Transitions& transitions, core::WallTime now,
                           const std::string& heartbeat) {
  json capacity = {{"cpu", cpuQuantity(f.milliCpu)},
                   {"memory", memoryQuantity(f.memoryBytes)},
                   {"pods", std::to_string(f.maxPods)}};
  json allocatable = {
      {"cpu", cpuQuantity(std::max<int64_t>(0, f.milliCpu - f.reservedMilliCpu))},
      {"memory", memoryQuantity(std::max<int64_t>(0, f.memoryBytes - f.reservedMemoryBytes))},
      {"pods", std::to_string(f.maxPods)}};
  auto cond = [&](const char* type, bool status, const char* reason, const std::string& message) {
    std::string s = status ? "True" : "False";
    auto& t = transitions[type];
    if (t.first != s) t = {s, rfc3339(now)};  // kept while the status stays
    json c = {{"type", type},
              {"status", s},
              {"reason", reason},
              {"message", message},
              {"lastTransitionTime", t.second}};
    if (!heartbeat.empty()) c["lastHeartbeatTime"] = heartbeat;
    return c;
  };
  // Ready first, as Outpost has always listed it (the API server keeps any order).
  json conditions = json::array(
      {cond("Ready", f.runtimeReady, f.runtimeReady ? "KubeletReady" : "RuntimeNotReady",
            f.runtimeReady ? "outpost is posting ready status" : f.runtimeMessage),
       cond("MemoryPressure", false, "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"),
       cond("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
       cond("PIDPressure", false, "KubeletHasSufficientPID",
            "kubelet has sufficient PID available")});
  json addresses = json::array();
  if (!f.address.empty()) addresses.push_back({{"type", "InternalIP"}, {"address", f.address}});
  addresses.push_back({{"type", "Hostname"}, {"address", f.nodeName}});
  json status = {
      {"capacity", capacity},
      {"allocatable", allocatable},
      {"conditions", conditions},
      {"addresses", addresses},
      {"daemonEndpoints", {{"kubeletEndpoint", {{"Port", f.daemonPort}}}}},
      {"nodeInfo",
       {{"machineID", f.machineId},
        {"systemUUID", f.systemUuid},
        {"bootID", f.bootId},
        {"containerRuntimeVersion", f.runtime.runtimeName.empty()
                                        ? ""
                                        : f.runtime.runtimeName + "://" + f.runtime.runtimeVersion},
        {"kernelVersion", f.kernel},
        {"osImage", f.osImage},
        {"architecture", f.architecture},
        {"operatingSystem", "linux"},
        {"kubeletVersion", f.kubeletVersion}}}};
  return status.dump();
}

core::Result<NodeReserved> parseNodeReserved(const std::map<std::string, std::string>& reserved) {
  NodeReserved out;
  for (const auto& [name, value] : reserved) {
    if (name == "cpu") {
      auto milli = parseCpuMilli(value);
      if (!milli)
        return core::invalidArgument("cpu: \"" + value +
                                     "\" is not a CPU quantity such as 100m or 1");
      out.milliCpu = *milli;
    } else if (name == "memory") {
      auto bytes = parseBytes(value);
      if (!bytes)
        return core::invalidArgument("memory: \"" + value +
                                     "\" is not a memory quantity such as 256Mi or 1Gi");
      out.memoryBytes = *bytes;
    } else {
      return core::invalidArgument("\"" + name + "\" cannot be reserved (cpu and memory can)");
    }
  }
  return out;
}

std::string initialNodeStatus(const ReconcilerConfig& config, core::WallTime now) {
  NodeFacts facts;
  facts.nodeName = config.nodeName;
  facts.address = config.nodeAddress;
  facts.reservedMilliCpu = config.reservedMilliCpu;
  facts.reservedMemoryBytes = config.reservedMemoryBytes;
  facts.maxPods = config.maxPods;
  facts.daemonPort = config.daemonPort;
  facts.kubeletVersion = config.kubeletVersion;
  facts.runtimeMessage = "container runtime status check may not have completed yet";
  readHostFacts(facts);
  Transitions transitions;
  return nodeStatusJson(facts, transitions, now);
}

}  // namespace outpost::deploy
